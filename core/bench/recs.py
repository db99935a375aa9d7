"""The recs benchmark: a recommender's training time, memory and per-customer latency."""
from __future__ import annotations

import argparse
import resource
import tempfile
import time

import numpy as np

from core.bench.command import BenchContext
from core.bench.measure import peak_rss_mb, percentiles, reference_s, timed
from core.bench.two_tower import bench_two_tower
from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone
from core.embeddings.pipeline import BuildConfig, embed_catalog


def bench_recs(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
               model: str = "graphsage", n_known: int = 1000, n_new: int = 300, k: int = 12, seed: int = 0,
               cfg: BuildConfig = BuildConfig(), progress=None) -> dict:
    """A recommender trained on every purchase (cutoff: midnight after the last one) in a scratch cache, so
    ``train_s`` is a real training (embeddings come warm from ``cache``); then the latency of one
    customer's top-k: a known customer (``score`` of their id, random over customers with purchases) and
    a new one (``score_histories`` of 3 random liked products). Times are also given per ``reference_s``
    (a fixed numpy workload timed in the same run): ``<time>_per_reference`` = seconds / reference_s."""
    from core.recs.contract import cutoff_after, rec_data, require_purchases
    from core.recs.registry import fitted
    catalog = load_catalog(spec, limit)
    require_purchases(catalog, what="bench recs")
    embeddings, _, _ = embed_catalog(catalog, backbone, cache, cfg)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff_after(catalog.purchases),
                    embeddings, cfg.hybrid_weight)
    rss_before = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-recs-") as tmp:
        t = time.perf_counter()
        rec = fitted(model, data, ArtefactCache(tmp), seed, progress)
        train_s = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    known = np.unique(data.customer_ids[data.users]) if len(data.users) else np.empty(0, dtype=str)
    out = {"catalog": catalog.name, "backbone": backbone.name, "model": model, "k": k,
           "n_products": data.n_products, "n_customers": len(data.customer_ids), "n_known_customers": len(known),
           "n_purchases": len(data.purchases), "train_s": round(train_s, 3)}
    own = getattr(rec, "train_s_", None)
    out["model_train_s"] = None if own is None else round(float(own), 3)  # the fit alone, without save and load
    report = getattr(rec, "report_", None)
    if report is not None:  # what the fit saw and chose (the ranker: its windows' candidate recall, settings)
        out["model_report"] = report
    if len(known):
        ids = rng.choice(known, size=n_known)
        out |= percentiles(timed(lambda c: rec.recommend([c], k), ids), "known_customer")
    else:
        out |= {"known_customer_p50_ms": None, "known_customer_p99_ms": None}
    likes = [rng.choice(data.n_products, size=min(3, data.n_products), replace=False) for _ in range(n_new)]
    out |= percentiles(timed(lambda h: rec.recommend_histories([h], k), likes), "new_customer")
    out |= {"n_known_queries": n_known if len(known) else 0, "n_new_queries": n_new}
    ref = reference_s()
    out["reference_s"] = round(ref, 4)
    out["train_s_per_reference"] = round(train_s / ref, 2)
    for key in ("known_customer_p50_ms", "known_customer_p99_ms", "new_customer_p50_ms", "new_customer_p99_ms"):
        ms = out[key]
        out[key.replace("_ms", "_per_reference")] = None if ms is None else round(ms / 1e3 / ref, 4)
    out |= bench_two_tower(data, rec if model == "two_tower" else None, seed, progress=progress)
    out["two_tower_train_s_per_reference"] = round(out["two_tower_train_s"] / ref, 2)
    out["two_tower_query_p99_per_reference"] = round(out["two_tower_query_p99_ms"] / 1e3 / ref, 4)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["peak_rss_before_train_mb"] = round(rss_before, 1)
    children = peak_rss_mb(resource.RUSAGE_CHILDREN)
    out["peak_rss_children_mb"] = round(children, 1)
    out["peak_rss_note"] = ("this process over the whole run (catalogue, embeddings, training, queries)"
                            + (f"; child processes (largest) peaked at {children:.0f} MB, not included"
                               if children > 0 else "; no child processes"))
    return out


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    backbone = ctx.backbone(args.backbone)
    ctx.model_names(args.model)
    return bench_recs(ctx.spec, backbone, ArtefactCache(), limit=args.limit, model=args.model,
                      progress=ctx.progress())
