"""Clusters: the catalogue as a map of HDBSCAN clusters on UMAP; select products by box, lasso or cluster."""
import pandas as pd
import streamlit as st

from app_pages.common import (build_key, current_catalog, get_cluster_map, get_dbscan_table, job_panel, pending_job,
                              page_build, product_grid)
from app_pages.product import md
from app_pages.mapview import (DENSITY_POINTS, SELECTIONS, density_chart, list_key, map_chart, map_key, photo_urls,
                               selected_ids)
from core.cache import ArtefactCache
from core.embeddings.pipeline import KIND_NAMES
from core.explore.cluster import ClusterConfig
from core.explore.clustermap import HOVER_ATTRS, best_dbscan, dbscan_is_cached

ORDER = ("hybrid", "image", "text", "texture")  # the hybrid map first: the default choice
GALLERY = 48  # photos shown for a selection; the CSV export holds all of it

catalog = current_catalog()
built = page_build("Clusters")

c1, c2, c3, c4 = st.columns(4)
kind = c1.selectbox("Embedding", [k for k in ORDER if k in built.kinds], key="clusters_kind",
                    format_func=KIND_NAMES.get)
min_size = c2.number_input("Min cluster size (0: automatic)", 0, 5000, 0, key="clusters_min_size",
                           help="HDBSCAN's smallest group; automatic is about one product in 500, at least 5")
min_samples = c3.number_input("Min samples", 1, 500, 10, key="clusters_min_samples",
                              help="Larger is more conservative: denser cores, more products left as noise")
soft = c4.toggle("Place noise in its likeliest cluster", key="clusters_soft",
                 help="HDBSCAN's soft membership; such products are drawn as open circles")

defaults = (min_size, min_samples) == (ClusterConfig().min_cluster_size, ClusterConfig().min_samples)
warming = pending_job(built, "map", kind)
if warming is not None and defaults:
    job_panel(warming, f"The {KIND_NAMES[kind]} map is being computed (UMAP, HDBSCAN, names) after the build; this page "
                       "shows it when it is done. Other settings or kinds can be chosen meanwhile.")
    st.stop()
cmap = get_cluster_map(built, build_key(built), kind, int(min_size), int(min_samples))
scores = cmap.scores
m = st.columns(5)
m[0].metric("Clusters", scores["n_clusters"])
m[1].metric("Noise", f"{scores['noise_fraction']:.1%}", help="Products HDBSCAN leaves in no cluster")
m[2].metric("ARI with product type", f"{scores.get('ari_product_type', float('nan')):.2f}",
            help="Adjusted Rand index, noise counted as one group; 1 = clusters are exactly the product types")
m[3].metric("Type purity", f"{scores.get('purity_product_type', float('nan')):.0%}",
            help="Share of clustered products whose cluster's commonest type is theirs")
m[4].metric("Pattern purity", f"{scores.get('purity_pattern', float('nan')):.0%}")
st.caption(f"{len(cmap.ids):,} products · min cluster size {cmap.config.min_cluster_size} · min samples "
           f"{cmap.config.min_samples} · UMAP to 2-D for the map and to 10-D for HDBSCAN")

