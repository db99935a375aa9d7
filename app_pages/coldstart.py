"""Cold start: recommendations for a new customer, for an existing one (replayed against what they bought next)
and for a new product, from GraphSAGE, two-tower and the baselines; and how good each model is."""
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages.common import (build_key, cached_or_job, current_catalog, describe, evaluation_job, first_evaluation_job,
                              get_audience, page_build, get_evaluation, get_purchase_counts, get_rec_data, get_split,
                              job_panel, product_grid, recommender_job, recommender_names)
from app_pages.product import md
from core.data.catalog import Catalog
from core.embeddings.pipeline import Built
from core.recs.contract import RecData
from core.data.catalog import filter_products
from core.embeddings.backbone import ImageError, fuse
from core.recs.demo import places_products
from core.explore.product import distinct_titles
from core.recs.contract import NO_REASON, POPULAR, REASONS, SESSION, no_purchases, top_k
from core.recs.newcustomer import NEW_CUSTOMER_SEEDS, recommend_new
from core.recs.registry import (ABOUT, HISTORY_FREE, ID_ONLY, LABELS, SELF_TUNED, declares, in_order, label,
                                new_customer_list)
from core.recs.queries import product_audience
from core.recs.paired import PairedReport, slice_names
from core.recs.report import MAIN_METRICS, MORE_METRICS, EvalReport, ModelResult, SplitSummary
from core.recs.evaluate import EvalConfig
from core.recs.split import SplitConfig

SPLIT = SplitConfig()  # the evaluation's split: every model here learns from the purchases before its cutoff
CUTOFF, END = SPLIT.cutoff, SPLIT.end
REPLAY_SHOWN = 12  # photos of what a customer bought after the cutoff; the hits count all of it
SECTIONS = ["New customer", "Existing customer", "New product", "How good is it"]


def pick_model(key: str, names: list[str], text: str = "Model") -> str:
    default = "graphsage" if "graphsage" in names else ("content" if "content" in names else names[0])
    return st.selectbox(text, names, index=names.index(default), key=key, format_func=label,
                        help="; ".join(f"**{label(n)}**: {ABOUT.get(n, '')}" for n in names))


def model_or_progress(built: Built, data: RecData, name: str):
    """The fitted recommender, or None after showing why not (still training, or failed)."""
    job = recommender_job(built, name, CUTOFF, END)
    job.wait_once(3.0)
    if job.finished:
        return job.result
    if job.error:
        st.error(f"{label(name)} could not be fitted: {job.error}")
        return None
    if name == "two_tower":
        message = (f"Preparing {label(name)}, which learns from the {len(data.purchases):,} purchases before {CUTOFF}. "
                   "Training two-tower takes about a minute the first time (10 epochs); the trained towers are saved "
                   "to the cache and load in seconds afterwards. The other models can be used meanwhile.")
    elif name == "graphsage":
        message = (f"Preparing GraphSAGE, which learns from the {len(data.purchases):,} purchases before {CUTOFF}. "
                   "Training takes a few minutes the first time (at most 30 epochs, stopping early once its "
                   "validation recall@10 stops improving); the trained model is saved to the cache and loads in "
                   "seconds afterwards. The other models can be used meanwhile.")
    else:
        message = f"Fitting {label(name)} on the purchases before {CUTOFF}…"
    job_panel(job, message)
    return None


def reasons(data: RecData, name, model, history, rows, customer_id=None, you="you") -> list[str]:
    """Why each of ``rows`` is in the list, as the model explains its score (``Recommender.explain``): the liked
    product that contributed most, the popularity prior, or what it offers someone it knows nothing about."""
    if name in HISTORY_FREE:
        return [HISTORY_FREE[name]] * len(rows)
    history = np.asarray(history, dtype=np.int64)
    if model.supports(REASONS):  # the model's own words (the ranker: who proposed it, what lifted it)
        return model.reasons_for(history, rows, customer_id)
    if model.id_only:  # it knows only products bought before the cutoff, and ignores the others
        history = history[data.popularity()[history] > 0]
    nothing = "what it offers a new customer" if not len(history) else \
        f"from {'your' if you == 'you' else 'their'} likes as a whole"
    text = {POPULAR: "popular lately", NO_REASON: nothing}
    names = distinct_titles(data.products, data.product_ids[history])  # two liked products may share a title
    named = lambda b: names.get(data.product_ids[b]) or data.products.at[data.product_ids[b], "title"]  # noqa: E731
    return [text.get(b) or f"because {you} liked *{md(named(b))}*"
            for b in model.explain(history, rows, customer_id).tolist()]


def recommendation_captions(data: RecData, name, model, history, rows, scores, hits=None, you="you",
                            customer_id=None) -> list[str]:
    """"id · title · score" and why (:func:`reasons`); in a replay, ✓ if it was bought."""
    ids = data.product_ids[rows].tolist()
    why = reasons(data, name, model, history, rows, customer_id, you)
    marks = [" · :green[**✓ bought**]" if h else "" for h in hits] if hits is not None else [""] * len(ids)
    titles = [md(t) for t in data.products.loc[ids, "title"]]
    return [f"{pid} · {t} · {s:.3f}{m}  \n{w}" for pid, t, s, m, w in zip(ids, titles, scores.tolist(), marks, why)]


def scored_captions(catalog: Catalog, found: pd.DataFrame) -> list[str]:
    """"id · title · similarity" for a frame of product_id and score (neighbours, a search)."""
    titles = [md(t) for t in catalog.products.loc[found["product_id"], "title"]]
    return [f"{p} · {t} · {s:.3f}" for p, t, s in zip(found["product_id"], titles, found["score"])]


