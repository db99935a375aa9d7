"""Validation report: what was wrong with the catalogue's files and what the loader did about it."""
import streamlit as st

from app_pages.common import current_catalog, current_job, report_frame

catalog = current_catalog()
st.header("Validation report")
st.caption(f"{catalog.name} · read from `{catalog.source}`")
st.json(catalog.counts(), expanded=True)
frame = report_frame(catalog, current_job().built)
if frame.empty:
    st.success("No problems found: every row, id, purchase and photo loaded.")
else:
    st.warning(f"{len(frame)} kind(s) of problem; loading went on where it safely could.")
    st.dataframe(frame, hide_index=True, width="stretch")