map_tab, compare_tab = st.tabs(["Map", "DBSCAN vs HDBSCAN"])
with map_tab:
    frame = cmap.frame(catalog.products, soft=soft)
    left, right = st.columns(2)
    with right:
        st.subheader("Clusters")
        st.caption("Named by the colour, pattern and type that at least half the cluster shares (catalogue "
                   "metadata); clusters of the same name by what tells them apart. Click a row to highlight "
                   "the cluster and see its products.")
        table = cmap.clusters.reset_index()[["cluster", "name", "size"]]
        if table.empty:
            st.info("HDBSCAN found no clusters at these settings: every product is noise. Lower the minimum "
                    "cluster size or min samples.")
        picked = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                              key=list_key(kind, int(min_size), int(min_samples)), height=560, width="stretch",
                              column_config={"cluster": st.column_config.NumberColumn("id", width=36),
                                             "name": st.column_config.TextColumn("name", width=330),
                                             "size": st.column_config.NumberColumn("size", width=50)})
        rows = picked["selection"]["rows"] if picked else []
        highlight = int(table["cluster"].iloc[rows[0]]) if rows and rows[0] < len(table) else None
    with left:
        colour_by = st.selectbox("Colour by", ["cluster", *[c for c in HOVER_ATTRS if c in catalog.products],
                                               *[c for c in catalog.attribute_columns if c not in HOVER_ATTRS]],
                                 key="clusters_colour")
        dense = len(frame) > DENSITY_POINTS
        chart = density_chart(frame, colour_by, highlight, key=(build_key(built), cmap.fingerprint, cmap.config,
                                                                soft)) if dense else \
            map_chart(frame, colour_by, highlight, photo_urls(built))
        event = st.altair_chart(chart, on_select="rerun", selection_mode=SELECTIONS, key=map_key(kind),
                                width="stretch")
        if dense:
            st.caption(f"{len(frame):,} products, more than a browser draws one by one: each pixel has the colour "
                       "most of its products have, more opaque where there are more. Drag a box to see those "
                       f"products (hover, click and zoom work on maps of up to {DENSITY_POINTS:,}).")
        else:
            st.caption("Hover a point for its photo. Drag a box, or click a point (shift-click for more), to see "
                       "those products; the wheel zooms, shift-drag pans, a double click clears.")
        st.download_button("Download CSV (product, cluster, name, coordinates)",
                           cmap.export(catalog.products, soft).to_csv(index=False).encode(),
                           file_name=f"clusters-{kind}.csv", mime="text/csv", key="clusters_export")

    chosen = selected_ids(event["selection"] if event else None, frame)
    if chosen:
        st.subheader(f"Selection: {len(chosen):,} products")
        summary = frame.set_index("product_id").loc[chosen]
        cols = st.columns(4)
        for col, attr in zip(cols, ["cluster_name", *HOVER_ATTRS]):
            counts = summary[attr].value_counts().head(5)
            col.dataframe(pd.DataFrame({attr.replace("_", " "): counts.index, "products": counts.to_numpy()}),
                          hide_index=True, width="stretch")
        if len(chosen) > GALLERY:
            st.caption(f"Showing the first {GALLERY} of {len(chosen):,}.")
        product_grid(catalog, chosen[:GALLERY])
    elif highlight is not None:
        members = cmap.members(highlight, soft)
        about = cmap.clusters.loc[highlight]
        st.subheader(f"Cluster {highlight}: {md(about['name'])} ({len(members):,} products)")  # the shop's words
        st.caption(f"{md(about['top'])}  \n**prompt name** (the best-matching text prompt per attribute, from the "
                   f"backbone's text tower): {md(about['prompt_name'])} · **keywords** (class-based TF-IDF of the "
                   f"product sentences): {md(about['keywords']) or '–'}")
        product_grid(catalog, members[:GALLERY])
    else:
        st.info("Drag a box on the map (or click a point) to see those products; click a cluster in the list "
                "to highlight it.")

with compare_tab:
    st.caption("DBSCAN with one eps over the raw embeddings against HDBSCAN on their 10-D UMAP, same "
               "embeddings and min samples. The eps grid comes from the k-distance heuristic (quantiles of "
               "each product's distance to its k-th neighbour). ARI counts noise as one group.")
    comparing = pending_job(built, "dbscan", kind) if defaults else None
    if comparing is not None:
        job_panel(comparing, "The comparison is being computed after the build; it shows here when it is done.")
    elif dbscan_is_cached(built, ArtefactCache(), cmap) or st.button("Run the comparison", key="clusters_compare"):
        comparison = get_dbscan_table(built, cmap, (build_key(built), cmap.fingerprint, cmap.config))
        shown = [c for c in comparison.columns if not c.startswith("ari_clustered")]
        st.dataframe(comparison[shown], hide_index=True, width="stretch")
        best = best_dbscan(comparison)
        if best is not None:
            st.markdown(f"Best DBSCAN (eps {best['eps']:.3f}): ARI with product type "
                        f"**{best['ari_product_type']:.3f}** "
                        f"with {best['noise_fraction']:.0%} noise and {int(best['n_clusters'])} clusters; "
                        f"HDBSCAN: **{scores['ari_product_type']:.3f}** with {scores['noise_fraction']:.0%} noise.")
    else:
        st.info("Not computed yet for these embeddings (`python -m core build` computes it for the default map).")
