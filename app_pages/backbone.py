"""Backbone: which model embeds the catalogue, why, and how well it does on held-out products."""
import streamlit as st

from core.cache import ArtefactCache
from core.embeddings.quality import evaluation_table, lit_evaluation
from app_pages.common import built_or_progress, current_catalog

catalog = current_catalog()
st.header("Backbone")
built = built_or_progress()  # shows progress (or the error) until the backbone is loaded and prepared
if built is None:
    st.stop()
backbone = built.backbone
st.markdown(f"**{backbone.name}**: {backbone.describe()}")
if backbone.warning:
    st.warning(backbone.warning)
for note in backbone.notes:
    st.caption(note)

if backbone.name != "offline-lit":
    st.info("The held-out evaluation below is computed for the offline-lit backbone "
            "(`python -m core bench backbone`).")
    st.stop()

st.subheader("Held-out evaluation")
result = lit_evaluation(catalog, ArtefactCache(), compute=False)
if result is None:
    st.info("Not evaluated on this catalogue yet. `python -m core bench backbone` computes and caches it; "
            "so does this button.")
    if st.button("Evaluate now (trains heads on 90% of products, about a minute)", key="backbone_evaluate"):
        with st.spinner("Training heads on 90% of the products and measuring on the other 10%…"):
            result = lit_evaluation(catalog, ArtefactCache())
if result is not None:
    st.caption(f"Heads trained on {result.n_train:,} products, measured on {result.n_test:,} held out by "
               f"product code (colour variants never straddle the split); training took "
               f"{result.head_training_s} s.")
    st.dataframe(evaluation_table(result), hide_index=True, width="stretch")