def purchases(n: int) -> str:
    return f"{n:,} purchase" + ("" if n == 1 else "s")


def customers(n: int) -> str:
    return f"{n:,} customer" + ("" if n == 1 else "s")


def times(n: int) -> str:
    return "once" if n == 1 else f"{n:,} times"


def short(customer_id: str) -> str:
    """H&M's 64-character customer ids as their first and last characters ("00f3a1…9c2e"), which tell a
    catalogue's customers apart and can be read out; short ids as they are."""
    return customer_id if len(customer_id) <= 16 else f"{customer_id[:6]}…{customer_id[-4:]}"


def unreadable(filename: str) -> str:
    return f"'{filename}' is not a photo that can be read: upload a JPEG, PNG or WebP image of a garment."


def history_rows(data: RecData, product_ids) -> list[int]:
    return [data.product_row[p] for p in product_ids]


# ---------------------------------------------------------------- 1. new customer

def toggle_liked(product_id: str) -> None:
    st.session_state["coldstart_grid_open"] = True  # keep the bestsellers open while they are being clicked
    liked = list(st.session_state.get("coldstart_liked", []))
    st.session_state["coldstart_liked"] = [p for p in liked if p != product_id] if product_id in liked \
        else liked + [product_id]


def pick_liked(catalog: Catalog, data: RecData) -> list[str]:
    find = st.text_input("Find products by id or name", key="coldstart_find",
                         placeholder="e.g. 'striped dress' or a product id")
    chosen = [p for p in st.session_state.get("coldstart_liked", []) if p in catalog.products.index]
    st.session_state["coldstart_liked"] = chosen  # ids from another catalogue are dropped
    matches = filter_products(catalog.products, text=find).index[:500].tolist()
    if find and not matches:
        st.info(f"No product id or name matches '{find}'.")
    liked = st.multiselect("Products they like", list(dict.fromkeys(chosen + matches)), key="coldstart_liked",
                           format_func=lambda pid: describe(catalog, pid))
    grid_open = not liked or st.session_state.get("coldstart_grid_open", False)
    with st.expander(f"…or click bestsellers they like (before {CUTOFF})", expanded=grid_open):
        rows, _ = top_k(data.popularity()[None], 12)
        counts = data.popularity()
        for start in range(0, rows.shape[1], 6):
            for col, row in zip(st.columns(6), rows[0, start:start + 6].tolist()):
                pid = data.product_ids[row]
                with col:  # the button above the photo, so the buttons line up whatever the caption's length
                    st.button("✓ Liked" if pid in liked else "♥ Like", key=f"coldstart_like_{pid}",
                              on_click=toggle_liked, args=(pid,), width="stretch",
                              type="primary" if pid in liked else "secondary")
                    product_grid(catalog, [pid], [f"{pid} · {md(catalog.products.at[pid, 'title'])} · "
                                                  f"{int(counts[row])} sold"], columns=1)
    return liked


def ask_query(built: Built, how: str) -> tuple[np.ndarray, str, bool] | None:
    """The typed words' or the uploaded photo's backbone vector, what it is ("your words", "the photo") and
    whether it is a photo; None (after saying what is missing) when there is nothing yet."""
    if how == "Describe":
        text = st.text_input("What do they like?", key="coldstart_text", placeholder="e.g. red striped summer dress")
        if not text.strip():
            st.info("Type a few words about what they like, e.g. 'black leather boots'.")
            return None
        query, what = built.text_query(text), "your words"
    else:
        upload = st.file_uploader("A photo of something they like", type=["jpg", "jpeg", "png", "webp"],
                                  key="coldstart_upload")
        if upload is None:
            st.info("Upload a photo of a garment they like.")
            return None
        try:
            query = built.photo_query(upload)
        except ImageError:
            st.error(unreadable(upload.name))
            return None
        st.image(upload, width=160, caption="their photo")
        what = "the photo"
    return query, what, how != "Describe"


def query_likes(built: Built, query: np.ndarray, what: str) -> list[str]:
    """Products read as liked from a text or a photo: the nearest in the build's hybrid space."""
    n = st.slider("Products read as liked", 1, 10, NEW_CUSTOMER_SEEDS, key="coldstart_seeds",
                  help="The model needs products: the nearest ones stand in for the words or the photo")
    catalog = built.catalog
    seeds = built.search(query, "hybrid", n)
    st.markdown(f"Read as liking the **{len(seeds)} products nearest to {what}** in the photo + text space "
                "(similarity shown):")
    product_grid(catalog, seeds["product_id"].tolist(), scored_captions(catalog, seeds))
    return seeds["product_id"].tolist()


