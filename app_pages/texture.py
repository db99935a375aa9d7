"""Texture failures: where each embedding confuses patterns and materials, measured against the catalogue's labels
on held-out products, and the texture-aware embedding's fix shown on the same products."""
import math

import pandas as pd
import plotly.express as px
import streamlit as st

from app_pages.common import (build_key, cached_or_job, current_catalog, describe, get_texture_report, page_build,
                              product_grid, texture_report_job)
from app_pages.product import md
from core.data.catalog import filter_products
from core.embeddings.texture import TYPE_TOLERANCE
from core.embeddings.quality import MIN_CLASS
from core.explore.texture import KIND_ABOUT, TextureReport, before_after_gains, in_order, measures, verdict
SECTIONS = ["Diagnostics", "Worst confusions", "Before / after", "Labels and weights"]
PAIRS_SHOWN = 12
HIGHLIGHT = "background-color: rgba(33, 195, 84, 0.25); font-weight: 600"
# The diagnostics table's columns past what fits 1400 px (report columns): shown in an expander below it
MORE_MEASURES = ("pair_auc", "probe_balanced_accuracy", "zero_shot_balanced_accuracy",
                 "zero_shot_corrected_balanced_accuracy", "n_products")


def points(x: float) -> str:
    return f"{x:+.0f} point" + ("" if round(abs(x)) == 1 else "s")


def number(x, digits: int = 2) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


# ---------------------------------------------------------------- the report, or how to get it

def report_or_button(built, label: str) -> TextureReport | None:
    """The cached report; else its progress while it runs, or what computing it means and a button."""
    try:
        report = get_texture_report(built, build_key(built), label)
    except ValueError as e:  # the catalogue lacks the label, product type or colour
        st.error(f"The texture report cannot be computed for this catalogue: {e}")
        return None
    def ask(job) -> None:
        if job is not None and job.error:
            st.error(f"The texture report failed: {job.error}")
        st.info(f"Not computed yet for the label '{label}' on this catalogue and backbone. It refits the texture "
                "model and (for offline-lit) the heads without the held-out products, then measures each embedding "
                "on them: seconds on a small catalogue, a few minutes on a large one. It is cached, and shown at "
                "once afterwards.")
        if st.button("Compute the report", key="texture_compute", type="primary"):
            texture_report_job(built, label, start=True)
            st.rerun()
    return cached_or_job(report, texture_report_job(built, label), get_texture_report.clear,
                         "Computing the texture report: held-out heads and the texture model are fitted on the "
                         "training products, the weights chosen on validation, then every embedding is measured on "
                         "the test products (and clustered). The result is cached.", ask)


# ---------------------------------------------------------------- 1. diagnostics

def diagnostics_frame(report: TextureReport) -> tuple[pd.DataFrame, list[tuple[str, str, str | None, str]]]:
    """The report's table, one row per kind in the report's order, numeric columns (a missing value is NaN)."""
    table = report.table.set_index("kind")
    table = table.loc[in_order(table.index)].apply(pd.to_numeric, errors="coerce")
    shown = [m for m in measures(report.k, report.label) if m[0] in table.columns]
    return table[[m[0] for m in shown]], shown


def styled(table: pd.DataFrame, shown) -> "pd.io.formats.style.Styler":
    titles = {key: title for key, title, _, _ in shown}
    frame = table.rename(columns=titles)
    style = frame.style.format("{:.3f}", na_rep="–")
    if "products" in frame:
        style = style.format("{:,.0f}", subset=["products"], na_rep="–")
    best_max = [titles[key] for key, _, best, _ in shown if best == "max" and table[key].notna().any()]
    best_min = [titles[key] for key, _, best, _ in shown if best == "min" and table[key].notna().any()]
    return style.highlight_max(subset=best_max, props=HIGHLIGHT).highlight_min(subset=best_min, props=HIGHLIGHT)


