"""Validation report: what the catalogue holds, what was wrong with its files and what the loader did about it."""
import streamlit as st

from app_pages.common import current_catalog, current_job, report_frame

PROBLEM_COLUMNS = {  # each as wide as its longest cell: examples (paths, ids) are cut first, and shown whole on hover
    "problem": st.column_config.TextColumn("problem"),
    "file": st.column_config.TextColumn("file"),
    "count": st.column_config.NumberColumn("rows", format="%d", help="How many rows, ids or photos had it"),
    "action": st.column_config.TextColumn("what the loader did"),
    "examples": st.column_config.TextColumn("examples", help="The first few, as found in the files"),
}

catalog = current_catalog()
st.header("Validation report")
st.caption(f"{catalog.name} · read from `{catalog.source}`")
counts = catalog.counts()
never = catalog.never_bought()
cells = st.columns(5)
cells[0].metric("Products", f"{counts['products']:,}")
cells[1].metric("Customers", f"{counts['customers']:,}")
cells[2].metric("Purchases", f"{counts['purchases']:,}")
cells[3].metric("Photos missing", f"{counts['missing_images']:,}")
cells[4].metric("Never bought", f"{len(never):,}", help="products that no purchase names")
if counts["purchases"] == 0:
    st.caption("No purchases: the recommenders have nothing to learn from; the photo and text pages work as usual.")
elif len(never):
    st.caption(f"**{len(never):,} of {counts['products']:,} products ({len(never) / counts['products']:.0%}) were "
               "never bought.** Recommenders that learn only from purchases (ID-only: Item kNN, ALS, LightGCN) know "
               "nothing about them; the content-aware ones (Content, GraphSAGE, two-tower) place them by their photo "
               "and text. E.g. " + ", ".join(f"`{p}`" for p in never[:5]) + ".")
else:
    st.caption("Every product was bought at least once.")

frame = report_frame(catalog, current_job().built)
st.subheader("Problems")
if frame.empty:
    st.success("No problems found: every row, id, purchase and photo loaded.")
else:
    st.warning(f"{len(frame)} kind(s) of problem in {frame['count'].sum():,} rows; loading went on where it "
               "safely could.")
    st.dataframe(frame[list(PROBLEM_COLUMNS)], hide_index=True, width="stretch", column_config=PROBLEM_COLUMNS)

with st.expander("Raw report (JSON)"):
    st.json({"counts": counts | {"never_bought": len(never)}, "problems": frame.to_dict("records")})
