"""The shop of the scaling benchmark (:mod:`core.bench.scale`): customers and purchases over a features-only
catalogue, and the stages that learn from them (the purchase graph, each recommender's training, the evaluation's
scoring), each timed in a process of its own as the other stages are.

The purchases are simulated, vectorised so a million products take seconds: customers in proportion to the
catalogue, each with a taste (one of the product types the features were drawn around), buying mostly within
it and otherwise from a few bestsellers and a long tail, over two years; the last four weeks are the test window.
Nothing here is a model of a real shop's behaviour beyond its sizes; the stages' costs are what is measured.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from core.recs.contract import RecData

CUSTOMERS_PER_PRODUCT = 1 / 20  # H&M's sample: 1,364 customers for 24,717 products
PURCHASES_PER_PRODUCT = 1.0  # H&M's sample: 28,006 purchases for 24,717 products
TASTE_SHARE = 0.7  # a purchase within the customer's taste (their product type); the rest from everything
POPULARITY_SKEW = 1.3  # Zipf exponent of the purchases outside a taste: a few bestsellers and a long tail
DAYS = 730  # purchases over two years, up to END
TEST_DAYS = 28  # the last four weeks: the window the evaluation's scoring ranks for
END = pd.Timestamp("2020-07-01")
# core.recs.registry.MODELS, named here because importing the registry imports torch, which every stage process
# would then carry (0.6 GB of RSS, in the stages that never use it too); a test keeps the two the same
RECOMMENDERS = ("graphsage", "two_tower", "ranker", "popularity", "recent_popularity", "segment_popularity",
                "new_arrivals", "colour_variants", "itemknn", "als", "lightgcn", "content")
COLOURS = ("black", "white", "navy", "grey", "beige", "red", "blue", "green", "pink", "yellow", "brown", "khaki")


def synthetic_shop(types: np.ndarray, groups: np.ndarray, seed: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(products, customers, purchases) as a :class:`core.data.catalog.Catalog` holds them (attributes only: no
    titles, sentences or photos) for a catalogue whose product i was drawn around product type ``types[i]`` within
    variant group ``groups[i]`` (:func:`core.bench.scale.synthetic_catalogue`): products with the attributes
    recommenders read (group, type, colour, section), customers with an age, purchases with timestamps and
    prices."""
    n = len(types)
    rng = np.random.default_rng(seed)
    ids = np.char.add("p", np.arange(n).astype(str))
    base_price = rng.uniform(5, 60, int(types.max()) + 1)
    products = pd.DataFrame({
        "group_id": np.char.add("g", groups.astype(str)),
        "product_type": np.char.add("type ", types.astype(str)),
        "colour": np.asarray(COLOURS)[rng.integers(0, len(COLOURS), n)],
        "section": np.char.add("section ", (types % 20).astype(str)),
    }, index=pd.Index(ids, name="product_id"))
    m = max(50, round(n * CUSTOMERS_PER_PRODUCT))
    customer_ids = np.char.add("c", np.arange(m).astype(str))
    customers = pd.DataFrame({"age": rng.integers(18, 75, m).astype(str)},
                             index=pd.Index(customer_ids, name="customer_id"))
    k = max(m, round(n * PURCHASES_PER_PRODUCT))
    buyer = rng.integers(0, m, k)
    taste = rng.integers(0, int(types.max()) + 1, m)[buyer]
    by_type = np.argsort(types, kind="stable")  # products of type t: by_type[start[t]:start[t] + count[t]]
    count = np.bincount(types, minlength=int(types.max()) + 1)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    within = by_type[start[taste] + (rng.random(k) * count[taste]).astype(np.int64)]
    ranked = rng.permutation(n)  # the popularity order of purchases outside a taste
    anything = ranked[(rng.zipf(POPULARITY_SKEW, k) - 1) % n]  # the tail past n wraps round, not onto one product
    bought = np.where((rng.random(k) < TASTE_SHARE) & (count[taste] > 0), within, anything)
    seconds = np.sort(rng.integers(0, DAYS * 86400, k))
    purchases = pd.DataFrame({
        "customer_id": customer_ids[buyer],
        "product_id": ids[bought],
        "timestamp": END - pd.Timedelta(days=DAYS) + pd.to_timedelta(seconds, unit="s"),
        "price": np.round(base_price[types[bought]] * rng.uniform(0.8, 1.2, k), 2),
    })
    return products, customers, purchases


