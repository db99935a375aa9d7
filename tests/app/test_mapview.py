"""The cluster map chart (Vega-Lite: photos in the hover, selections read back as product ids) and, headless, the
Clusters page clearing a selection when the embedding changes."""
import pandas as pd
import pytest

from app_pages.mapview import (BOX, MAX_CATEGORIES, MAX_OUTLINED, PICK, density_chart, list_key, map_chart, map_key,
                               selected_ids)
from tests.app import test_pages
from tests.app.test_pages import clusters_page, product_captions

app_env = test_pages.app_env  # the pages' fixture: a synthetic catalogue, the tiny backbone, a shared cache


def frame(n: int = 12) -> pd.DataFrame:
    clusters = [0, 0, 0, 1, 1, 1, 2, 2, -1, -1, 1, 0][:n]
    assigned = ["noise" if c < 0 else "cluster" for c in clusters]
    assigned[10] = "soft"
    return pd.DataFrame({"product_id": [f"p{i}" for i in range(n)], "x": range(n), "y": range(n),
                         "cluster": clusters, "cluster_name": [f"name {c}" for c in clusters],
                         "assigned": assigned, "title": "t", "product_type": [f"type{i}" for i in range(n)],
                         "colour": ["Red", "Blue"] * (n // 2), "pattern": "Solid"})


def layers(chart) -> list[tuple[dict, list[dict]]]:
    """Each layer's spec and its rows."""
    spec = chart.to_dict()
    return [(layer, spec["datasets"][layer.get("data", spec.get("data"))["name"]]) for layer in spec["layer"]]


def points(chart) -> list[dict]:
    return layers(chart)[0][1]


def test_every_product_is_drawn_once_noise_below_soft_open():
    rows = points(map_chart(frame()))
    assert sorted(r["product_id"] for r in rows) == sorted(frame()["product_id"])
    assert [r["product_id"] for r in rows[:2]] == ["p8", "p9"] and rows[0]["group"] == "noise"  # drawn first
    assert [r["product_id"] for r in rows if r["soft"]] == ["p10"]
    encoding = layers(map_chart(frame()))[0][0]["encoding"]
    assert encoding["fillOpacity"]["condition"]["value"] == 0  # soft points: open circles
    assert encoding["color"]["scale"]["domain"] == ["0: name 0", "1: name 1", "2: name 2", "noise"]
    assert encoding["color"]["scale"]["range"][-1] == "#c8c8c8"


def test_the_hover_shows_the_photo_when_there_are_photos():
    photos = pd.Series({f"p{i}": f"component/thumbs/{i}.jpg" for i in range(11)})  # p11 has no photo
    chart = map_chart(frame(), photos=photos)
    tooltip = layers(chart)[0][0]["encoding"]["tooltip"]
    assert tooltip[0] == {"field": "photo", "type": "nominal", "title": "image"}  # vega-tooltip shows it as a photo
    assert tooltip[1]["title"] == "title"
    by_id = {r["product_id"]: r["photo"] for r in points(chart)}
    assert by_id["p3"] == "component/thumbs/3.jpg" and by_id["p11"] == ""
    plain = layers(map_chart(frame()))[0][0]["encoding"]["tooltip"]
    assert "image" not in [t["title"] for t in plain]


def test_highlight_outlines_exactly_one_cluster_and_ids_label_the_clusters():
    chart = map_chart(frame(), highlight=1)
    (outline,) = [rows for layer, rows in layers(chart) if layer["mark"].get("filled") is False]
    assert sorted(r["product_id"] for r in outline) == ["p10", "p3", "p4", "p5"]
    labels = [rows for layer, rows in layers(chart) if layer["mark"]["type"] == "text"]
    assert labels and all(sorted(r["cluster"] for r in rows) == [0, 1, 2] for rows in labels)  # noise: no label


def test_colour_by_attribute_lumps_rare_values_and_crowded_legends_hide():
    big = pd.concat([frame()] * 5, ignore_index=True)
    big["product_type"] = [f"type{i}" for i in range(len(big))]
    encoding = layers(map_chart(big, "product_type"))[0][0]["encoding"]
    domain = encoding["color"]["scale"]["domain"]
    assert len(domain) == MAX_CATEGORIES + 1 and domain[-1] == "other"
    assert encoding["color"]["legend"] is None
    colour = layers(map_chart(frame(), "colour"))[0][0]["encoding"]["color"]
    assert set(colour["scale"]["domain"]) == {"Red", "Blue"} and colour["legend"] is not None


def test_selected_ids_reads_clicked_points_then_the_box():
    f = frame()
    selection = {PICK: [{"product_id": "p7"}, {"product_id": "p2"}], BOX: {"x": [4.5, 2], "y": [1.5, 9]}}
    assert selected_ids(selection, f) == ["p7", "p2", "p3", "p4"]  # the box holds x 2..4.5 and y 1.5..9
    assert selected_ids({PICK: [], BOX: {}}, f) == [] and selected_ids(None, f) == []
    spec = map_chart(f).to_dict()
    assert {BOX, PICK} <= {p["name"] for p in spec.get("params", []) + spec["layer"][0].get("params", [])}


def test_the_density_map_is_one_image_over_the_points_extent_with_the_box_selection():
    f = frame()
    spec = density_chart(f).to_dict()
    image, corners = spec["layer"][:2]
    assert image["mark"]["type"] == "image"
    (row,) = spec["datasets"][image["data"]["name"]]
    assert row["url"].startswith("data:image/png;base64,")  # drawn on the server, no request for it
    assert (row["x"], row["x2"], row["y"], row["y2"]) == (0.0, 11.0, 11.0, 0.0)  # north up: y at the top
    assert image["encoding"]["x"]["scale"]["domain"] == [0.0, 11.0] and image["encoding"]["x"]["scale"]["nice"] is False
    assert {BOX, PICK} <= {p["name"] for p in spec.get("params", []) + corners.get("params", [])}
    assert all("product_id" not in r for r in spec["datasets"][corners["data"]["name"]])  # a click selects nothing
    assert not any("tooltip" in layer.get("encoding", {}) for layer in spec["layer"][:2])
    labels = [spec["datasets"][layer["data"]["name"]] for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert labels and all(sorted(r["cluster"] for r in rows) == [0, 1, 2] for rows in labels)
    (legend,) = [layer for layer in spec["layer"] if "color" in layer.get("encoding", {})]
    assert legend["encoding"]["color"]["scale"] == layers(map_chart(f))[0][0]["encoding"]["color"]["scale"]


def test_a_flat_map_still_spans_its_image_and_a_click_on_a_corner_selects_nothing():
    f = frame()
    f["y"] = 0.0
    spec = density_chart(f).to_dict()
    assert spec["layer"][0]["encoding"]["y"]["scale"]["domain"] == [-0.5, 0.5]
    assert selected_ids({PICK: [{}], BOX: {}}, f) == []  # what the front end sends for a corner's click


def test_the_density_image_is_drawn_once_per_key():
    import app_pages.mapview as mapview
    f = frame()
    first = mapview.kept_density_uri(f, ("test-key", 1), "cluster", 20, 10)
    f2 = f.assign(x=f["x"] * 2)  # another frame under the same key: the kept image
    assert mapview.kept_density_uri(f2, ("test-key", 1), "cluster", 20, 10) == first
    uri, extent, order = mapview.kept_density_uri(f2, ("test-key", 2), "cluster", 20, 10)
    assert extent[1] == 22.0 and order == ["0: name 0", "1: name 1", "2: name 2", "noise"]


def test_a_large_highlighted_cluster_is_outlined_by_a_sample_of_its_products():
    big = pd.DataFrame({"product_id": [f"p{i}" for i in range(3 * MAX_OUTLINED)], "x": range(3 * MAX_OUTLINED),
                        "y": 0.0, "cluster": 1, "cluster_name": "one", "assigned": "cluster", "title": "",
                        "product_type": "", "colour": "", "pattern": ""})
    spec = density_chart(big, highlight=1).to_dict()
    (outline,) = [spec["datasets"][layer["data"]["name"]] for layer in spec["layer"]
                  if layer["mark"].get("filled") is False]
    assert MAX_OUTLINED // 2 < len(outline) <= MAX_OUTLINED
    assert min(r["x"] for r in outline) == 0 and max(r["x"] for r in outline) > 2.9 * MAX_OUTLINED  # spread over it


@pytest.mark.app
def test_past_the_density_threshold_the_clusters_page_draws_an_image_and_a_box_selects(app_env, monkeypatch):
    monkeypatch.setattr("app_pages.mapview.DENSITY_POINTS", 10)  # the synthetic catalogue counts as a large one
    box = {"selection": {PICK: [], BOX: {"x": [-1e9, 1e9], "y": [-1e9, 1e9]}}}
    at = clusters_page(**{map_key("hybrid"): box})
    assert not at.exception
    (chart,) = at.get("vega_lite_chart")
    assert '"type": "image"' in chart.proto.spec.replace('"type":"image"', '"type": "image"')
    assert any("more than a browser draws one by one" in c.value for c in at.caption)
    (shown,) = [c.value for c in at.caption if "more than a browser" in c.value]
    everything = int(shown.split(" products")[0].replace(",", ""))
    assert any(s.value == f"Selection: {everything:,} products" for s in at.subheader)  # the box holds them all
    assert product_captions(at)
    at.selectbox(key="clusters_colour").set_value("colour").run()  # coloured by an attribute: a legend of colours
    assert not at.exception
    (chart,) = at.get("vega_lite_chart")
    assert '"image"' in chart.proto.spec and '"legend"' in chart.proto.spec


@pytest.mark.app
def test_a_selection_is_cleared_when_the_embedding_changes(app_env):
    picked = {"selection": {PICK: [{"product_id": "syn00003"}, {"product_id": "syn00017"}], BOX: {}}}
    at = clusters_page(**{map_key("hybrid"): picked})
    assert any(s.value == "Selection: 2 products" for s in at.subheader)
    assert [c.split(" · ")[0] for c in product_captions(at)] == ["syn00003", "syn00017"]

    at.selectbox(key="clusters_kind").set_value("text").run()
    assert not any(s.value.startswith("Selection") for s in at.subheader) and not product_captions(at)
    assert any("Drag a box" in i.value for i in at.info)


@pytest.mark.app
def test_a_picked_cluster_is_cleared_when_the_embedding_changes(app_env):
    row = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at = clusters_page(clusters_min_samples=2, **{list_key("hybrid", 0, 2): row})
    assert any(s.value.startswith("Cluster ") for s in at.subheader)
    at.selectbox(key="clusters_kind").set_value("image").run()
    assert not any(s.value.startswith("Cluster ") for s in at.subheader) and not product_captions(at)


def chart_rows(at) -> pd.DataFrame:
    """The rows the page's map was given (its Arrow dataset)."""
    import pyarrow as pa
    (chart,) = at.get("vega_lite_chart")
    return pa.ipc.open_stream(chart.proto.datasets[0].data.data).read_all().to_pandas()


@pytest.mark.app
def test_the_map_hover_names_photo_thumbnails_written_to_the_cache(app_env):
    from core.cache import ArtefactCache
    from core.explore.thumbnails import thumbnail_folder
    from tests.app.test_pages import rerun_until
    at = rerun_until(clusters_page(), lambda at: not at.get("progress"), timeout=60)  # thumbnails written
    rows = chart_rows(at)
    assert len(rows) == 40 and rows["photo"].str.startswith("component/app_pages.mapview.thumbnails/").all()
    folder = thumbnail_folder(ArtefactCache())
    assert all((folder / url.rsplit("/", 1)[1]).is_file() for url in rows["photo"])  # what the route serves
