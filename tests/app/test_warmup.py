"""The app's warm-up: after its build, the app computes what each page opens with, lists it in the sidebar, and
the pages show that progress (never a compute button) until their result is there."""
import time

import pytest

from tests.app.test_pages import run_page, wait_for_build

pytestmark = pytest.mark.app
SPEC = "synthetic:30:7"  # a catalogue no other app test opens: its build job (and warm-up) is this test's own


@pytest.fixture
def warm_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "cache"))  # cold: nothing warmed by another test
    monkeypatch.setenv("ATELIER_BACKBONE", "random:atelier-tiny")
    monkeypatch.setenv("ATELIER_CATALOG", SPEC)
    monkeypatch.setenv("ATELIER_WARM", "1")
    monkeypatch.setenv("ATELIER_WARM_MODELS", "popularity,content")  # the evaluation in seconds


def sidebar_text(at) -> str:
    return " ".join([c.value for c in at.sidebar.caption] + [m.value for m in at.sidebar.markdown])


def test_pages_are_warmed_after_the_build_in_order_and_say_so(warm_env):
    at = wait_for_build(run_page())
    seen_computing = "Computing what the pages open with" in sidebar_text(at)
    deadline = time.monotonic() + 300
    while "Every page is warm" not in sidebar_text(at):
        assert time.monotonic() < deadline, sidebar_text(at)
        seen_computing |= "Computing what the pages open with" in sidebar_text(at)
        # whenever it is opened, the texture page shows the report or the warm-up's progress: no compute button
        texture = run_page("app_pages/texture.py")
        assert not any(b.key == "texture_compute" for b in texture.button)
        at = run_page()  # a new session: AppTest drops the sidebar on a rerun of the same one
    assert seen_computing or "computed in" in sidebar_text(at)
    assert "failed" not in sidebar_text(at)

    from app_pages.common import get_build_job
    stages = [(j.name, j.state) for j in get_build_job(SPEC, "random:atelier-tiny").warm]  # the app's own job
    assert [name for name, _ in stages] == ["cluster map (hybrid)", "photo thumbnails",
                                            "DBSCAN comparison (hybrid)", "texture report",
                                            "evaluation (first, one seed)", "cluster map (image)",
                                            "cluster map (text)", "cluster map (texture)", "evaluation"]
    assert {state for _, state in stages} == {"done"}

    texture = run_page("app_pages/texture.py")
    assert texture.dataframe and not any(b.key == "texture_compute" for b in texture.button)
    clusters = run_page("app_pages/clusters.py")
    assert any(m.label == "Clusters" for m in clusters.metric)
    coldstart = run_page("app_pages/coldstart.py", coldstart_section="How good is it",
                         coldstart_eval_models=["content", "popularity"])
    assert coldstart.dataframe and not any("Not evaluated yet" in i.value for i in coldstart.info)
