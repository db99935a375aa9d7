"""The map benchmark's page (tools/bench_map.py) and its command's checks; the browser run itself is
``python -m core bench map`` (it needs Chromium and Playwright, which the test command does not install)."""
import argparse

import pytest
from streamlit.testing.v1 import AppTest

from app_pages.mapview import BOX, DENSITY_POINTS, PICK
from core.bench import mapview
from core.config import PROJECT_ROOT


@pytest.mark.app
@pytest.mark.parametrize("points", [500, DENSITY_POINTS + 1])
def test_the_bench_page_draws_the_map_the_clusters_page_draws_and_counts_a_box(monkeypatch, points):
    monkeypatch.setenv("BENCH_MAP_POINTS", str(points))
    at = AppTest.from_file(str(PROJECT_ROOT / "tools" / "bench_map.py"), default_timeout=120).run()
    assert not at.exception
    (chart,) = at.get("vega_lite_chart")
    assert ('"image"' in chart.proto.spec) == (points > DENSITY_POINTS)  # one point each below, an image above
    assert [m.value for m in at.markdown] == ["selected products: 0"]
    at.session_state["bench_map"] = {"selection": {PICK: [], BOX: {"x": [-100, 100], "y": [-100, 100]}}}
    at.run()
    assert [m.value for m in at.markdown] == [f"selected products: {points}"]


def test_the_command_says_what_is_missing_without_a_browser(monkeypatch):
    monkeypatch.setattr(mapview.shutil, "which", lambda name: None)
    args = argparse.Namespace(sizes="1000", browser=None, stage_timeout=60.0, screenshots=None)
    with pytest.raises(SystemExit, match="no Chromium found"):
        mapview.command(args, None)