def text_vectors(vectors: np.ndarray, seed: int = 1, noise: float = 0.5) -> np.ndarray:
    """(n, d) float32 unit rows: ``vectors`` with noise, standing in for the sentences' embeddings beside the
    photos' (close to them, not the same). In chunks: memory is the output's."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(vectors)
    for s in range(0, len(vectors), 100_000):
        x = vectors[s:s + 100_000] + np.float32(noise / np.sqrt(vectors.shape[1])) * rng.standard_normal(
            (min(100_000, len(vectors) - s), vectors.shape[1]), dtype=np.float32)
        out[s:s + 100_000] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def save_shop(scratch: Path, types: np.ndarray, groups: np.ndarray) -> dict:
    """The shop of :func:`synthetic_shop` and its text vectors written to ``scratch`` for the stages; its sizes."""
    products, customers, purchases = synthetic_shop(types, groups)
    products.to_pickle(scratch / "products.pkl")
    customers.to_pickle(scratch / "customers.pkl")
    purchases.to_pickle(scratch / "purchases.pkl")
    np.save(scratch / "text.npy", text_vectors(np.load(scratch / "vectors.npy")))
    return {"customers": len(customers), "purchases": len(purchases)}


def shop_data(scratch: Path) -> tuple["RecData", pd.DataFrame]:
    """The :class:`core.recs.contract.RecData` of the saved shop, trained on everything before the test window, and
    the test window's purchases."""
    from core.embeddings.pipeline import Embeddings
    from core.recs.contract import rec_data
    products = pd.read_pickle(scratch / "products.pkl")
    purchases = pd.read_pickle(scratch / "purchases.pkl")
    image = np.load(scratch / "vectors.npy")
    embeddings = Embeddings(ids=products.index.to_numpy(str), image=image, text=np.load(scratch / "text.npy"),
                            has_image=np.ones(len(image), bool))
    cutoff = END - pd.Timedelta(days=TEST_DAYS)
    data = rec_data(products, pd.read_pickle(scratch / "customers.pkl"), purchases, cutoff, embeddings)
    return data, purchases[purchases["timestamp"] >= cutoff]


def graph_stage(scratch: Path, n: int) -> dict:
    """GraphSAGE's graph of the shop (:func:`core.recs.graph.build_graph`: features, purchase and content edges)."""
    from core.recs.graph import GraphConfig, build_graph
    data, _ = shop_data(scratch)
    t = time.perf_counter()
    graph = build_graph(data, GraphConfig())
    return {"seconds": time.perf_counter() - t, "purchase_edges": int(graph.buys.shape[1]),
            "content_edges": int(graph.similar.shape[1])}


def fit_stage(name: str) -> Callable[[Path, int], dict]:
    """The stage that fits the registered recommender ``name`` on the shop, with its defaults and seed 0."""
    def run(scratch: Path, n: int) -> dict:
        from core.recs.registry import create_recommender
        data, _ = shop_data(scratch)
        model = create_recommender(name)
        t = time.perf_counter()
        model.fit(data)
        out = {"seconds": time.perf_counter() - t, "customers": len(data.customer_ids),
               "purchases": len(data.purchases)}
        if getattr(model, "history_", None) is not None:  # early-stopped: how many epochs it took, which varies
            out["epochs"] = len(model.history_)
        return out
    return run


def scoring_stage(model_name: str, from_index: bool = False) -> Callable[[Path, int], dict]:
    """The stage timing the evaluation's ranking of the test window's customers by the registered recommender
    ``model_name``, fitted first with its defaults (not timed): :func:`core.recs.evaluate.rank_customers` with the
    sampled metric's pairs, as the test window is ranked; at most ``SplitConfig.max_customers`` customers, a sample
    past that, as the evaluation measures. Every product is scored for a batch of customers at a time, or with
    ``from_index`` a model with customer vectors gives its lists from its index and scores only the sampled
    pairs. The peak RSS restarts once the model is fitted (``rss_fitted_mb``; ``peak_reset`` says whether the
    kernel allowed it), so ``peak_rss_mb`` is the fitted model and data plus what the ranking added, not the fit's
    own peak."""
    def run(scratch: Path, n: int) -> dict:
        from core.bench.measure import reset_peak_rss
        from core.recs.contract import CUSTOMER_VECTORS, scoring_batch
        from core.recs.evaluate import INDEX_BATCH, EvalConfig, rank_customers
        from core.recs.registry import create_recommender
        from core.recs.split import Split, sample_customers
        data, test = shop_data(scratch)
        cfg = EvalConfig()
        window = Split(data.cutoff, END, data.purchases, test)
        measured = sample_customers(window, cfg.split.max_customers, cfg.seed)
        model = create_recommender(model_name).fit(data)
        fitted, reset = reset_peak_rss()
        t = time.perf_counter()
        ranked = rank_customers(model, data, measured.test, cfg, sampled=True, from_index=from_index)
        seconds = time.perf_counter() - t
        indexed = from_index and model.supports(CUSTOMER_VECTORS)
        return {"seconds": seconds, "model": model_name, "test_customers": len(ranked.customers),
                "window_customers": len(window.test_customers()), "test_pairs": len(ranked.ranks_including),
                "ms_per_customer": round(1000 * seconds / max(1, len(ranked.customers)), 3),
                "lists_from": "index" if indexed else "every score", "rss_fitted_mb": round(fitted, 1),
                "peak_reset": reset,
                "batch": INDEX_BATCH if indexed else scoring_batch(data.n_products)}
    return run