def verdict_line(report: TextureReport) -> str:
    """The texture kind against the photo, in points, and which photo-side kind does best."""
    v = verdict(report)
    if v is None:
        return ""
    label, k = report.label, report.k
    line = (f"**texture**: {label} agreement@{k} **{number(v.agreement[0])}** vs {number(v.agreement[1])} for "
            f"the photo (**{points(v.gain_points)}**), sensitivity {number(v.sensitivity[0])} vs "
            f"{number(v.sensitivity[1])}, type agreement@{k} {number(v.type_agreement[0])} vs "
            f"{number(v.type_agreement[1])} ({points(v.cost_points)}, {'within' if v.keeps_type else 'more than'} "
            f"{100 * TYPE_TOLERANCE:.0f} points).")
    if v.best_kind == "photo":
        line += f" No texture-aware kind beats the photo on {label} agreement here."
    elif v.best_kind is not None and v.best_kind != "texture":
        line += (f" Best of the photo-side kinds on {label} agreement: **{v.best_kind}** "
                 f"({number(v.best_agreement)}).")
    return line


def heatmap(frame: pd.DataFrame, x: str = "neighbour's label", y: str = "product's label"):
    """Shares as a heatmap whose cells read at a glance: whole percent in 13 px type, empty below one percent."""
    percent = 100 * frame.astype(float)
    text = percent.map(lambda v: f"{v:.0f}" if v >= 0.5 else "")
    fig = px.imshow(percent, zmin=0, zmax=100, aspect="auto", color_continuous_scale="Blues",
                    labels={"x": x, "y": y, "color": "%"})
    fig.update_traces(text=text.to_numpy(), texttemplate="%{text}", textfont={"size": 13},
                      hovertemplate=f"{y}: %{{y}}<br>{x}: %{{x}}<br>%{{z:.1f}}%<extra></extra>")
    fig.update_layout(height=140 + 30 * len(frame), margin=dict(t=30, b=10, l=10, r=10), coloraxis_showscale=False,
                      font={"size": 13}, xaxis={"side": "top", "tickangle": -40})
    return fig


def diagnostics(report: TextureReport) -> None:
    label, k = report.label, report.k
    table, shown = diagnostics_frame(report)
    main = [m for m in shown if m[0] not in MORE_MEASURES]
    more = [m for m in shown if m[0] in MORE_MEASURES]
    st.subheader("Diagnostics per embedding")
    st.dataframe(styled(table[[m[0] for m in main]], main), key="texture_table", width="stretch")
    line = verdict_line(report)
    if line:
        st.markdown(line)
    st.caption(" · ".join(f"**{title}**: {about}" for _, title, _, about in main) +
               ". Best value per column highlighted.")
    st.caption(" · ".join(f"**{kind}**: {KIND_ABOUT.get(kind, kind)}" for kind in table.index))
    if more:
        with st.expander("More measures: " + ", ".join(title for _, title, _, _ in more)):
            st.dataframe(styled(table[[m[0] for m in more]], more), key="texture_table_more", width="stretch")
            st.caption(" · ".join(f"**{title}**: {about}" for _, title, _, about in more))

    st.subheader("Which labels the neighbours have")
    kinds = in_order(report.details)
    kind = st.selectbox("Embedding", kinds, index=kinds.index("photo") if "photo" in kinds else 0,
                        key="texture_confusion_kind", help="; ".join(f"**{k}**: {KIND_ABOUT.get(k, k)}" for k in kinds))
    details = report.details[kind]
    if details.confusion.empty:
        st.info(f"No {label} class has {MIN_CLASS} held-out products, so there is no confusion matrix. A larger "
                "catalogue (or a coarser label) gives one.")
        return
    st.markdown(f"**{kind}**: the {label} of the {k} nearest neighbours")
    st.plotly_chart(heatmap(details.confusion), key="texture_confusion", width="stretch")
    st.markdown("**null**: an embedding that sees only type + colour")
    st.plotly_chart(heatmap(details.null), key="texture_null", width="stretch")
    st.caption(f"Rows: a product's {label}; columns: the {label} of its {k} nearest held-out neighbours, in percent "
               f"(rows sum to 100; empty: under 1%). The null is what an embedding that knows only product type and "
               f"colour would give (a random other product of the same type and colour): a kind beats it where its "
               f"diagonal is higher.")
    if not details.probe_confusion.empty:
        with st.expander("Linear probe: which labels a classifier on the embedding mixes up"):
            st.plotly_chart(heatmap(details.probe_confusion, "predicted label", "true label"),
                            key="texture_probe", width="stretch")


# ---------------------------------------------------------------- 2. worst confusions

def pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]} → {pair[1]}"