def new_customer(built: Built, data: RecData, names: list[str]) -> None:
    st.caption("Someone with no purchases at all: tell the model what they like, by picking products, in words, "
               "or with a photo.")
    c1, c2, c3 = st.columns([2, 3, 2])
    with c1:
        name = pick_model("coldstart_model", names)
    with c2:
        how = st.radio("What they like", ["Pick products", "Describe", "Photo"], horizontal=True,
                       key="coldstart_input")
    with c3:
        k = st.slider("Recommendations", 6, 30, 12, step=6, key="coldstart_k")
    if how == "Pick products":
        liked = pick_liked(built.catalog, data)
        if not liked:
            st.info("Pick a few products they like (search above or click bestsellers) to see recommendations.")
            return
    else:
        asked = ask_query(built, how)
        if asked is None:
            return
        if declares(name, SESSION):
            session(built, data, name, asked, k)
            return
        liked = query_likes(built, *asked[:2])
    model = model_or_progress(built, data, name)
    if model is None:
        return
    history = history_rows(data, liked)
    if model.id_only:
        unknown = int((data.popularity()[history] == 0).sum())
        if unknown:
            st.info(f"{label(name)} is {ID_ONLY}: {unknown} of the {len(history)} liked products were never bought "
                    f"before {CUTOFF}, so it knows nothing about them"
                    + (" and falls back to bestsellers." if unknown == len(history) else "."))
    rows, scores = recommend_new(model, history, k)
    st.subheader(f"Recommended by {label(name)}")
    st.caption(ABOUT.get(name, ""))
    product_grid(built.catalog, data.product_ids[rows[0]].tolist(),
                 recommendation_captions(data, name, model, history, rows[0], scores[0]))


def session(built: Built, data: RecData, name: str, asked: tuple[np.ndarray, str, bool], k: int) -> None:
    """A session mode (two-tower's): the words or the photo are the customer's only signal, encoded into the
    customer space directly (no stand-in products)."""
    query, what, is_photo = asked
    model = model_or_progress(built, data, name)
    if model is None:
        return
    rows, scores = recommend_new(model, [], k, query, photo=is_photo)
    st.subheader(f"Recommended by {label(name)}, session mode")
    st.caption(f"An anonymous customer whose only signal is {what}: the item tower reads it as a product they like "
               "now (its type, colour, pattern... taken from the 5 products nearest to it) and the customer tower "
               "turns that into a customer; the nearest products come from the FAISS index of every product's item "
               "vector.")
    ids = data.product_ids[rows[0]].tolist()
    titles = [md(t) for t in data.products.loc[ids, "title"]]
    product_grid(built.catalog, ids, [f"{p} · {t} · {s:.3f}" for p, t, s in zip(ids, titles, scores[0].tolist())])


# ---------------------------------------------------------------- 2. existing customer

def customer_label(counts: pd.DataFrame, customer_id: str) -> str:
    before, after = counts.loc[customer_id, ["before", "after"]].tolist()
    past = f"NEW: nothing before {CUTOFF}" if before == 0 else f"{purchases(before)} before {CUTOFF}"
    return f"{short(customer_id)} · {past} · {after} after"


def pick_customer(built: Built, counts: pd.DataFrame) -> str | None:
    """A customer chosen among all, the returning or the new ones, found by id; None (after saying why) when none
    matches."""
    c1, c2 = st.columns([2, 3])
    group = c1.radio("Customers", ["all", "returning", "new"], horizontal=True, key="coldstart_customer_group",
                     help=f"returning: bought something before {CUTOFF}; new: nothing before it")
    find = c1.text_input("Find a customer by id", key="coldstart_customer_find")
    shown = counts if group == "all" else counts[(counts["before"] > 0) == (group == "returning")]
    ids = shown.index[shown.index.str.contains(find.strip(), case=False, regex=False)].tolist() if find.strip() \
        else shown.index.tolist()
    if not ids:
        st.info(f"No {'' if group == 'all' else group + ' '}customer id matches '{find}'." if find.strip()
                else f"This catalogue has no {'' if group == 'all' else group + ' '}customers.")
        return None
    with c2:
        customer = st.selectbox(f"Customer ({min(len(ids), 500):,} of {len(ids):,} shown, most purchases after "
                                f"{CUTOFF} first)", ids[:500], key="coldstart_customer",
                                format_func=lambda c: customer_label(counts, c))
    customers = built.catalog.customers
    about = [f"{c.replace('_', ' ')}: {short(str(v))}" for c, v in customers.loc[customer].items()
             if str(v) not in ("", "nan")] if customer in customers.index else []  # short: H&M's hashed postcodes
    c2.caption(" · ".join([f"id `{customer}`", *about]))  # the whole id, to copy
    return customer


def dated_grid(catalog: Catalog, bought: pd.DataFrame) -> None:
    """Products with the day each was bought (a frame of product_id and timestamp)."""
    titles = catalog.products["title"]
    product_grid(catalog, bought["product_id"].tolist(), [f"{p} · {md(titles[p])} · {t:%Y-%m-%d}"
                                                          for p, t in zip(bought["product_id"], bought["timestamp"])])


def show_bought_before(catalog: Catalog, past: pd.DataFrame) -> None:
    st.subheader(f"Bought before {CUTOFF}")
    if past.empty:
        st.info(f"A new customer: nothing bought before {CUTOFF}. Each model shows what it offers a stranger.")
        return
    shown_past = past.drop_duplicates("product_id").head(12)
    dated_grid(catalog, shown_past)
    if len(past) > len(shown_past):
        st.caption(f"the latest {len(shown_past)} of {purchases(len(past))}")


def show_bought_next(catalog: Catalog, first_bought: pd.DataFrame) -> None:
    """What they really bought after the cutoff (each product once, when first bought)."""
    st.subheader(f"What they really bought from {CUTOFF} to {END}")
    if first_bought.empty:
        st.info(f"They bought nothing from {CUTOFF} to {END}: there is nothing to check the recommendations "
                "against. Pick a customer with purchases after the cutoff (they are listed first).")
        return
    first = first_bought.head(REPLAY_SHOWN)
    dated_grid(catalog, first)
    if len(first_bought) > len(first):
        st.caption(f"the first {len(first)} of {len(first_bought)} products they bought; the ✓ marks below "
                   "count all of them")


