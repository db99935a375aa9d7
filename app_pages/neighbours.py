"""Neighbours: the products nearest to a product, a text query or an uploaded photo, in each embedding space."""
import streamlit as st

from core.data.catalog import filter_products
from core.embeddings.backbone import ImageError
from core.embeddings.pipeline import KIND_ABOUT
from app_pages.common import built_or_progress, current_catalog, describe, product_grid

catalog = current_catalog()
st.header("Neighbours")
mode = st.radio("Query by", ["Product", "Text", "Photo"], horizontal=True, key="neighbours_mode")
k = st.slider("Neighbours per space", 4, 30, 10, key="neighbours_k")

if mode == "Product":
    find = st.text_input("Find a product by id or name", key="neighbours_find", placeholder="e.g. 0108775015 or "
                         "'strap top'")
    matches = filter_products(catalog.products, text=find).index[:500].tolist()
    if not matches:
        st.info(f"No product id or name matches '{find}'.")
        st.stop()
    product_id = st.selectbox(f"Product ({len(matches):,} shown)", matches, key="neighbours_product",
                              format_func=lambda pid: describe(catalog, pid))
    product_grid(catalog, [product_id], [describe(catalog, product_id)])
elif mode == "Text":
    text = st.text_input("Describe what you are looking for", key="neighbours_text",
                         placeholder="e.g. red striped dress")
    if not text.strip():
        st.info("Type a few words to search the catalogue by text.")
        st.stop()
else:
    upload = st.file_uploader("Upload a photo", type=["jpg", "jpeg", "png", "webp"], key="neighbours_upload")
    if upload is None:
        st.info("Upload a photo of a garment to find similar products.")
        st.stop()

built = built_or_progress()
if built is None:
    st.stop()
if built.backbone.warning:
    st.warning(built.backbone.warning)

kinds = built.kinds
if mode == "Product":
    results = {kind: built.neighbours(product_id, kind, k) for kind in kinds}
else:
    try:
        query = built.text_query(text) if mode == "Text" else built.photo_query(upload)
        # the texture space places a photo by its texture descriptor too; a text lands on its photo block
        descriptor = built.photo_descriptor(upload) if mode == "Photo" and "texture" in kinds else None
    except (ValueError, ImageError) as e:
        st.error(f"That query could not be used: {e}")
        st.stop()
    if mode == "Photo":
        st.image(upload, width=160, caption="your photo")
    results = {kind: built.search(built.in_space(kind, query, descriptor), kind, k) for kind in kinds}

for column, kind in zip(st.columns(len(kinds)), kinds):
    with column:
        st.subheader(kind)
        st.caption(KIND_ABOUT[kind])
        frame = results[kind]
        if frame.empty:
            st.info("This product has no readable photo, so it has no place in the photo space.")
            continue
        product_grid(catalog, frame["product_id"].tolist(),
                     [f"{pid} · {score:.3f}" for pid, score in zip(frame["product_id"], frame["score"])], columns=2)
