"""The cluster map figure and reading plotly selection events back into product ids."""
import pandas as pd

from app_pages.mapview import MAX_CATEGORIES, map_figure, selected_ids


def frame(n: int = 12) -> pd.DataFrame:
    clusters = [0, 0, 0, 1, 1, 1, 2, 2, -1, -1, 1, 0][:n]
    assigned = ["noise" if c < 0 else "cluster" for c in clusters]
    assigned[10] = "soft"
    return pd.DataFrame({"product_id": [f"p{i}" for i in range(n)], "x": range(n), "y": range(n),
                         "cluster": clusters, "cluster_name": [f"name {c}" for c in clusters],
                         "assigned": assigned, "title": "t", "product_type": [f"type{i}" for i in range(n)],
                         "colour": ["Red", "Blue"] * (n // 2), "pattern": "Solid"})


def ids_of(fig, name):
    (trace,) = [t for t in fig.data if t.name == name]
    return [row[0] for row in trace.customdata]


def test_every_product_is_drawn_once_with_its_id():
    fig = map_figure(frame())
    assert all(t.type == "scattergl" for t in fig.data)
    drawn = [row[0] for t in fig.data for row in t.customdata]
    assert sorted(drawn) == sorted(frame()["product_id"])
    assert ids_of(fig, "noise") == ["p8", "p9"]
    (soft,) = [t for t in fig.data if "p10" in [r[0] for r in t.customdata]]
    assert soft.marker.symbol[[r[0] for r in soft.customdata].index("p10")] == "circle-open"


def test_highlight_outlines_exactly_one_cluster():
    fig = map_figure(frame(), highlight=1)
    assert sorted(ids_of(fig, "selected cluster")) == ["p10", "p3", "p4", "p5"]


def test_colour_by_attribute_lumps_rare_values():
    big = pd.concat([frame()] * 5, ignore_index=True)
    big["product_type"] = [f"type{i}" for i in range(len(big))]
    fig = map_figure(big, "product_type")
    assert len(fig.data) == MAX_CATEGORIES + 1 and fig.data[-1].name == "other"
    assert sum(len(t.customdata) for t in fig.data) == len(big)
    assert {t.name for t in map_figure(frame(), "colour").data} == {"Red", "Blue"}


def test_selected_ids_reads_customdata_and_falls_back_to_trace_and_index():
    fig = map_figure(frame())
    points = [{"customdata": ["p3", "t"]}, {"customdata": "p4"}, {"curve_number": 0, "point_index": 1},
              {"customdata": ["p3"]}]
    assert selected_ids({"points": points}, fig) == ["p3", "p4", ids_of(fig, fig.data[0].name)[1]]
    assert selected_ids(None) == [] and selected_ids({"points": []}) == []


def test_cluster_ids_label_the_map_and_crowded_legends_hide():
    fig = map_figure(frame())
    assert sorted(a.text for a in fig.layout.annotations) == ["0", "1", "2"]  # noise gets no label
    assert fig.layout.showlegend
    big = pd.concat([frame()] * 5, ignore_index=True)
    big["product_type"] = [f"type{i}" for i in range(len(big))]
    assert not map_figure(big, "product_type").layout.showlegend