def existing_customer(built: Built, data: RecData, names: list[str]) -> None:
    counts = get_purchase_counts(built, build_key(built), CUTOFF, END)
    split = get_split(built, build_key(built), CUTOFF, END)
    customer = pick_customer(built, counts)
    if customer is None:
        return
    past = split.train[split.train["customer_id"] == customer].sort_values("timestamp", ascending=False)
    future = split.test[split.test["customer_id"] == customer].sort_values("timestamp")
    show_bought_before(built.catalog, past)

    c1, c2, c3 = st.columns([3, 1, 2])
    default = [n for n in ("graphsage", "two_tower", "popularity", "content") if n in names]
    models = c1.multiselect("Models side by side (up to 4)", names, default=default, key="coldstart_compare",
                            format_func=label, max_selections=4)
    k = c2.slider("Recommendations", 4, 20, 10, key="coldstart_compare_k")
    with c3:
        replay = st.toggle("Replay what they bought next", key="coldstart_replay",
                           help=f"Show what they really bought from {CUTOFF} to {END}, and mark (✓) the "
                                "recommendations they bought")
        exclude = st.toggle("Hide what they had already bought", value=True, key="coldstart_exclude")
    first_bought = future.drop_duplicates("product_id")  # each product once, when first bought
    if replay:
        show_bought_next(built.catalog, first_bought)
    if not models:
        st.info("Choose at least one model to compare.")
        return
    history, bought_set = data.history(customer), set(first_bought["product_id"])
    for column, name in zip(st.columns(len(models)), models):
        with column:
            st.subheader(label(name))
            model = model_or_progress(built, data, name)
            if model is None:
                continue
            rows, scores = model.recommend([customer], k, exclude=[history] if exclude else None)
            ids = data.product_ids[rows[0]].tolist()
            hits = [p in bought_set for p in ids] if replay else None
            if replay:
                st.markdown(f"**✓ {sum(hits)} of {len(ids)}** bought from {CUTOFF} to {END}")
            st.caption(ABOUT.get(name, "") + (f" · {ID_ONLY}" if model.id_only else ""))
            product_grid(built.catalog, ids, recommendation_captions(data, name, model, history, rows[0], scores[0],
                                                                     hits, you="they", customer_id=customer),
                         columns=2)


# ---------------------------------------------------------------- 3. new product

def audience_table(built: Built, data: RecData, audience: pd.DataFrame, n: int, bought_it: set[str]) -> None:
    """The ``n`` customers the product would rank highest for, with a few of their past purchases."""
    split = get_split(built, build_key(built), CUTOFF, END)
    for customer, rank in audience.head(n).itertuples(index=False):
        c1, c2 = st.columns([1, 4])
        mark = " · :green[**✓ bought it**]" if customer in bought_it else ""
        c1.markdown(f"**{short(customer)}**{mark}  \nwould see it at **#{rank + 1:,}** of {data.n_products:,}")
        past = split.train[split.train["customer_id"] == customer].sort_values("timestamp", ascending=False)
        shown = past.drop_duplicates("product_id").head(5)
        c1.caption(f"{purchases(len(past))} before {CUTOFF}; the latest:")
        with c2:
            product_grid(built.catalog, shown["product_id"].tolist(),
                         [f"{p} · {t:%Y-%m-%d}" for p, t in zip(shown["product_id"], shown["timestamp"])], columns=6)


def new_product(built: Built, data: RecData, names: list[str]) -> None:
    st.caption("A product nobody has bought: who would it be recommended to? Each customer's list is ranked over "
               "the whole catalogue, and the customers where this product comes highest are shown.")
    c1, c2, c3 = st.columns([2, 3, 2])
    with c1:
        name = pick_model("coldstart_product_model", names)
    source = c2.radio("Product", ["Never bought", "Any product", "Add from a photo"], horizontal=True,
                      key="coldstart_product_source",
                      help=f"Never bought: no purchase before {CUTOFF}. Add from a photo: a product that is not in "
                           "the catalogue at all")
    n = c3.slider("Customers shown", 3, 20, 8, key="coldstart_audience")
    returning = get_purchase_counts(built, build_key(built), CUTOFF, END)
    returning = returning.index[returning["before"] > 0].tolist()

    if source == "Add from a photo":
        added_product(built, data, name, returning, n)
        return
    catalog = built.catalog
    find = st.text_input("Find a product by id or name", key="coldstart_product_find")
    candidates = filter_products(catalog.products, text=find)
    if source == "Never bought":
        candidates = candidates[data.popularity()[history_rows(data, candidates.index)] == 0]
    ids = candidates.index[:500].tolist()
    if not ids:
        kind = "never-bought product" if source == "Never bought" else "product"
        st.info(f"No {kind} id or name matches '{find}'." if find else
                f"Every product was bought before {CUTOFF}. Choose 'Any product' or 'Add from a photo'.")
        return
    product = st.selectbox(f"Product ({len(ids):,} shown)", ids, key="coldstart_product",
                           format_func=lambda pid: describe(catalog, pid))
    split = get_split(built, build_key(built), CUTOFF, END)
    buyers = set(split.test.loc[split.test["product_id"] == product, "customer_id"])
    sold = int(data.popularity()[data.product_row[product]])
    st.subheader("The product and its nearest products (photo + text)")
    near = built.neighbours(product, "hybrid", 6)
    product_grid(catalog, [product, *near["product_id"]],
                 [f"**{md(describe(catalog, product))}**", *scored_captions(catalog, near)], columns=7)
    st.caption(f"{product}: sold {times(sold)} before {CUTOFF}; bought by {customers(len(buyers))} from {CUTOFF} to "
               f"{END}" + (" (✓ marks them below)" if buyers else ""))
    model = model_or_progress(built, data, name)
    if model is None:
        return
    st.subheader(f"Who {label(name)} would recommend it to")
    if model.id_only and sold == 0:
        st.info(f"{label(name)} is {ID_ONLY}: this product comes after every product somebody bought, for every "
                "customer. That is the cold-start problem the content-aware models solve.")
    if not returning:
        st.info(f"No customer bought anything before {CUTOFF}: there is nobody to rank.")
        return
    audience = get_audience(model, build_key(built), name, CUTOFF, product, returning)
    st.caption(f"Ranked among the {len(returning):,} customers with purchases before {CUTOFF} by where the product "
               "would come in their list.")
    audience_table(built, data, audience, n, buyers)