def worst_confusions(report: TextureReport, catalog) -> None:
    label = report.label
    kinds = in_order(report.details)
    c1, c2 = st.columns(2)
    kind = c1.selectbox("Embedding", kinds, index=kinds.index("photo") if "photo" in kinds else 0,
                        key="texture_gallery_kind", help="; ".join(f"**{k}**: {KIND_ABOUT.get(k, k)}" for k in kinds))
    confusions = report.details[kind].confusions
    st.caption(f"Held-out products whose nearest neighbour has the **same type and colour but another {label}**, "
               f"most similar first: the product (left) and that neighbour (right). {kind} makes "
               f"{len(confusions):,} such confusions among {report.split.get('test_measured', report.split['test']):,} "
               "test products"
               + (" (the 500 most similar are kept)." if len(confusions) >= 500 else "."))
    if confusions.empty:
        st.success(f"No texture confusion for {kind}: no nearest neighbour of the same type and colour has "
                   f"another {label}.")
        return
    counts = confusions.groupby(["pattern", "neighbour_pattern"]).size().sort_values(ascending=False, kind="stable")
    options = [None, *counts.index.tolist()]
    pair = c2.selectbox(f"{label} pair", options, key=f"texture_pair_{kind}",
                        format_func=lambda p: f"All pairs ({len(confusions):,})" if p is None
                        else f"{pair_name(p)} ({counts[p]:,})")
    if pair is not None:
        confusions = confusions[(confusions["pattern"] == pair[0]) & (confusions["neighbour_pattern"] == pair[1])]
    shown = confusions.head(PAIRS_SHOWN)
    if len(confusions) > PAIRS_SHOWN:
        st.caption(f"Showing the {PAIRS_SHOWN} most similar of {len(confusions):,}.")
    for start in range(0, len(shown), 3):
        for column, row in zip(st.columns(3), shown.iloc[start:start + 3].itertuples(index=False)):
            with column.container(border=True):
                product_grid(catalog, [row.product_id, row.neighbour_id],
                             [f"{row.product_id} · **{row.pattern}**  \n{row.type}, {row.colour}",
                              f"{row.neighbour_id} · **{row.neighbour_pattern}**  \nsimilarity {row.similarity:.3f}"],
                             columns=2)


# ---------------------------------------------------------------- 3. before / after

def labelled_captions(frame: pd.DataFrame, label: str, own: str, catalog) -> list[str]:
    values = catalog.products.loc[frame["product_id"], label].tolist()
    return [f"{pid} · :{'green' if v == own else 'red'}[{v or '(none)'}] · {score:.3f}"
            for pid, v, score in zip(frame["product_id"], values, frame["score"])]


ORDERS = {"gain": "largest gain first", "worse": "got worse first", "confused": "photo's worst confusions first"}
SHOWN = 500  # products offered in the picker, in the chosen order
WORSE_SHOWN = 12


def change(row) -> str:
    """A product's change in words: "+3 (2 → 5 of 8)", "got worse: −2 (5 → 3 of 8)", "unchanged (4 of 8)"."""
    if row.gain == 0:
        return f"unchanged ({row.after} of {row.k})"
    sign = "+" if row.gain > 0 else "got worse: −"
    return f"{sign}{abs(row.gain)} ({row.before} → {row.after} of {row.k})"


def ordered_products(gains: pd.DataFrame, order: str, confusions: list[str]) -> list[str]:
    """Product ids in the chosen order: by gain (largest first), by loss (largest first), or the photo
    embedding's worst texture confusions first (then by gain)."""
    if order == "worse":
        return gains.sort_values(["gain", "before"], ascending=[True, False], kind="stable")["product_id"].tolist()
    ids = gains["product_id"].tolist()
    if order == "confused":
        known = set(ids)
        return list(dict.fromkeys([*(p for p in confusions if p in known), *ids]))
    return ids


def got_worse(gains: pd.DataFrame, catalog, label: str) -> None:
    """The products the texture-aware embedding made worse, the largest losses first, labelled as such."""
    worse = gains[gains["gain"] < 0].sort_values(["gain", "before"], ascending=[True, False], kind="stable")
    with st.expander(f"Got worse: {len(worse):,} products have fewer neighbours with their {label} after"):
        if worse.empty:
            st.success(f"No product has fewer neighbours with its {label} after than before.")
            return
        shown = worse.head(WORSE_SHOWN)
        product_grid(catalog, shown["product_id"].tolist(),
                     [f"{row.product_id} · **{row.label}** · :red[{change(row)}]" for row in shown.itertuples()])


