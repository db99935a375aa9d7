"""Headless tests of every page (streamlit AppTest) on a small synthetic catalogue."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
SPEC = "synthetic:40"
pytestmark = pytest.mark.app


@pytest.fixture
def app_env(monkeypatch, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "app-cache"  # one cache for the module: later tests are warm
    monkeypatch.setenv("ATELIER_CACHE", str(cache))
    monkeypatch.setenv("ATELIER_CATALOG", SPEC)
    monkeypatch.setenv("ATELIER_BACKBONE", "random:atelier-tiny")
    monkeypatch.setenv("ATELIER_OFFLINE", "1")


def run_page(page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def wait_for_build(at: AppTest, timeout: float = 120) -> AppTest:
    """Rerun until the page no longer says embeddings are being computed."""
    deadline = time.monotonic() + timeout
    while any("still being computed" in i.value for i in at.info):
        assert time.monotonic() < deadline, "the build did not finish"
        time.sleep(0.3)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def product_captions(at: AppTest) -> list[str]:
    return [c for c in captions(at) if c.startswith("syn")]


def rerun_until(at: AppTest, done, timeout: float = 120) -> AppTest:
    deadline = time.monotonic() + timeout
    while not done(at):
        assert time.monotonic() < deadline, "the app did not get there in time"
        time.sleep(0.3)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_sidebar_says_what_runs(app_env):
    at = run_page()  # the catalogue shows at once; the backbone loads in the background
    assert any("40 products" in m.value for m in at.sidebar.markdown)
    deadline = time.monotonic() + 120
    while not any("random:atelier-tiny" in m.value for m in at.sidebar.markdown):
        assert time.monotonic() < deadline, "the backbone did not load"
        time.sleep(0.3)
        at = run_page()  # a new session each time: AppTest drops the sidebar on a rerun of the same one
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "40 products" in sidebar and "random:atelier-tiny" in sidebar and "RANDOM" in sidebar
    assert any("SIMULATED" in i.value for i in at.sidebar.info)  # synthetic banner with how to use real data
    assert any("RANDOM weights" in w.value for w in at.sidebar.warning)


def test_catalogue_grid_pages_and_filters(app_env):
    at = run_page()
    assert at.markdown[0].value.startswith("**40** of 40 products")
    assert len(product_captions(at)) == 40  # default page size 48 holds them all

    at.selectbox(key="catalogue_page_size").set_value(24).run()
    assert len(product_captions(at)) == 24
    at.number_input(key="catalogue_page").set_value(2).run()
    assert len(product_captions(at)) == 16

    at.number_input(key="catalogue_page").set_value(1).run()
    at.multiselect(key="catalogue_f_pattern").set_value(["stripe"]).run()
    shown = product_captions(at)
    assert shown and all(c.endswith("· stripe") for c in shown)

    at.text_input(key="catalogue_text").input("no-such-word-anywhere").run()
    assert any("No product matches" in i.value for i in at.info)
    assert not product_captions(at)


def test_neighbours_by_product_shows_three_spaces(app_env):
    at = wait_for_build(run_page("app_pages/neighbours.py"))
    assert [s.value for s in at.subheader] == ["image", "text", "hybrid"]
    query = at.selectbox(key="neighbours_product").value
    results = [c for c in product_captions(at)[1:]]  # the first caption is the query product
    assert len(results) == 3 * 10
    assert not any(c.startswith(query + " ") for c in results)
    for space in range(3):
        scores = [float(c.rsplit("· ", 1)[1]) for c in results[space * 10:(space + 1) * 10]]
        assert scores == sorted(scores, reverse=True)

    at.slider(key="neighbours_k").set_value(5).run()
    assert len(product_captions(at)) == 1 + 3 * 5


def test_neighbours_by_text_and_empty_query(app_env):
    at = wait_for_build(run_page("app_pages/neighbours.py"))
    at.radio(key="neighbours_mode").set_value("Text").run()
    assert any("Type a few words" in i.value for i in at.info)
    assert not product_captions(at)
    at.text_input(key="neighbours_text").input("red striped dress").run()
    assert len(product_captions(at)) == 3 * 10


def test_neighbours_unknown_name_says_so(app_env):
    at = run_page("app_pages/neighbours.py")
    at.text_input(key="neighbours_find").input("zzz-not-a-product").run()
    assert any("No product id or name matches" in i.value for i in at.info)


def test_validation_page_lists_problems(app_env, tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "items.csv").write_text("item_id,title,image\na,Red dress,a.jpg\na,Duplicate,a.jpg\nb,Shirt,b.jpg\n")
    at = run_page("app_pages/validation.py", app_catalog=str(folder))
    assert any("problem" in w.value for w in at.warning)
    frame = at.dataframe[0].value
    assert set(frame["problem"]) >= {"duplicate item_id", "missing or empty image files"}

    at = run_page("app_pages/validation.py")
    assert any("No problems found" in s.value for s in at.success)


def test_bad_catalogue_gives_a_clear_message(app_env, tmp_path):
    at = run_page(app_catalog=str(tmp_path / "nowhere"))
    assert any("no such folder" in e.value for e in at.error)


def test_unavailable_weights_give_a_clear_message(app_env, monkeypatch):
    monkeypatch.setenv("ATELIER_BACKBONE", "openclip:ViT-B-32/laion2b_s34b_b79k")
    at = run_page("app_pages/neighbours.py")
    at = rerun_until(at, lambda at: len(at.error) > 0)
    message = " ".join(e.value for e in at.error)
    assert "pretrained weights could not be loaded" in message and "Fix:" in message
    assert len(product_captions(at)) == 1  # the chosen product, and no neighbours


def test_backbone_page_for_a_random_backbone_says_what_it_is(app_env):
    at = run_page("app_pages/backbone.py")
    at = rerun_until(at, lambda at: any("random:atelier-tiny" in m.value for m in at.markdown))
    assert any("RANDOM" in w.value for w in at.warning)
    assert any("offline-lit" in i.value for i in at.info)


def test_backbone_page_evaluates_offline_lit(app_env, monkeypatch):
    monkeypatch.setenv("ATELIER_BACKBONE", "offline-lit")
    monkeypatch.setenv("ATELIER_COMPILE", "0")
    at = run_page("app_pages/backbone.py")
    at = rerun_until(at, lambda at: any("Not evaluated" in i.value for i in at.info), timeout=300)
    assert any(m.value.startswith("**offline-lit**") for m in at.main.markdown)
    assert not at.warning  # pretrained towers: no random-weights warning
    at.button(key="backbone_evaluate").click().run(timeout=300)
    table = at.dataframe[0].value
    assert "text to image recall@10" in set(table["metric"])
    assert table["trained heads"].between(0, 1).all()
    at = run_page("app_pages/backbone.py")  # a new session finds the cached numbers
    at = rerun_until(at, lambda at: len(at.dataframe) > 0, timeout=300)


def clusters_page(**state) -> AppTest:
    return wait_for_build(run_page("app_pages/clusters.py", **state))


def selection(*ids: str) -> dict:
    """What the front end sends for a box or lasso selection of these products."""
    return {"selection": {"points": [{"curve_number": 0, "point_index": i, "customdata": [pid, "title"]}
                                     for i, pid in enumerate(ids)], "point_indices": [], "box": [], "lasso": []}}


def test_clusters_page_shows_map_list_and_scores(app_env):
    at = clusters_page()
    assert [m.label for m in at.metric][:2] == ["Clusters", "Noise"]
    assert at.get("plotly_chart") and at.dataframe
    assert list(at.dataframe[0].value.columns) == ["cluster", "name", "size", "prompt_name", "keywords"]
    assert any("Draw a box or a lasso" in i.value for i in at.info)
    assert not product_captions(at)  # no gallery before a selection


def test_selection_gallery_shows_exactly_the_selected_products(app_env):
    chosen = ["syn00003", "syn00017", "syn00029"]
    at = clusters_page(clusters_map=selection(*chosen))
    assert any(s.value == "Selection: 3 products" for s in at.subheader)
    assert [c.split(" · ")[0] for c in product_captions(at)] == chosen
    summary = at.dataframe[1:]  # attribute summaries of the selection
    assert sum(summary[0].value["products"]) == 3


def test_clicking_a_cluster_shows_its_products(app_env):
    at = clusters_page(clusters_min_samples=2)  # 40 random-weight embeddings: loose settings find clusters
    table = at.dataframe[0].value
    assert len(table) >= 1
    at = clusters_page(clusters_min_samples=2, clusters_list={"selection": {"rows": [0], "columns": [], "cells": []}})
    cluster, name, size = table.iloc[0][["cluster", "name", "size"]]
    assert any(s.value == f"Cluster {cluster}: {name} ({size} products)" for s in at.subheader)
    assert len(product_captions(at)) == min(size, 48)


def test_clusters_controls_and_comparison(app_env):
    at = clusters_page()
    at.number_input(key="clusters_min_size").set_value(8).run()
    assert any("min cluster size 8" in c.value for c in at.caption)
    at.selectbox(key="clusters_kind").set_value("text").run()
    at.toggle(key="clusters_soft").set_value(True).run()
    at.selectbox(key="clusters_colour").set_value("pattern").run()
    assert not at.exception
    at.button(key="clusters_compare").click().run()
    table = at.dataframe[-1].value
    assert table["method"].iloc[0] == "HDBSCAN (UMAP)" and (table["method"] == "DBSCAN (raw)").sum() >= 2


def test_a_stale_cluster_row_is_ignored(app_env):
    at = clusters_page(clusters_list={"selection": {"rows": [10_000], "columns": [], "cells": []}})
    assert any("Draw a box or a lasso" in i.value for i in at.info)