def copy_variant(products: pd.DataFrame, attributes: list[str]) -> None:
    """A colour variant shares everything but its colour and pattern: copy those from the product chosen."""
    variant = st.session_state.get("coldstart_new_variant")
    if variant in products.index:
        for attr in attributes:
            if not any(word in attr for word in ("colour", "color", "pattern")):
                st.session_state[f"coldstart_new_{attr}"] = str(products.at[variant, attr])


def new_attributes(catalog: Catalog, box) -> dict[str, str]:
    """Every attribute the catalogue has, picked in ``box`` ("" unknown), and ``group_id`` when the product is
    a colour variant of one in the catalogue (GraphSAGE links the variants)."""
    attrs = catalog.attribute_columns
    find = box.text_input("Colour variant of (optional: find a product by id or name)",
                          key="coldstart_new_variant_find",
                          help="The same garment in another colour: it joins that product's group, and the fields "
                               "below are filled in from it")
    matches = filter_products(catalog.products, text=find).index[:500].tolist() if find.strip() else []
    chosen = st.session_state.get("coldstart_new_variant")
    options = [""] + list(dict.fromkeys(([chosen] if chosen in catalog.products.index else []) + matches))
    variant = box.selectbox("Variant of", options, key="coldstart_new_variant", on_change=copy_variant,
                            args=(catalog.products, attrs), format_func=lambda p: describe(catalog, p) if p else
                            "(not a variant of a catalogue product)")
    values = {}
    for i, attr in enumerate(attrs):
        if i % 4 == 0:
            cols = box.columns(4)
        options = [""] + sorted(v for v in catalog.products[attr].astype(str).unique() if v)
        values[attr] = cols[i % 4].selectbox(attr.replace("_", " "), options, key=f"coldstart_new_{attr}",
                                             format_func=lambda v: v or "(unknown)")
    if variant:
        values["group_id"] = str(catalog.products.at[variant, "group_id"])
    return values


def added_product(built: Built, data: RecData, name: str, returning: list[str], n: int) -> None:
    c1, c2 = st.columns([1, 2])
    upload = c1.file_uploader("Its photo", type=["jpg", "jpeg", "png", "webp"], key="coldstart_new_photo")
    text = c2.text_input("Its description", key="coldstart_new_text", placeholder="e.g. red striped cotton T-shirt")
    values = new_attributes(built.catalog, c2)
    if upload is None or not text.strip():
        st.info("Upload a photo and type a description of the new product.")
        return
    try:
        image_vec, text_vec = built.photo_query(upload), built.text_query(text)
    except ImageError:
        st.error(unreadable(upload.name))
        return
    c1.image(upload, width=160, caption="the new product")
    st.subheader("Nearest products (photo + text)")
    near = built.search(fuse(image_vec[None], text_vec[None], built.cfg.hybrid_weight)[0], "hybrid", 6)
    product_grid(built.catalog, near["product_id"].tolist(), scored_captions(built.catalog, near))
    model = model_or_progress(built, data, name)
    if model is None:
        return
    if not places_products(model):
        st.info(f"{label(name)} cannot place a product that is not in the catalogue. GraphSAGE and Two-tower can: "
                "they embed a new product from its photo, description and attributes by a forward pass, with no "
                "retraining. Choose one of them above.")
        return
    vector = model.product_vector(image_vec, text_vec, values)
    audience = product_audience(model, returning, product_vector=vector)
    st.subheader(f"Who {label(name)} would recommend it to")
    given = [a.replace("_", " ") for a, v in values.items() if v and a != "group_id"]
    st.caption(f"Ranked among the {len(audience):,} customers with purchases before {CUTOFF} by where the new "
               "product would come in their list over the whole catalogue. Placed from its photo, its description"
               + (f", its {', '.join(given)}" if given else "")
               + (f" and as a colour variant of {values['group_id']}" if "group_id" in values else "") + ".")
    audience_table(built, data, audience, n, set())


# ---------------------------------------------------------------- 4. how good is it

def ci(m: ModelResult, key: str) -> str:
    value, low, high = m.metric(key), m.metric(f"{key}_ci_low"), m.metric(f"{key}_ci_high")
    if value is None:
        return "–"
    spread = low is not None and high is not None and low < high  # none where every customer scores the same
    return f"{value:.4f} ({low:.4f}–{high:.4f})" if spread else f"{value:.4f}"


