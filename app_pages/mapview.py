"""The cluster map as a Vega-Lite chart whose hover shows each product's photo, the thumbnails it shows served
by the app, and its selections read back as product ids."""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from plotly.colors import qualitative

from app_pages.common import Job, find_job, job_line
from core.cache import ArtefactCache
from core.data.catalog import Catalog
from core.embeddings.pipeline import Built
from core.explore.density import NONE, density_image, map_extent, png_data_uri
from core.explore.thumbnails import catalog_thumbnails, thumbnail_folder

PALETTE = qualitative.Dark24 + qualitative.Light24 + qualitative.Alphabet
NOISE_COLOUR = "#c8c8c8"
MAX_CATEGORIES = 40  # colouring by an attribute with more values lumps the rarest into "other"
MAX_LEGEND = 25  # more groups than this: the legend would crowd out the map (the cluster list names them)
BOX, PICK = "box", "pick"  # the chart's selections: a box dragged on the map, points clicked (shift: several)
SELECTIONS = [BOX, PICK]
MAX_OUTLINED = 5000  # a highlighted cluster's products outlined on the map; a larger one by every n-th
# More points than this: the map is a density image (density_chart). A new page's Vega-Lite scatter in headless
# Chromium on 2 cores (python -m core bench map, BENCH_MAP_DRAW=points): see README, How it scales.
DENSITY_POINTS = 30_000
DENSITY_WIDTH = 650  # the density image's pixels across: the map's width in its column at 1400 px
# vega-tooltip (the tooltip of Streamlit's Vega-Lite charts) shows a field titled "image" as the photo at that
# URL and one titled "title" as the heading; the others as rows of a table
HOVER = [("photo", "image"), ("title", "title"), ("product_id", "product"), ("product_type", "type"),
         ("colour", "colour"), ("pattern", "pattern"), ("cluster_name", "cluster")]


def map_key(kind: str) -> str:
    """The map's widget key: one per embedding kind, so a selection made on one map is not carried to another
    (a keyed chart keeps its selection whatever data it is given)."""
    return f"clusters_map_{kind}"


def list_key(kind: str, min_size: int, min_samples: int) -> str:
    """The cluster list's widget key: cluster ids mean other clusters for another kind or other settings."""
    return f"clusters_list_{kind}_{min_size}_{min_samples}"


def colour_groups(frame: pd.DataFrame, colour_by: str) -> tuple[pd.Series, list[str]]:
    """Each point's colour group as the legend names it, and the groups in legend order. By cluster: "3: Black
    solid dress", noise as "noise" (last); by an attribute: its values, the rarest beyond
    :data:`MAX_CATEGORIES` lumped into "other"."""
    if colour_by == "cluster":
        clustered = frame["assigned"] != "noise"
        groups = (frame["cluster"].astype(str) + ": " + frame["cluster_name"]).where(clustered, "noise")
        ids = frame.loc[clustered, ["cluster", "cluster_name"]].drop_duplicates().sort_values("cluster")
        order = [f"{c}: {n}" for c, n in ids.itertuples(index=False)]
        return groups, order + (["noise"] if (~clustered).any() else [])
    values = frame[colour_by].fillna("").astype(str).replace("", "(none)")
    common = values.value_counts().index[:MAX_CATEGORIES]
    groups = values.where(values.isin(common), "other")
    return groups, list(common) + (["other"] if (groups == "other").any() else [])


def map_chart(frame: pd.DataFrame, colour_by: str = "cluster", highlight: int | None = None,
              photos: pd.Series | None = None, height: int = 600) -> alt.LayerChart:
    """The map of ``frame`` (``ClusterMap.frame``: product_id, x, y, cluster, cluster_name, assigned, title,
    product_type, colour, pattern), one colour per group of :func:`colour_groups`, noise in grey under the
    clusters, noise placed by soft membership as open circles, ``highlight`` outlining one cluster's products
    and cluster ids at their medians. ``photos`` (product id -> URL) puts each product's photo in its hover.
    Selections: :data:`BOX` (drag) and :data:`PICK` (click, shift-click for more); the wheel zooms, a
    shift-drag pans, a double click resets."""
    groups, order = colour_groups(frame, colour_by)
    data = frame[["product_id", "x", "y", "cluster", "title", "product_type", "colour", "pattern",
                  "cluster_name"]].copy()
    data["group"] = groups.to_numpy()
    data["soft"] = (frame["assigned"] == "soft").to_numpy()
    data["photo"] = frame["product_id"].map(photos).fillna("").to_numpy() if photos is not None else ""
    data = data.iloc[np.argsort(data["group"].to_numpy() != "noise", kind="stable")]  # noise drawn first, below
    scale = alt.Scale(domain=order, range=group_colours(order))
    legend = _legend(order)
    tooltip = [alt.Tooltip(f"{field}:N", title=title) for field, title in HOVER if photos is not None
               or field != "photo"]
    x = alt.X("x:Q", axis=None, scale=alt.Scale(zero=False))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(zero=False))
    box, pick, view = _selections()
    points = alt.Chart(data).mark_point(filled=True, size=16, strokeWidth=1, clip=True).encode(
        x=x, y=y, color=alt.Color("group:N", scale=scale, legend=legend, sort=order),
        stroke=alt.Stroke("group:N", scale=scale, legend=None),
        fillOpacity=alt.condition("datum.soft", alt.value(0), alt.value(0.8)),
        strokeOpacity=alt.condition("datum.soft", alt.value(0.9), alt.value(0)),
        tooltip=tooltip).add_params(box, pick, view)
    layers = [points, *_outline(data, highlight, x, y, tooltip)]
    if colour_by == "cluster":
        layers += _cluster_ids(frame, x, y)
    return alt.layer(*layers).properties(height=height).configure_view(stroke=None)


