"""Neighbours: the products nearest to a product, a text query or an uploaded photo, in each embedding space."""
import streamlit as st

from core.data.catalog import filter_products
from core.embeddings.backbone import ImageError
from core.embeddings.pipeline import KIND_NAMES
from app_pages.common import built_or_progress, current_catalog, describe, product_grid
from app_pages.product import build_key, get_typical_scores, neighbour_captions, score_note, tile_caption

QUERY = {"Product": None, "Text": "your words'", "Photo": "your photo's"}  # whose embedding is compared
QUERIED = {"Text": "your words", "Photo": "your photo"}
PER_SPACE = 2  # tiles of one space side by side


def interleaved(ids: list[list[str]], captions: list[list[str]], width: int) -> tuple[list[str], list[str]]:
    """Lists of equal length, one per space, as one grid row by row: ``width`` of the first space's, then of the
    second's... (a grid of ``width * len(ids)`` columns shows each space in its own ``width`` columns)."""
    out_ids, out_captions = [], []
    for start in range(0, len(ids[0]), width):
        for space_ids, space_captions in zip(ids, captions):
            out_ids += space_ids[start:start + width]
            out_captions += space_captions[start:start + width]
    return out_ids, out_captions

catalog = current_catalog()
st.header("Neighbours")
left, right = st.columns([3, 2])  # the controls in two rows, so the neighbours start within the first screen
mode = left.radio("Query by", ["Product", "Text", "Photo"], horizontal=True, key="neighbours_mode")
k = right.slider("Neighbours per space", 4, 30, 10, key="neighbours_k")

if mode == "Product":
    tile, find_col, pick_col = st.columns([1, 3, 4])
    find = find_col.text_input("Find a product by id or name", key="neighbours_find",
                               placeholder="e.g. 0108775015 or 'strap top'")
    matches = filter_products(catalog.products, text=find).index[:500].tolist()
    if not matches:
        st.info(f"No product id or name matches '{find}'.")
        st.stop()
    product_id = pick_col.selectbox(f"Product ({len(matches):,} shown)", matches, key="neighbours_product",
                                    format_func=lambda pid: describe(catalog, pid))
    with tile:
        product_grid(catalog, [product_id], [tile_caption(catalog.products.loc[product_id])], columns=1)
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
    if mode == "Text":  # the texture space places a text on its photo block only: it would repeat the photo column
        kinds = tuple(kind for kind in kinds if kind != "texture")
    try:
        query = built.text_query(text) if mode == "Text" else built.photo_query(upload)
        descriptor = built.photo_descriptor(upload) if mode == "Photo" and "texture" in kinds else None
    except (ValueError, ImageError) as e:
        st.error(f"That query could not be used: {e}")
        st.stop()
    if mode == "Photo":
        st.image(upload, width=160, caption="your photo")
    results = {kind: built.search(built.in_space(kind, query, descriptor), kind, k) for kind in kinds}

ranges = get_typical_scores(built, build_key(built))
notes = ["Each score compares two embeddings in one space only: every space has its own typical range, so compare "
         "ranks across spaces, not scores."]
if mode == "Text" and "texture" in built.kinds:
    notes.append("No texture-aware column: words have no texture features, so a text lands on that space's photo "
                 "part only and its list would repeat the photo column.")
if mode != "Product":
    notes.append(f"Scores of {QUERIED[mode]} against a product run lower than scores between two "
                 "products.")
st.caption(" ".join(notes))
for column, kind in zip(st.columns(len(kinds)), kinds):  # headers in one row, lists in the next: tiles line up
    with column:
        st.markdown(f"**{KIND_NAMES[kind].capitalize()}**")  # one line each at 1400 px: the lists start sooner
        st.caption(score_note(kind, ranges, QUERY[mode]))
frames = [results[kind] for kind in kinds]
if len({len(f) for f in frames}) == 1 and len(frames[0]) and len(frames[0]) % PER_SPACE == 0:  # rows line up
    ids, captions = interleaved([frame["product_id"].tolist() for frame in frames],
                                [neighbour_captions(catalog, frame) for frame in frames], PER_SPACE)
    product_grid(catalog, ids, captions, columns=PER_SPACE * len(kinds))
else:  # a space with fewer (or no) neighbours, or an odd number: one grid per space
    for column, frame in zip(st.columns(len(kinds)), frames):
        with column:
            if frame.empty:
                st.info("This product has no readable photo, so it has no place in the photo space.")
                continue
            product_grid(catalog, frame["product_id"].tolist(), neighbour_captions(catalog, frame), columns=PER_SPACE)