WITH_CI = ("recall_at_10", "recall_at_10_cold_items")  # shown with their 95% interval, as text
METRIC_COLUMNS = {  # MAIN_METRICS and MORE_METRICS: each column's label and what it measures
    "recall_at_10": ("recall@10 (95% CI)", "Share of what a test customer bought next that is in their top 10, "
                     "averaged over customers; 95% bootstrap interval over customers"),
    "recall_at_10_cold_items": ("never-bought items (95% CI)", "Recall@10 over the products nobody bought before "
                                "the cutoff (cold items): the cold-start question. ID-only models cannot rank them"),
    "recall_at_10_new_customers": ("new customers", "Recall@10 of the test customers with no purchase before the "
                                   "cutoff"),
    "ndcg_at_10": ("NDCG@10", "Like recall@10, with a purchase higher in the list counting more"),
    "coverage_at_10": ("coverage@10", "Share of the catalogue in at least one test customer's top 10"),
    "map_at_12": ("MAP@12", "Mean average precision of the top 12 (the H&M Kaggle metric)"),
    "hit_rate_at_10": ("hit rate@10", "Share of test customers with at least one purchase in their top 10"),
    "recall_at_10_sparse_customers": ("sparse cust.", "Recall@10 of customers with 1–5 earlier purchases"),
    "recall_at_10_warm_customers": ("warm cust.", "Recall@10 of customers with more than 5 earlier purchases"),
    "recall_at_10_warm_items": ("warm items", "Recall@10 over the products bought before the cutoff (warm items)"),
    "sampled_recall_at_10": ("SAMPLED", "SAMPLED recall@10: each bought product ranked against only 99 random "
                             "ones, as some papers report; kinder, not comparable with full ranking, and no claim "
                             "rests on it"),
    "never_bought_at_10": ("never-bought in top 10", "Share of a test customer's top 10 going to products nobody "
                           "bought before the cutoff, averaged over customers: how far the model reaches past "
                           "the bestsellers"),
}


def metric_frame(report: EvalReport, keys: tuple[str, ...]) -> pd.DataFrame:
    """One row per model (its label, "(ID-only)" marked), one column per metric key; the keys of
    :data:`WITH_CI` as "value (low–high)" text."""
    rows = []
    for name in in_order(report.models):
        m = report.models[name]
        rows.append({"model": label(name) + (" (ID-only)" if m.id_only else ""),
                     **{k: ci(m, k) if k in WITH_CI else m.metric(k) for k in keys}})
    return pd.DataFrame(rows, columns=["model", *keys])


def metric_columns(keys) -> dict:
    """``st.column_config`` of :func:`metric_frame`'s columns: labels, what each measures, 4 decimals."""
    config = {"model": st.column_config.TextColumn("model")}
    for k in keys:
        name, about = METRIC_COLUMNS.get(k, (k, None))
        config[k] = st.column_config.TextColumn(name, help=about) if k in WITH_CI else \
            st.column_config.NumberColumn(name, help=about, format="%.4f")
    return config


SLICES = slice_names()  # recall_at_10 and its slices, with whom each measures
GAIN, LOSS, LEVEL = "#2e7d32", "#c62828", "#9e9e9e"  # interval above zero, below zero, across it


def paired_chart(report: PairedReport, key: str) -> go.Figure:
    """Each model's Recall@10 minus the reference's on the same customers, with its 95% paired interval."""
    names = [n for n in in_order(report.models) if key in report.models[n] and report.models[n][key].n > 0]
    cells = [report.models[n][key] for n in names]
    colour = [GAIN if c.better else LOSS if c.worse else LEVEL for c in cells]
    fig = go.Figure(go.Bar(
        y=[label(n) for n in names], x=[c.diff for c in cells], orientation="h", marker_color=colour,
        error_x=dict(type="data", array=[c.high - c.diff for c in cells],
                     arrayminus=[c.diff - c.low for c in cells], color="#424242"),
        customdata=[[c.low, c.high, c.n] for c in cells],
        hovertemplate="%{y}: %{x:+.4f} (95%: %{customdata[0]:+.4f} to %{customdata[1]:+.4f}), "
                      "%{customdata[2]:,} customers<extra></extra>"))
    fig.add_vline(x=0, line_width=2, line_color="#212121")
    fig.update_layout(height=90 + 45 * len(names), margin=dict(t=40, b=10, l=10, r=10),
                      title=f"Recall@10 minus {label(report.reference)}'s, {SLICES[key]}",
                      xaxis_title="difference in recall@10 (95% interval over the same resampled customers)",
                      yaxis=dict(autorange="reversed"), showlegend=False)
    return fig


def plain_names(text: str) -> str:
    """A verdict with the models' ids ("colour_variants") read as their labels ("Colour variants")."""
    return re.sub(r"\b(" + "|".join(sorted(LABELS, key=len, reverse=True)) + r")\b", lambda m: label(m.group(1)),
                  text)


def seed_frame(report: EvalReport) -> pd.DataFrame:
    """Per model: recall@10 (mean over seeds), the lowest and highest seed, its settings, its new-customer path."""
    rows = []
    for name in in_order(report.models):
        m = report.models[name]
        params = m.params or {}
        rows.append({"model": label(name), "recall@10": m.metric("recall_at_10"),
                     "lowest seed": m.metric("recall_at_10_seed_min"),
                     "highest seed": m.metric("recall_at_10_seed_max"),
                     "seeds": len(m.seeds or []) or 1,
                     "settings (chosen on validation)": ", ".join(f"{k}={v}" for k, v in params.items()) or
                     ("its own (early stopping)" if name in SELF_TUNED else "defaults"),
                     "a new customer gets": new_customer_list(name, m.new_customer_path)})
    return pd.DataFrame(rows)


