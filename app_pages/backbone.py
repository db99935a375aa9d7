"""Backbone: which model embeds the catalogue, why, and how well it does on held-out products."""
import streamlit as st

from core.cache import ArtefactCache
from core.embeddings.quality import evaluation_table, lit_evaluation
from app_pages.common import backbone_job, built_or_progress, cached_or_job, current_catalog

NUMBER = st.column_config.NumberColumn(format="%.3f")
TABLE_COLUMNS = {  # evaluation_table's columns, labelled to fit the page
    "metric": st.column_config.TextColumn("metric", width="large"),
    "trained heads": st.column_config.NumberColumn(
        "trained heads", format="%.3f", help="offline-lit as the app uses it: heads trained on 60% of the product "
                                             "groups, measured on 20% held out"),
    "untrained heads": st.column_config.NumberColumn(
        "untrained heads", format="%.3f", help="the same towers with random heads: what the training adds"),
    "reference (majority class / chance / raw ImageNet features)": st.column_config.NumberColumn(
        "reference", format="%.3f", help="the number to beat: for accuracy, always answering the most common "
                                         "class; for balanced accuracy, chance; for photo neighbours, the raw "
                                         "ImageNet features before any head"),
}

catalog = current_catalog()
st.header("Backbone")
built = built_or_progress()  # shows progress (or the error) until the backbone is loaded and prepared
if built is None:
    st.stop()
backbone = built.backbone
st.markdown(f"**{backbone.name}**: {backbone.describe()}")
if backbone.warning:
    st.warning(backbone.warning)
if backbone.fallback:
    st.info(backbone.fallback)
if backbone.notes:
    with st.expander("How it was chosen (details)"):
        for note in backbone.notes:
            st.caption(note)

if backbone.name != "offline-lit":
    st.info("The held-out evaluation below is computed for the offline-lit backbone "
            "(`python -m core bench backbone`).")
    st.stop()



def ask_to_evaluate(job) -> None:
    if job is not None and job.error:
        st.error(f"The evaluation failed: {job.error}")
    st.info("Not evaluated on this catalogue yet. `python -m core bench backbone` computes and caches it; "
            "so does this button.")
    if st.button("Evaluate now (trains heads on 60% of the product groups, about a minute)", key="backbone_evaluate"):
        backbone_job(built, start=True)
        st.rerun()  # drawn again from the top: the job's progress, without the message and the button above


st.subheader("Held-out evaluation")
result = cached_or_job(lit_evaluation(catalog, ArtefactCache(), compute=False), backbone_job(built), lambda: None,
                       "Training heads on 60% of the product groups and measuring on the 20% held out (the texture "
                       "report reuses these heads)…", ask_to_evaluate)
if result is None:
    st.stop()
st.caption(f"Heads trained on {result.n_train:,} products ({result.epochs} epochs), measured on {result.n_test:,} held "
           f"out by product code (colour variants never straddle the split); training took {result.head_training_s} s.")
st.dataframe(evaluation_table(result), hide_index=True, width="stretch", column_config=TABLE_COLUMNS)
