"""The product view (app_pages/product.py), opened from the tiles of every page and followed from neighbour to
neighbour, on the small synthetic catalogue of tests/app/test_pages.py."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.app import test_pages as pages

pytestmark = pytest.mark.app
app_env = pages.app_env  # the same environment and warm cache as the page tests
KIND_NAMES = pages.KIND_NAMES


def view(at: AppTest):
    """The dialog's part of the page (Streamlit draws dialogs in the app's event container)."""
    return at._tree.children[2]


def shown(at: AppTest) -> str | None:
    """The product the open view shows (None when closed), after checking the view says so itself."""
    state = at.session_state["product_view"] if "product_view" in at.session_state else None
    if state is None:
        assert not view(at).metric, "a view is drawn with no product in it"
        return None
    product_id = state["id"]
    assert any(c.value.startswith(product_id + " · ") for c in view(at).caption)
    return product_id


def open_tile(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def tile_keys(at: AppTest) -> list[str]:
    return [b.key for b in at.main.button if b.key and b.key.startswith("product_open_")]


def bought(product_id: str) -> tuple[int, int]:
    """(all time, last 4 weeks of the data) purchases of a product, counted here without the core."""
    import pandas as pd
    from core.data.load import load_catalog
    purchases = load_catalog(pages.SPEC).purchases
    since = purchases["timestamp"].max().normalize() - pd.Timedelta(days=27)
    mine = purchases[purchases["product_id"] == product_id]
    return len(mine), int((mine["timestamp"] >= since).sum())


def test_catalogue_tile_opens_the_view_with_attributes_sales_and_neighbours(app_env, monkeypatch, tmp_path):
    from app_pages.product import map_lookup
    at = pages.wait_for_build(pages.run_page("app_pages/neighbours.py"))  # the build is there
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "no-maps"))  # a cache with no cluster map in it
    map_lookup.clear()
    at = pages.run_page()
    keys = tile_keys(at)
    assert len(keys) == 40 and len(set(keys)) == 40 and shown(at) is None
    product = "syn00007"
    at = open_tile(at, f"product_open_{product}")
    assert shown(at) == product
    dialog = view(at)
    from core.data.load import load_catalog
    row = load_catalog(pages.SPEC).products.loc[product]
    assert dialog.subheader[0].value == row["title"]
    table = " ".join(m.value for m in dialog.markdown)
    for attribute in ("product_type", "colour", "pattern", "silhouette"):
        if attribute in row and row[attribute]:
            assert f"| {attribute.replace('_', ' ')} | {row[attribute]} |" in table
    metrics = {m.label: m.value for m in dialog.metric}
    all_time, recent = bought(product)
    assert metrics["Bought (all time)"] == f"{all_time:,}" and metrics["Last 4 weeks"] == f"{recent:,}"
    assert "map not computed yet" in table
    assert [t.label for t in dialog.tabs] == [KIND_NAMES[k] for k in pages.KINDS]
    neighbour_keys = [b.key for b in dialog.button if b.key.startswith("product_view_")]
    assert len(neighbour_keys) == 4 * 10
    assert all("score" in c.value for c in dialog.caption if c.value.count("  \n") == 2)
    assert any(c.value.startswith("Score: cosine similarity of the two products' photo embeddings")
               for c in dialog.caption)
    verdicts = [*dialog.warning, *dialog.success]
    assert len(verdicts) == 1 and "of its 10 nearest photos share its pattern" in verdicts[0].value


def test_following_a_neighbour_inside_the_view_and_back(app_env):
    at = pages.wait_for_build(pages.run_page())
    first = "syn00003"
    at = open_tile(at, f"product_open_{first}")
    assert shown(at) == first
    neighbour = [b.key for b in view(at).button if b.key.startswith("product_view_text_")][0]
    following = neighbour.removeprefix("product_view_text_")
    at = open_tile(at, neighbour)
    assert shown(at) == following and following != first
    assert any(b.key == "product_view_back" and first in b.label for b in view(at).button)
    second = [b.key for b in view(at).button if b.key.startswith("product_view_image_")][0]
    at = open_tile(at, second)
    assert shown(at) == second.removeprefix("product_view_image_")
    at = open_tile(at, "product_view_back")
    assert shown(at) == following
    at = open_tile(at, "product_view_back")
    assert shown(at) == first and not any(b.key == "product_view_back" for b in view(at).button)


def test_neighbours_page_tiles_open_the_view_and_keys_stay_unique(app_env):
    at = pages.wait_for_build(pages.run_page("app_pages/neighbours.py"))
    query = at.selectbox(key="neighbours_product").value
    keys = tile_keys(at)
    assert keys[0] == f"product_open_{query}" and len(keys) == 1 + 4 * 10 and len(set(keys)) == len(keys)
    twice = [k for k in keys if k.endswith("_2")]
    assert twice, "40 neighbours of 39 products: some product is in two spaces, and gets a second key"
    at = open_tile(at, twice[0])
    assert shown(at) == twice[0].removeprefix("product_open_").removesuffix("_2")
    at = pages.wait_for_build(pages.run_page("app_pages/neighbours.py"))
    at = open_tile(at, f"product_open_{query}")
    assert shown(at) == query


def test_clusters_gallery_tile_opens_the_view_with_its_cluster(app_env):
    from app_pages.product import map_lookup
    chosen = ["syn00003", "syn00017", "syn00029"]
    at = pages.clusters_page(**pages.selection(*chosen))  # the default map is computed, and stored
    map_lookup.clear()
    at = open_tile(at, "product_open_syn00017")
    assert shown(at) == "syn00017"
    lines = " ".join(m.value for m in view(at).markdown)
    assert "map not computed yet" not in lines
    assert "**Cluster" in lines and "hybrid map" in lines


def test_cold_start_list_tile_opens_the_view(app_env):
    at = pages.coldstart_page(coldstart_liked=["syn00003"])
    recommended = [c.split(" · ")[0] for c in pages.recommendation_captions(at)]
    assert len(recommended) == 12
    key = [k for k in tile_keys(at) if k.removeprefix("product_open_").split("_")[0] == recommended[-1]][-1]
    at = open_tile(at, key)
    assert shown(at) == recommended[-1]
    under = [c.value for c in at.main.caption if c.value.startswith("syn") and "\n" in c.value]
    assert len(under) == 12  # the list underneath is unchanged