def split_summary(s: SplitSummary) -> None:
    st.markdown(f"**Temporal split.** Models learn from the **{s.train_purchases:,} purchases before "
                f"{s.cutoff}** and are tested on the **{s.test_purchases:,} purchases from {s.cutoff} to "
                f"{s.end}** by **{s.test_customers:,} customers** ({s.new_customers:,} new, "
                f"{s.sparse_customers:,} with 1–5 earlier purchases, {s.warm_customers:,} with more). "
                f"{s.cold_item_purchases:,} test purchases are of products nobody bought before the cutoff."
                + (f" The test customers are a random sample of the **{s.window_customers:,}** who bought in the "
                   "window (their means estimate everyone's; the intervals include the sampling)."
                   if s.window_customers and s.window_customers > s.test_customers else ""))
    m = st.columns(4)
    m[0].metric("Test customers", f"{s.test_customers:,}")
    m[1].metric("New customers", f"{s.new_customers:,}")
    m[2].metric("Test purchases", f"{s.test_purchases:,}")
    m[3].metric("Of never-bought products", f"{s.cold_item_purchases:,}")


def main_metrics(report: EvalReport) -> None:
    """The main columns (:data:`core.recs.report.MAIN_METRICS`), then the others in an expander."""
    st.dataframe(metric_frame(report, MAIN_METRICS), hide_index=True, height="content",
                 column_config=metric_columns(MAIN_METRICS), key="coldstart_eval_table")
    st.caption("Full ranking over the whole catalogue, per test customer, then averaged: recall@10 is the share of "
               "what they bought that is in their top 10 (95% bootstrap interval over customers). **Never-bought "
               "items**: recall over the products nobody bought before the cutoff. **ID-only** models (Item kNN, "
               f"ALS, LightGCN) {ID_ONLY.split(': ')[1]}. *None*: no test customer in that slice. Hover a column's "
               "name for what it measures.")
    with st.expander("More metrics: MAP@12, hit rate, customer slices, sampled recall, fit time"):
        st.dataframe(metric_frame(report, MORE_METRICS), hide_index=True, height="content",
                     key="coldstart_eval_more", column_config=metric_columns(MORE_METRICS))
        fits = metric_frame(report, ())  # how each was fitted, a table of its own: one would not fit the page
        fits["hides bought"] = [bool(report.models[n].exclude_bought) for n in in_order(report.models)]
        fits["fit s"] = [report.models[n].train_s for n in in_order(report.models)]
        st.dataframe(fits, hide_index=True, height="content", key="coldstart_eval_fits", column_config={
            "hides bought": st.column_config.CheckboxColumn(
                "hides bought", help="Whether the model's list leaves out the customer's earlier purchases "
                                     "(chosen on a validation window)"),
            "fit s": st.column_config.NumberColumn("fit (s)", format="%.1f", help="Seconds to fit the model")})


def ask_to_evaluate(built: Built, models: tuple[str, ...], names: list[str], job) -> None:
    if job is not None and job.error:
        st.error(f"The evaluation failed: {job.error}")
    command = f"python -m core evaluate --catalog {built.catalog.source} --backbone {built.backbone.name}" + \
        ("" if set(models) == set(names) else f" --models {','.join(models)}")
    st.info(f"Not evaluated yet for these models on this catalogue and backbone, at the split {CUTOFF} / {END}. "
            f"This computes it, and the page then shows it at once (it is cached):\n\n`{command}`\n\n"
            "Or run it here: it fits every chosen model on a validation window and before the cutoff (the learned "
            "ones with several seeds), GraphSAGE included unless it is cached, and can take several minutes.")
    if st.button("Evaluate now", key="coldstart_evaluate", type="primary"):
        evaluation_job(built, models, CUTOFF, END, start=True)
        st.rerun()


def evaluation_report(built: Built, models: tuple[str, ...], names: list[str]) -> EvalReport | None:
    """The full evaluation of ``models``; while the warm-up computes it, its first one-seed evaluation once that is
    done (labelled as such, the full one's progress beside it); else None after showing what is computing, or
    why there is none and how to compute it."""
    full, job = get_evaluation(built, build_key(built), models, CUTOFF, END), evaluation_job(built, models, CUTOFF, END)
    first = first_evaluation_job(built, models, CUTOFF, END)
    if full is None and job is not None and not job.finished and not job.error and first is not None \
            and not first.error:
        if not first.finished:
            job_panel(first, "Evaluating, a first time with one seed (the full evaluation follows): each model is "
                             "fitted on the purchases before the cutoff and on a validation window before it.")
            return None
        job_panel(job, f"**One seed so far.** These numbers are from the learned models' first seed; the full "
                       f"evaluation ({len(EvalConfig().seeds)} seeds, each customer's values averaged over them) is "
                       "computing and replaces them when it is done. A gap smaller than a seed's spread is not one "
                       "to act on.")
        return first.result
    return cached_or_job(
        full, job, get_evaluation.clear,  # it is in the artefact cache now
        "Evaluating: each model is fitted on the purchases before the cutoff (and on a validation window before "
        "it, where its settings are chosen) and ranks the whole catalogue for every test customer, the learned "
        "models once per seed. Fitted models are cached.",
        lambda job: ask_to_evaluate(built, models, names, job))


