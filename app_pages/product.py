"""The product view: one product, everything we know of it, in a dialog opened by the button under any product tile.

Streamlit images cannot be clicked, so each tile (``common.product_grid``) has a small *View* button. The product
shown lives in session state (``product_view``), not in the button's value: a neighbour opened inside the view
replaces it, and the view stays open across reruns until it is closed."""
from __future__ import annotations

import re

import time
from typing import Callable

import pandas as pd
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.cache import ArtefactCache
from core.data.catalog import Catalog
from core.embeddings.pipeline import KIND_NAMES, Built
from core.explore.cluster import NOISE
from core.explore.product import (TILE_ATTRS, PurchaseCounts, ScoreRange, product_facts, purchase_counts,
                                  score_meaning, stored_cluster_map, typical_scores)

STATE = "product_view"  # {"tile": key of the tile that opened it, "page": its page, "id": product shown, "trail": [...]}
VIEW_COLUMNS = 5  # neighbour tiles per row in the view: two rows of the 10 neighbours shown
MAP_RECHECK_S = 60.0  # seconds before a cluster map not found is looked for again


# ---------------------------------------------------------------- cached facts (see core/explore/product.py)

@st.cache_resource(show_spinner=False, max_entries=4)
def get_purchase_counts(_catalog: Catalog, catalog_key: tuple) -> PurchaseCounts:
    """``core.explore.product.purchase_counts`` of the catalogue; ``catalog_key`` stands in for it."""
    return purchase_counts(_catalog.purchases)


@st.cache_resource(show_spinner=False, max_entries=4)
def get_typical_scores(_built: Built, build_key: tuple, k: int = 10) -> dict[str, ScoreRange]:
    return typical_scores(_built, k)


@st.cache_resource(show_spinner=False, max_entries=4)
def map_lookup(_built: Built, build_key: tuple) -> dict:
    """The build's stored hybrid map once found ("map"), and when it was last looked for ("checked")."""
    return {}


def stored_map(built: Built):
    """The default (hybrid) cluster map if it is cached, else None; never computes one. Looking costs the kind's
    fingerprint (3.5 s on the H&M sample): a map found is kept, a missing one looked for again after a minute, so
    one computed meanwhile (the Clusters page, the build) shows up."""
    found = map_lookup(built, build_key(built))
    if found.get("map") is None and time.monotonic() - found.get("checked", -MAP_RECHECK_S) >= MAP_RECHECK_S:
        found["map"], found["checked"] = stored_cluster_map(built, ArtefactCache()), time.monotonic()
    return found.get("map")


def catalog_key(catalog: Catalog) -> tuple:
    return catalog.source, catalog.name, id(catalog)


def build_key(built: Built) -> tuple:
    return built.catalog.name, built.backbone.name, id(built)


# ---------------------------------------------------------------- shop text

_MARKDOWN = re.compile(r"([\\`*_\[\]()<>#!|~$])")


def md(text) -> str:
    """A shop's text for a markdown element, shown as it is written: the characters markdown acts on are escaped, so
    a title or a description draws no link, image, emphasis, formula ($...$) or tag; its line breaks are kept."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", "  \n")


# ---------------------------------------------------------------- tiles

def tile_caption(row: pd.Series, score: float | None = None, attributes=TILE_ATTRS) -> str:
    """A product tile's caption: its title, then its ``attributes`` (type, colour and pattern), then its id and
    the score if any."""
    attrs = " · ".join(md(row[c]) for c in attributes if c in row and row[c])
    last = f"{md(row.name)} · score {score:.3f}" if score is not None else md(row.name)
    return "  \n".join(x for x in (md(row["title"]), attrs, last) if x)


def neighbour_captions(catalog: Catalog, found: pd.DataFrame) -> list[str]:
    """:func:`tile_caption` of each product of ``found`` (product_id, score)."""
    products = catalog.products
    return [tile_caption(products.loc[pid], float(score)) for pid, score in zip(found["product_id"], found["score"])]


def score_note(kind: str, ranges: dict[str, ScoreRange] | None, query: str | None = None) -> str:
    """The line under a space's neighbours: what its score means, and its typical range between products."""
    note = f"Score: {score_meaning(kind, query)}."
    r = (ranges or {}).get(kind)
    if r is not None:
        note = note[:-1] + f"; between products typically {r.first:.2f} (nearest) to {r.kth:.2f} ({ordinal(r.k)})."
    return note


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _page() -> str:
    ctx = get_script_run_ctx()
    return ctx.page_script_hash if ctx else ""


def _unused_key(base: str) -> str:
    """``base``, or ``base_2``, ``base_3``... when a widget of this run already has it (the same product shown
    twice on one page). Stable across reruns as long as the page draws its tiles in the same order."""
    ctx = get_script_run_ctx()
    used = getattr(getattr(ctx, "shared", None), "widget_user_keys_this_run", ())  # Streamlit 1.67's run state
    key, n = base, 1
    while key in used:
        n += 1
        key = f"{base}_{n}"
    return key


def _open(tile: str, product_id: str) -> None:
    st.session_state[STATE] = {"tile": tile, "page": _page(), "id": product_id, "trail": []}


def _follow(product_id: str) -> None:
    state = st.session_state.get(STATE)
    if state and state["id"] != product_id:
        state["trail"] = [*state["trail"], state["id"]]
        state["id"] = product_id


def _back() -> None:
    state = st.session_state.get(STATE)
    if state and state["trail"]:
        state["id"] = state["trail"][-1]
        state["trail"] = state["trail"][:-1]


def _close() -> None:
    st.session_state.pop(STATE, None)