def before_after(report: TextureReport | None, label: str, built, catalog) -> None:
    if "texture" not in built.kinds:
        st.info("This build has no texture kind (it was built with `BuildConfig(texture=None)`), so there is no "
                "after to show.")
        return
    products = catalog.products
    confusions = report.details["photo"].confusions["product_id"].tolist() if report and "photo" in report.details \
        else []
    confused = set(confusions)
    c1, c2 = st.columns([3, 2])
    orders = [o for o in ORDERS if o != "confused" or confusions]
    order = c1.radio("Order", orders, format_func=ORDERS.get, horizontal=True, key="texture_order",
                     on_change=lambda: st.session_state.pop("texture_product", None))  # open on the new first
    top = min(24, *(built.tables[kind]["rows"].shape[1] for kind in ("image", "texture")))  # the tables' width
    k = c2.slider("Neighbours", 4, top, min(8, top), key="texture_k") if top > 4 else top  # a tiny catalogue
    gains = before_after_gains(built, label, k).assign(k=k)
    if gains.empty:
        st.info(f"No product with a photo has a {label}.")
        return
    better, worse = int((gains["gain"] > 0).sum()), int((gains["gain"] < 0).sum())
    st.markdown(f"Of the **{k}** nearest neighbours (whole catalogue, colour variants included), the texture-aware "
                f"embedding gives **{better:,}** of {len(gains):,} products more with their {label}, "
                f"**{worse:,}** fewer (got worse) and leaves {len(gains) - better - worse:,} unchanged: "
                f"**{gains['gain'].mean():+.2f}** of {k} on average.")
    find = st.text_input("Find a product by id or name", key="texture_find",
                         placeholder="empty: every product with a photo and a label, in the order chosen")
    ids = ordered_products(gains, order, confusions)
    if find:
        matches = set(filter_products(products, text=find).index)
        ids = [p for p in ids if p in matches]
    if not ids:
        st.info(f"No product with a photo and a {label} matches '{find}'.")
        return
    rows = gains.set_index("product_id")
    product = st.selectbox(f"Product ({min(len(ids), SHOWN):,} of {len(ids):,} shown)", ids[:SHOWN],
                           key="texture_product",
                           format_func=lambda pid: f"{describe(catalog, pid)} · {change(rows.loc[pid])}"
                           + (" · photo confusion" if pid in confused else ""))
    after = st.toggle("After: texture-aware", key="texture_after",
                      help="Off: the photo embedding (image kind). On: the texture-aware embedding (texture kind).")
    row = gains.loc[gains["product_id"] == product].iloc[0]
    before_frame, after_frame = built.neighbours(product, "image", k), built.neighbours(product, "texture", k)
    own = products.at[product, label]
    verdict_text = ("**got worse**" if row.gain < 0 else f"**{row.gain:+d}**" if row.gain else "unchanged")
    st.markdown(f"Neighbours with its {label} (**{own or '(none)'}**): **{row.before} of {len(before_frame)}** "
                f"before (photo) → **{row.after} of {len(after_frame)}** after (texture-aware): {verdict_text}.")
    left, right = st.columns([1, 5])
    with left:
        product_grid(catalog, [product], [md(describe(catalog, product))], columns=1)
    with right:
        frame = after_frame if after else before_frame
        st.subheader("After: texture-aware photo embedding" if after else "Before: photo embedding")
        if frame.empty:
            st.info("This product has no readable photo, so it has no place in the photo spaces.")
        else:
            product_grid(catalog, frame["product_id"].tolist(), labelled_captions(frame, label, own, catalog),
                         columns=4)
    got_worse(gains, catalog, label)


# ---------------------------------------------------------------- 4. labels and weights