def _legend(order: list[str]) -> alt.Legend | None:
    """The groups' legend below the map (which keeps its width), or None past :data:`MAX_LEGEND` groups."""
    return alt.Legend(title=None, orient="bottom", columns=3, labelLimit=150, symbolLimit=MAX_LEGEND + 1) \
        if len(order) <= MAX_LEGEND else None


def _selections() -> tuple:
    """The map's selections: :data:`BOX` (a drag without shift), :data:`PICK` (a click) and the view's zoom (the
    wheel) and pan (a drag with shift)."""
    box = alt.selection_interval(name=BOX, encodings=["x", "y"], zoom=False,
                                 on="[pointerdown[!event.shiftKey], window:pointerup] > window:pointermove!")
    pick = alt.selection_point(name=PICK, fields=["product_id"], on="click", clear="dblclick")
    view = alt.selection_interval(bind="scales", zoom="wheel!",
                                  translate="[pointerdown[event.shiftKey], window:pointerup] > window:pointermove!")
    return box, pick, view


def _outline(data: pd.DataFrame, highlight: int | None, x: alt.X, y: alt.Y, tooltip: list) -> list[alt.Chart]:
    """The products of cluster ``highlight`` (at most :data:`MAX_OUTLINED`, evenly drawn) outlined in black."""
    if highlight is None:
        return []
    members = data[data["cluster"] == highlight]
    members = members.iloc[::max(1, -(-len(members) // MAX_OUTLINED))]
    return [alt.Chart(members).mark_point(size=40, strokeWidth=1.5, color="black", filled=False, clip=True)
            .encode(x=x, y=y, tooltip=tooltip)]


def _cluster_ids(frame: pd.DataFrame, x: alt.X, y: alt.Y) -> list[alt.Chart]:
    """Each cluster's id just above the median of its products (a small cluster squeezed into a few pixels stays
    visible under it), dark on a white halo."""
    clustered = frame[frame["assigned"] != "noise"]
    centres = clustered.groupby("cluster")[["x", "y"]].median().reset_index()
    if not len(centres):
        return []
    text = alt.Chart(centres).encode(x=x, y=y, text="cluster:N")
    font = {"fontSize": 11, "fontWeight": "bold", "clip": True, "dy": -9}
    return [text.mark_text(**font, stroke="white", strokeWidth=3, opacity=0.8), text.mark_text(**font, color="#222")]


def density_uri(frame: pd.DataFrame, colour_by: str, width: int, height: int
                ) -> tuple[str, tuple[float, float, float, float], list[str]]:
    """The density image of ``frame`` coloured by ``colour_by`` as a PNG data URI, the extent it covers and the
    groups it is coloured by (:func:`colour_groups`' order)."""
    groups, order = colour_groups(frame, colour_by)
    codes = pd.Categorical(groups, categories=order).codes.astype(np.int32)
    codes[groups.to_numpy() == "noise"] = NONE
    xs, ys = frame["x"].to_numpy(), frame["y"].to_numpy()
    extent = map_extent(xs, ys)
    image = density_image(xs, ys, codes, group_colours(order), width, height, extent, NOISE_COLOUR)
    return png_data_uri(image), extent, order


@st.cache_data(show_spinner=False, max_entries=8)
def kept_density_uri(_frame: pd.DataFrame, key: tuple, colour_by: str, width: int, height: int
                     ) -> tuple[str, tuple[float, float, float, float], list[str]]:
    """:func:`density_uri`, kept for ``key`` (what makes the frame: the map's fingerprint, settings, soft
    membership), so a box dragged on a million-point map neither draws it nor groups its points again."""
    return density_uri(_frame, colour_by, width, height)


def group_colours(order: list[str]) -> list[str]:
    """The colour of each group of :func:`colour_groups`' order: the palette's, grey for noise."""
    return [NOISE_COLOUR if g == "noise" else PALETTE[i % len(PALETTE)] for i, g in enumerate(order)]


def density_chart(frame: pd.DataFrame, colour_by: str = "cluster", highlight: int | None = None,
                  height: int = 600, key: tuple = ()) -> alt.LayerChart:
    """The map of ``frame`` (as :func:`map_chart`'s) for more points than a browser draws one by one
    (:data:`DENSITY_POINTS`): an image made on the server (:func:`density_uri`), each pixel in the colour of the
    commonest group of its points (:func:`colour_groups`, coloured as on :func:`map_chart`), with the legend
    (for at most :data:`MAX_LEGEND` groups), the cluster ids and the ``highlight`` outline on top. :data:`BOX`
    selects as on :func:`map_chart`; there is no hover, no pick and no zoom (the image would not redraw).
    ``key``: what makes ``frame``, under which its image is kept (empty: drawn every time)."""
    args = (colour_by, DENSITY_WIDTH, height)
    uri, (x0, x1, y0, y1), order = kept_density_uri(frame, key, *args) if key else density_uri(frame, *args)
    x = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[x0, x1], nice=False, zero=False))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[y0, y1], nice=False, zero=False))
    picture = alt.Chart(pd.DataFrame({"x": [x0], "x2": [x1], "y": [y1], "y2": [y0], "url": [uri]})).mark_image(
        aspect=False).encode(x=x, x2="x2:Q", y=y, y2="y2:Q", url="url:N")
    box, pick, _ = _selections()
    # the selections' layer: two invisible corner points with no product id (a click on one selects nothing)
    corners = alt.Chart(pd.DataFrame({"x": [x0, x1], "y": [y0, y1]})).mark_point(opacity=0).encode(
        x=x, y=y).add_params(box, pick)
    layers = [picture, corners, *_outline(frame[["x", "y", "cluster"]], highlight, x, y, [])]
    legend = _legend(order)
    if legend is not None:  # the legend alone: symbols of no size at the first corner
        keyed = pd.DataFrame({"x": x0, "y": y0, "group": order})
        scale = alt.Scale(domain=order, range=group_colours(order))
        layers.append(alt.Chart(keyed).mark_point(size=0, filled=True).encode(
            x=x, y=y, color=alt.Color("group:N", scale=scale, legend=legend, sort=order)))
    if colour_by == "cluster":
        layers += _cluster_ids(frame, x, y)
    return alt.layer(*layers).properties(height=height).configure_view(stroke=None)


