"""Atelier: explore a fashion catalogue through its embeddings. Run: streamlit run app.py"""
import streamlit as st

from app_pages.common import sidebar

st.set_page_config(page_title="Atelier", layout="wide")
page = st.navigation([
    st.Page("app_pages/catalogue.py", title="Catalogue", icon=":material/grid_view:", default=True),
    st.Page("app_pages/clusters.py", title="Clusters", icon=":material/scatter_plot:"),
    st.Page("app_pages/neighbours.py", title="Neighbours", icon=":material/hub:"),
    st.Page("app_pages/texture.py", title="Texture failures", icon=":material/texture:"),
    st.Page("app_pages/coldstart.py", title="Cold start", icon=":material/ac_unit:"),
    st.Page("app_pages/backbone.py", title="Backbone", icon=":material/memory:"),
    st.Page("app_pages/validation.py", title="Validation report", icon=":material/rule:"),
])
sidebar()
page.run()