def labels_and_weights(report: TextureReport) -> None:
    label = report.label
    overlap = report.label_overlap
    st.subheader("Which classes the catalogue's own labels confuse")
    st.caption("So label noise is not blamed on the embedding. Left: for each label, the share of its products whose "
               "description mentions each pattern word. Right: products with the same description and type, "
               "different groups, but different labels.")
    left, right = st.columns([3, 2])
    mentions = overlap.get("mentions")
    if mentions is not None and not mentions.empty:
        mentions = mentions.set_index("label").apply(pd.to_numeric, errors="coerce")
        mentions = mentions.loc[:, (mentions > 0).any()]  # pattern words no description uses are left out
        left.dataframe(mentions.style.format("{:.0%}", na_rep="–").apply(
            lambda row: [HIGHLIGHT if v > 0 and v == row.max() else "" for v in row], axis=1),
            key="texture_mentions", width="stretch")
    else:
        left.info("No product has a description to compare with its label.")
    same = overlap.get("same_description")
    if same is not None and not same.empty:
        right.dataframe(same, hide_index=True, key="texture_same_description", width="stretch")
    else:
        right.info("No two products with the same description and type carry different labels.")

    st.subheader("Weights of the texture-aware embedding (validation)")
    w = report.weights
    st.caption(f"Tried on the validation products ({report.split['validation']:,}): the best {label} agreement "
               f"whose type agreement stays within {100 * TYPE_TOLERANCE:.0f} points of the photo alone. Chosen: "
               f"photo {w['photo']:g}, texture {w['texture']:g}, pattern head {w['head']:g}.")
    selection = report.selection
    if selection.empty:
        st.info(f"No weights were tried: fewer than two {label} classes have {MIN_CLASS} labelled products.")
    else:
        chosen = selection["chosen"].astype(bool)
        weights = [c for c in ("photo", "texture", "head") if c in selection]
        scores = [c for c in selection.columns if c.endswith(("_agreement", "_sensitivity"))]
        st.dataframe(selection.style.format("{:.2f}", subset=weights).format("{:.3f}", subset=scores)
                     .apply(lambda row: [HIGHLIGHT if chosen[row.name] else ""] * len(row), axis=1),
                     hide_index=True, key="texture_selection", width="stretch")
    if not report.hybrid.empty:
        with st.expander("The hybrid kind's photo weight (validation)"):
            st.dataframe(report.hybrid, hide_index=True, width="stretch")

    st.subheader("Cluster purity")
    st.caption("HDBSCAN clusters on a 10-d UMAP of each embedding of the test products: the share of clustered "
               "products whose cluster's commonest value is theirs, per attribute.")
    purity = report.purity
    if purity.empty:
        st.info("Clusters were not computed for this report.")
    else:
        purity = purity.set_index("kind").apply(pd.to_numeric, errors="coerce")
        purity = purity.loc[in_order(purity.index)]
        st.dataframe(purity.style.format("{:.0%}", na_rep="–").highlight_max(props=HIGHLIGHT), key="texture_purity",
                     width="stretch")


# ---------------------------------------------------------------- the page

def main() -> None:
    catalog = current_catalog()
    built = page_build("Texture failures")
    labels = catalog.attribute_columns
    if not labels:
        st.info("This catalogue has no attribute columns (pattern, material, product type…) to measure the "
                "embeddings against. Map a shop's columns to Atelier's roles with a columns.json next to its "
                "products file.")
        return
    c1, c2 = st.columns([1, 3])
    label = c1.selectbox("Label", labels, index=labels.index("pattern") if "pattern" in labels else 0,
                         key="texture_label",
                         help="The catalogue column whose classes the embeddings should tell apart; product type "
                              "and colour are held fixed")
    section = c2.radio("Show", SECTIONS, horizontal=True, key="texture_section")
    st.caption(f"Where each embedding confuses the **{label}** of products, above all between products of the same "
               "type and colour, where only pattern or material tells them apart; measured against the catalogue's "
               "labels on held-out products, and the texture-aware embedding's fix shown on the same products.")
    if section == "Before / after":
        try:
            cached = get_texture_report(built, build_key(built), label)
        except ValueError:  # no report for this catalogue: the product list simply does not start with confusions
            cached = None
        before_after(cached, label, built, catalog)
    else:
        report = report_or_button(built, label)
        if report is not None:
            s = report.split
            measured = s.get("test_measured", s["test"])
            on = "the test products" if measured == s["test"] else \
                f"a random {measured:,} of the test products (whole groups; searching them all grows as their square)"
            st.markdown(f"Labelled products with a photo are split by group (colour variants together) into "
                        f"**{s['train']:,} train** (fits the texture model and heads), "
                        f"**{s['validation']:,} validation** (chooses the weights) and **{s['test']:,} test**: every "
                        f"number here is on {on}.")
            if section == "Diagnostics":
                diagnostics(report)
            elif section == "Worst confusions":
                worst_confusions(report, catalog)
            else:
                labels_and_weights(report)


main()