def view_button(catalog: Catalog, product_id: str, built: Callable[[], Built | None]) -> None:
    """The *View* button under a product tile, and the product view when this tile opened it. ``built``: gives
    the finished build or None (called each time the view draws, so it fills in when the build finishes)."""
    key = _unused_key(f"product_open_{product_id}")
    st.button("View", key=key, on_click=_open, args=(key, product_id), icon=":material/open_in_full:",
              type="tertiary", help="Open this product: every attribute, sales, cluster, neighbours in each space")
    state = st.session_state.get(STATE)
    if state and state["tile"] == key and state["page"] == _page():
        product_view(catalog, built)


# ---------------------------------------------------------------- the view

@st.dialog("Product", width="large", on_dismiss=_close)
def product_view(catalog: Catalog, built: Callable[[], Built | None]) -> None:
    state = st.session_state.get(STATE)
    if not state or state["id"] not in catalog.products.index:  # e.g. another catalogue chosen since
        return
    product_id, now = state["id"], built()
    facts = product_facts(catalog, product_id, get_purchase_counts(catalog, catalog_key(catalog)), now,
                          stored_map(now) if now is not None else None)
    if state["trail"]:
        back = state["trail"][-1]
        st.button(f"Back to {back} · {md(catalog.products.at[back, 'title'])}", key="product_view_back",
                  on_click=_back, icon=":material/arrow_back:", type="tertiary")
    photo, about, table = st.columns([0.8, 1.5, 1.0])  # the neighbours start within a screen's height
    with photo:
        if facts.image_path:
            st.image(facts.image_path, width="stretch")
        else:
            st.markdown("*(no photo)*")
    with about:
        st.subheader(md(facts.title))
        st.caption(" · ".join([md(product_id), *(md(facts.attributes[c]) for c in TILE_ATTRS
                                             if facts.attributes.get(c))]))
        if facts.description:
            st.markdown(md(facts.description))
        sales(facts, catalog)
        cluster_line(facts)
        if facts.texture is not None:
            (st.warning if facts.texture.confused else st.success)(facts.texture.summary())
    with table:
        attributes_table(facts.attributes)
    neighbours(catalog, facts.neighbours, now)


def sales(facts, catalog: Catalog) -> None:
    counts = get_purchase_counts(catalog, catalog_key(catalog))
    all_time, recent = facts.bought
    c1, c2, c3 = st.columns(3)
    c1.metric("Bought (all time)", f"{all_time:,}", help="Purchase rows of this product in the whole purchase data")
    c2.metric(f"Last {facts.weeks} weeks", f"{recent:,}", help=f"The last {facts.weeks} weeks of the purchase data")
    c3.metric("Sales rank", f"#{facts.rank:,}" if facts.rank else "–",
              help=f"Among the catalogue's {len(catalog.products):,} products, by purchases over all time (1: the "
                   "bestseller; ties share a rank)")
    if counts.until is None:
        st.caption("This catalogue has no purchases." if counts.counts.empty else
                   f"Sales rank among {len(catalog.products):,} products; the purchases have no dates, so there are "
                   f"no last {facts.weeks} weeks.")
    else:
        never = "Never bought. " if not all_time else ""
        st.caption(f"{never}Sales rank among {len(catalog.products):,} products; the last {facts.weeks} weeks of the "
                   f"data run {counts.since:%d %b} – {counts.until:%d %b %Y}.")


def cluster_line(facts) -> None:
    if not facts.map_computed:
        st.markdown("**Cluster:** map not computed yet (the Clusters page computes it, or `python -m core build`).")
        return
    place = facts.cluster
    if place is None:
        st.markdown("**Cluster:** not on the hybrid map.")
    elif place.cluster == NOISE:
        likeliest = f"; likeliest cluster {place.likeliest}: {place.likeliest_name}" if place.likeliest != NOISE else ""
        st.markdown(f"**Cluster:** none (HDBSCAN noise on the hybrid map{likeliest}).")
    else:
        st.markdown(f"**Cluster {place.cluster}:** {place.name} ({place.size:,} products, hybrid map)")


def attributes_table(attributes: dict[str, str]) -> None:
    rows = [(md(name.replace("_", " ")), md(value).replace("  \n", " ")) for name, value in attributes.items() if value]
    st.markdown("| attribute | value |\n| --- | --- |\n" + "\n".join(f"| {n} | {v} |" for n, v in rows))


def neighbours(catalog: Catalog, found: dict[str, pd.DataFrame], built: Built | None) -> None:
    if built is None:
        st.info("Neighbours appear here once the embeddings are computed (see the Neighbours page).")
        return
    ranges = get_typical_scores(built, build_key(built))
    st.markdown("**Nearest products in each space**")
    for tab, kind in zip(st.tabs([KIND_NAMES[k] for k in found]), found):
        with tab:
            st.caption(score_note(kind, ranges) + " Scores compare within one space only: each has its own range.")
            frame = found[kind]
            if frame.empty:
                st.info("This product has no readable photo, so it has no place in this space.")
                continue
            captions = neighbour_captions(catalog, frame)
            ids = frame["product_id"].tolist()
            for start in range(0, len(ids), VIEW_COLUMNS):
                for col, i in zip(st.columns(VIEW_COLUMNS), range(start, min(start + VIEW_COLUMNS, len(ids)))):
                    with col:
                        path = catalog.products.at[ids[i], "image_path"]
                        if path:
                            st.image(path, width="stretch")
                        st.button("Open", key=f"product_view_{kind}_{ids[i]}", on_click=_follow, args=(ids[i],),
                                  icon=":material/open_in_full:", type="tertiary", help="Show this product here")
                        st.caption(captions[i])