def selected_ids(selection: dict | None, frame: pd.DataFrame) -> list[str]:
    """Product ids selected on a :func:`map_chart` (``st.altair_chart``'s ``event.selection``): the clicked
    ones first, then those in the box (as in ``frame``), each once."""
    selection = selection or {}
    out = dict.fromkeys(str(p["product_id"]) for p in selection.get(PICK) or [] if p.get("product_id"))
    box = selection.get(BOX) or {}
    if "x" in box and "y" in box:
        (x0, x1), (y0, y1) = sorted(box["x"]), sorted(box["y"])
        inside = frame["x"].between(x0, x1) & frame["y"].between(y0, y1)
        out.update(dict.fromkeys(frame.loc[inside, "product_id"].astype(str)))
    return list(out)


# ---------------------------------------------------------------- the photos the hover shows

@st.cache_resource(show_spinner=False, max_entries=4)
def thumbnail_job(_catalog: Catalog, catalog_name: str, cache_root: str) -> Job:
    """Thumbnails of every photo of the catalogue written to the cache in the background (about 2 ms a photo,
    skipped when there); ``result``: each product's thumbnail file name ("" without a photo)."""
    return Job("thumbnails", lambda progress: catalog_thumbnails(_catalog.products, ArtefactCache(cache_root), progress),
               step="finding the photos' thumbnails").start()


def photo_route(cache: ArtefactCache) -> str:
    """The URL path (relative to the app's) under which the app serves the thumbnail folder.

    Streamlit serves a custom component's files from its folder at ``component/<name>/<file>``; the folder
    is declared as such a component (never rendered), so the thumbnails are served from the cache where
    they are, with nothing copied into the app's folder or configured."""
    import streamlit.components.v1 as components
    folder = thumbnail_folder(cache)
    folder.mkdir(parents=True, exist_ok=True)
    return f"component/{components.declare_component('thumbnails', path=str(folder)).name}"


@st.fragment(run_every=2)
def _thumbnail_progress(job: Job) -> None:
    """How far the thumbnails are; reruns the page when they are written."""
    if job.finished or job.error:
        st.rerun()
    fraction = min(job.done / job.total, 1.0) if job.total else 0.0
    st.progress(fraction, text=f"Photos for the hover: {job_line(job)}")


def photo_urls(built: Built) -> pd.Series | None:
    """Product id -> URL of its thumbnail ("" without a photo), once the thumbnails are written (by the warm-up,
    or else by a job of this page); until then None after a line saying how far they are."""
    cache, catalog = ArtefactCache(), built.catalog
    job = find_job(built, "thumbnails")
    if job is None or job.error:
        job = thumbnail_job(catalog, catalog.name, str(cache.root))
    if job.error:
        st.caption(f"No photos in the hover: {job.error}")
        return None
    if not job.finished:
        _thumbnail_progress(job)
        return None
    route = photo_route(cache)
    return pd.Series([f"{route}/{name}" if name else "" for name in job.result], index=catalog.products.index)
