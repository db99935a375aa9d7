"""The search benchmark: latency of product, text and photo queries, and an approximate index's recall."""
from __future__ import annotations

import argparse

import numpy as np

from core.bench.command import BenchContext
from core.bench.measure import percentiles, timed
from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone
from core.embeddings.index import VectorIndex
from core.embeddings.pipeline import BuildConfig, build


def bench_search(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                 n_product: int = 2000, n_text: int = 100, n_photo: int = 50, k: int = 10, seed: int = 0,
                 cfg: BuildConfig = BuildConfig()) -> dict:
    catalog = load_catalog(spec, limit)
    built = build(catalog, backbone, cache, cfg)
    rng = np.random.default_rng(seed)
    ids = rng.choice(built.indexes["image"].ids, size=n_product)
    out = {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name, "k": k,
           "index": cfg.index.factory}

    out |= percentiles(timed(lambda pid: built.neighbours(pid, "image", k), ids), "product")
    index = built.indexes["image"]
    vectors = [index.reconstruct(pid) for pid in ids]
    out |= percentiles(timed(lambda v: index.search(v, k + 1), vectors), "product_scan")
    sentences = rng.choice(catalog.products["sentence"].to_numpy(), size=n_text)
    queries = [s.split(",")[0] for s in sentences]  # "Strap top: a black solid vest top"
    out |= percentiles(timed(lambda q: built.search(built.text_query(q), "image", k), queries), "text")
    text_vectors = [built.text_query(q) for q in queries]
    out |= percentiles(timed(lambda v: built.search(v, "image", k), text_vectors), "text_search_only")
    photos = rng.choice(catalog.products["image_path"][catalog.products["image_path"] != ""].to_numpy(),
                        size=n_photo)
    out |= percentiles(timed(lambda p: built.search(built.photo_query(p), "image", k), photos), "photo")
    if cfg.index.factory != "Flat":  # what the approximate layout costs in quality, against exact search
        queries = np.stack(vectors)
        exact = VectorIndex(*built.embeddings.matrix("image", cfg.hybrid_weight))
        _, want = exact.search(queries, k + 1)
        _, got = index.search(queries, k + 1)
        out["recall_at_k_vs_exact"] = round(float(np.mean([len(set(w) & set(g)) / len(w)
                                                           for w, g in zip(want, got)])), 4)
    out |= {"n_product_queries": n_product, "n_text_queries": n_text, "n_photo_queries": n_photo}
    return out


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    backbone = ctx.backbone(args.backbone)
    return bench_search(ctx.spec, backbone, ArtefactCache(), limit=args.limit, cfg=ctx.build_config(args))
