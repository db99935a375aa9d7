"""Catalogue: a filterable, searchable, paged grid of product photos; *View* under a photo opens the product."""
import math

import streamlit as st

from core.data.catalog import filter_products
from app_pages.common import current_catalog, product_grid
from app_pages.product import tile_caption

catalog = current_catalog()
products = catalog.products
st.header("Catalogue")

text = st.text_input("Search", key="catalogue_text", placeholder="words in the id, title or description, "
                     "e.g. 'striped dress'")
with st.expander("Filter by attribute", expanded=False):
    columns = st.columns(4)
    filters = {}
    for i, col in enumerate(catalog.attribute_columns):
        options = products[col].value_counts().index.tolist()
        with columns[i % 4]:
            filters[col] = st.multiselect(col.replace("_", " "), [o for o in options if o], key=f"catalogue_f_{col}")

shown = filter_products(products, filters, text)
left, right = st.columns([3, 1])
page_size = right.selectbox("Per page", [24, 48, 96], index=1, key="catalogue_page_size")
n_pages = max(1, math.ceil(len(shown) / page_size))
page = right.number_input("Page", min_value=1, max_value=n_pages, value=1, step=1, key="catalogue_page")
page = min(int(page), n_pages)
start = (page - 1) * page_size
left.markdown(f"**{len(shown):,}** of {len(products):,} products · showing "
              f"{min(start + 1, len(shown)):,}–{min(start + page_size, len(shown)):,} (page {page} of {n_pages})")
st.caption("**View** under a photo opens the product: every attribute, its sales, its cluster and the products "
           "nearest to it in each embedding space (find similar).")
if shown.empty:
    st.info("No product matches these filters and search words.")
else:
    view = shown.iloc[start:start + page_size]
    shown_attributes = [c for c in ("product_type", "colour", "pattern") if c in products] \
        or catalog.attribute_columns[:3]
    captions = [tile_caption(row, attributes=shown_attributes) for _, row in view.iterrows()]
    product_grid(catalog, view.index.tolist(), captions)
