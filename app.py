"""Atelier: explore a fashion catalogue through its embeddings. Run: streamlit run app.py"""
import streamlit as st

from app_pages.common import sidebar

st.set_page_config(page_title="Atelier", layout="wide")
page = st.navigation([
    st.Page("app_pages/catalogue.py", title="Catalogue", default=True),
    st.Page("app_pages/clusters.py", title="Clusters"),
    st.Page("app_pages/neighbours.py", title="Neighbours"),
    st.Page("app_pages/coldstart.py", title="Cold start"),
    st.Page("app_pages/backbone.py", title="Backbone"),
    st.Page("app_pages/validation.py", title="Validation report"),
])
sidebar()
page.run()