def how_good(built: Built, names: list[str]) -> None:
    models = st.multiselect("Models", names, default=names, key="coldstart_eval_models", format_func=label)
    if not models:
        st.info("Choose at least one model.")
        return
    models = tuple(sorted(models))
    report = evaluation_report(built, models, names)
    if report is None:
        return

    split_summary(report.split)
    st.subheader("Main metrics")
    main_metrics(report)
    if report.paired is None:
        st.warning("This evaluation was stored by an earlier version of Atelier, before paired differences and "
                   "seeds: it cannot say whether a model really beats the baselines. Re-evaluate to see that.")
        if st.button("Re-evaluate", key="coldstart_reevaluate", type="primary",
                     help="Drops the stored evaluations and computes this one again (several minutes)"):
            evaluation_job(built, models, CUTOFF, END, start=True, fresh=True)
            get_evaluation.clear()
            st.rerun()
        return

    paired = report.paired
    if paired.reference is None:
        st.info("No baseline was evaluated with these models, so there is nothing to compare them with: add one "
                "(e.g. Popularity) above.")
        return
    st.subheader(f"Each model against the best baseline, {label(paired.reference)}")
    key = st.radio("Measured on", list(SLICES), format_func=SLICES.get, horizontal=True, key="coldstart_eval_slice")
    st.plotly_chart(paired_chart(paired, key), key="coldstart_eval_chart")
    st.caption(f"Each bar is how much more (right) or less (left) of what customers bought next a model put in their "
               f"top 10 than {label(paired.reference)} (the baseline with the best validation recall@10), on the same "
               "customers. The whisker is the 95% interval of that difference when the customers are resampled: "
               ":green[**green**], its whole interval is above zero, a real gain; :red[**red**], a real loss; "
               "grey, it crosses zero, so this test cannot tell the two apart." +
               (" A bar of exactly 0 with no whisker is a model that gives new customers the same list as "
                f"{label(paired.reference)} does (most baselines give them all-time bestsellers)."
                if key == "recall_at_10_new_customers" else ""))
    st.subheader("In plain words")
    for name in in_order(report.models):
        verdict = report.models[name].verdict
        if verdict:
            st.markdown(f"**{label(name)}**: {plain_names(verdict)}")
    st.subheader("How much the seed moves it")
    st.dataframe(seed_frame(report), hide_index=True, height="content", key="coldstart_eval_seeds", column_config={
        "recall@10": st.column_config.NumberColumn("recall@10", format="%.4f", help="Mean over the seeds"),
        "lowest seed": st.column_config.NumberColumn("lowest", format="%.4f", help="recall@10 of the lowest seed"),
        "highest seed": st.column_config.NumberColumn("highest", format="%.4f", help="recall@10 of the highest seed"),
        "seeds": st.column_config.NumberColumn("seeds", width=60),
        "settings (chosen on validation)": st.column_config.TextColumn(
            "settings", width=230, help="Chosen on a validation window before the cutoff"),
        "a new customer gets": st.column_config.TextColumn(
            "a new customer gets", help="The list a customer with no purchase before the cutoff sees")})
    st.caption("The learned models are trained once per seed; recall@10 is their mean, beside the lowest and the "
               "highest single seed. A gap between two models smaller than a model's own seed range is not one to "
               "act on. Baselines' settings were chosen on a validation window before the cutoff, as the learned "
               "models' were. *Fallback*: a learned model whose own list for customers with no purchases did not "
               "beat that baseline's on the validation window serves them the baseline's.")


# ---------------------------------------------------------------- the page

def main() -> None:
    catalog = current_catalog()
    nothing_to_learn = no_purchases(catalog, CUTOFF)  # the page's models learn from the purchases before CUTOFF
    if nothing_to_learn:  # said at once: no need to wait for the embeddings to learn there is nothing to fit
        st.header("Cold start")
        how = ("Recommenders learn from who bought what: add `interactions.csv` (`user_id`, `item_id`, `timestamp`) "
               "beside `items.csv` (README, 'Your own catalogue')." if no_purchases(catalog) else
               f"This page's demo learns from the purchases before {CUTOFF} and shows what came after; the "
               "command line (`python -m core evaluate --cutoff ...`) and the service fit on any dates.")
        st.info(f"**No recommendations for {catalog.name}**: {nothing_to_learn}, so no recommender can be fitted. "
                f"{how} Everything that needs only the photos and the "
                "text works without purchases: the Catalogue, Clusters, Neighbours (similar products and search) and "
                "Texture failures pages.")
        st.stop()
    built = page_build("Cold start")
    data = get_rec_data(built, build_key(built), CUTOFF)
    available, missing = recommender_names()
    if missing:
        st.caption("Not available here: " + "; ".join(f"{label(n)} ({why})" for n, why in missing.items()))
    if not available:
        st.error("No recommender can be created; see the reasons above.")
        st.stop()
    st.caption(f"Every model learns from the **{len(data.purchases):,} purchases before {CUTOFF}**, so what customers "
               f"bought from {CUTOFF} to {END} can be replayed against its recommendations."
               + (" Customers and purchases are SIMULATED." if catalog.simulated else ""))
    if data.purchases.empty:
        st.warning(f"No purchases before {CUTOFF}: the models have nothing to learn from, and only the content-based "
                   "ones (Content, GraphSAGE) use what a customer likes.")

    section = st.radio("Show", SECTIONS, horizontal=True, key="coldstart_section", label_visibility="collapsed")
    if section == "New customer":
        new_customer(built, data, available)
    elif section == "Existing customer":
        existing_customer(built, data, available)
    elif section == "New product":
        new_product(built, data, available)
    else:
        how_good(built, available)


main()
