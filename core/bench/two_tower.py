"""The two-tower part of the recs benchmark: its query latency, and approximate layouts against exact search."""
from __future__ import annotations

import time

import numpy as np

from core.bench.measure import percentiles, timed


def ann_layouts(n: int) -> list:
    """The approximate layouts bench recs measures against exact search, each at a few search widths:
    HNSW at efSearch 64, 128, 256, and IVF with as many lists as FAISS can train from ``n`` vectors (it
    wants 39 per list), at most 256, probing 1/16 and 1/4 of them."""
    from core.embeddings.index import IndexConfig
    lists = min(256, max(1, n // 39))
    return [IndexConfig("HNSW32", ef_search=ef) for ef in (64, 128, 256)] + \
        [IndexConfig(f"IVF{lists},Flat", nprobe=max(1, lists // d)) for d in (16, 4)]


def ann_recall(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Mean share of each row's exact top-k (rows (q, k) int64) that the approximate top-k also holds."""
    hits = [len(np.intersect1d(e[e >= 0], a[a >= 0])) / max(int((e >= 0).sum()), 1) for e, a in zip(exact, approximate)]
    return float(np.mean(hits)) if hits else float("nan")


def bench_two_tower(data, model=None, seed: int = 0, k: int = 100, n_queries: int = 1000, layouts: list | None = None,
                    min_recall: float = 0.95, progress=None) -> dict:
    """The two-tower model's training time (``model`` if given, else trained on ``data`` here, uncached),
    the latency of one customer vector's top-``k`` from its exact FAISS index over the whole catalogue
    (``two_tower_query_p50_ms`` / ``_p99_ms``, random customers), and for each approximate layout
    (:func:`ann_layouts`) its recall of the exact top-k over every customer and its latency;
    ``ann_layout`` is the fastest (p99) with recall >= ``min_recall`` (else the most accurate), and
    ``ann_recall_vs_exact`` its recall."""
    from core.embeddings.index import VectorIndex
    from core.recs.two_tower import TwoTowerConfig, TwoTowerRecommender
    if model is None:
        model = TwoTowerRecommender(TwoTowerConfig(seed=seed)).fit(data, progress)
    vectors = model.customer_vectors()
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), size=n_queries)]
    out = {"two_tower_train_s": round(model.train_s_, 3), "two_tower_k": k,
           "two_tower_index": model.index_cfg.factory, "two_tower_dim": int(vectors.shape[1])}
    out |= percentiles(timed(lambda q: model.index_.search(q[None], k), queries), "two_tower_query")
    _, exact = model.index_.search(vectors, k)
    measured = {}
    for cfg in layouts or ann_layouts(len(model.item_vectors_)):
        t = time.perf_counter()
        index = VectorIndex(model.item_vectors_, model.product_ids_, cfg)
        build_s = time.perf_counter() - t
        _, approx = index.search(vectors, k)
        width = f"nprobe={cfg.nprobe}" if "IVF" in cfg.factory else f"efSearch={cfg.ef_search}"
        measured[f"{cfg.factory} {width}"] = {
            "recall_vs_exact": round(ann_recall(exact, approx), 4), "build_s": round(build_s, 3),
            **percentiles(timed(lambda q: index.search(q[None], k), queries), "query")}
    good = [name for name, m in measured.items() if m["recall_vs_exact"] >= min_recall]
    best = min(good, key=lambda n: measured[n]["query_p99_ms"]) if good else \
        max(measured, key=lambda n: measured[n]["recall_vs_exact"], default=None)
    return out | {"ann_layouts": measured, "ann_layout": best,
                  "ann_recall_vs_exact": None if best is None else measured[best]["recall_vs_exact"],
                  "ann_query_p99_ms": None if best is None else measured[best]["query_p99_ms"]}
