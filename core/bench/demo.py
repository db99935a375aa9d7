"""The demo benchmark: the recommender demo's measures (taste overlap and fit, added products' rank) per model."""
from __future__ import annotations

import argparse
import time

import numpy as np

from core.bench.command import BenchContext
from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone
from core.embeddings.pipeline import embed_catalog


DEMO_MODELS = ("graphsage", "two_tower", "content", "popularity")


def bench_demo(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
               models: tuple[str, ...] = DEMO_MODELS, demo=None, progress=None) -> dict:
    """:mod:`core.recs.demo`'s measures of the default split's models: each fitted on the purchases before
    ``SplitConfig().cutoff`` through :func:`core.recs.contract.fitted` with ``cache`` and the demo's seed (the
    artefacts the evaluation trains, so nothing is trained twice). ``taste_overlap`` and ``taste_fit``
    per model; ``added_product_rank`` per model that places new products (``core.recs.demo.places_products``);
    ``fit_s`` per model (a load when cached), ``n_products``, the counts and seed used, ``seconds``."""
    from core.recs.demo import DemoConfig, places_products, added_product_rank, taste_overlap, taste_fit
    from core.recs.evaluate import EvalConfig
    from core.recs.contract import rec_data, require_purchases
    from core.recs.registry import fitted
    demo = demo or DemoConfig()
    t0 = time.perf_counter()
    evaluation = EvalConfig()
    catalog = load_catalog(spec, limit)
    require_purchases(catalog, evaluation.split.cutoff, "bench demo")
    embeddings, _, _ = embed_catalog(catalog, backbone, cache)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, evaluation.split.cutoff, embeddings,
                    evaluation.hybrid_weight)
    types, colours = (data.products[c].fillna("").astype(str).to_numpy() if c in data.products
                      else np.full(data.n_products, "") for c in ("product_type", "colour"))
    out = {"catalog": catalog.name, "backbone": backbone.name, "cutoff": evaluation.split.cutoff,
           "seed": demo.seed, "n_products": data.n_products, "k": demo.k, "n_liked": demo.n_liked,
           "taste_pairs": demo.n_pairs, "taste_customers": demo.n_customers, "added_products": demo.n_added,
           "added_near": demo.n_near, "added_max_customers": demo.max_buyers, "rank_under": demo.rank_under,
           "models": list(models), "fit_s": {}, "taste_overlap": {}, "taste_fit": {}, "added_product_rank": {},
           "seconds_per_model": {}}
    for name in models:
        t = time.perf_counter()
        model = fitted(name, data, cache, demo.seed, progress)
        out["fit_s"][name] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        overlap, fit = taste_overlap(model, types, colours, demo), taste_fit(model, types, colours, demo)
        out["taste_overlap"][name] = None if overlap is None else round(overlap, 4)
        out["taste_fit"][name] = None if fit is None else round(fit, 4)
        if places_products(model):
            added = added_product_rank(model, data, demo)
            out["added_product_rank"][name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in added.items()}
        out["seconds_per_model"][name] = round(time.perf_counter() - t, 2)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    backbone = ctx.backbone(args.backbone)
    models = tuple(ctx.model_names(args.models)) if args.models else DEMO_MODELS
    return bench_demo(ctx.spec, backbone, ArtefactCache(), limit=args.limit, models=models, progress=ctx.progress())
