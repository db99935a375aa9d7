"""Atelier: explore a fashion catalogue through its embeddings. Run: streamlit run app.py"""
import streamlit as st

from pages.common import sidebar

st.set_page_config(page_title="Atelier", layout="wide")
page = st.navigation([
    st.Page("pages/catalogue.py", title="Catalogue", default=True),
    st.Page("pages/neighbours.py", title="Neighbours"),
    st.Page("pages/backbone.py", title="Backbone"),
    st.Page("pages/validation.py", title="Validation report"),
])
sidebar()
page.run()
