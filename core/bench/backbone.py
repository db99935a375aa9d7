"""The backbone benchmark: offline-lit's tower throughput, head training and held-out evaluation."""
from __future__ import annotations

import argparse
import time

from core.bench.command import BenchContext
from core.cache import ArtefactCache
from core.data.load import load_catalog


def bench_backbone(spec: str | None, cache: ArtefactCache, limit: int | None = None, sample: int = 1024) -> dict:
    """offline-lit: tower throughput, head training, and the held-out evaluation of core.embeddings.quality."""
    from core.embeddings.quality import lit_evaluation
    from core.embeddings.lit import towers
    from core.embeddings.lit.features import catalog_features, image_features
    catalog = load_catalog(spec, limit)
    stages: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:  # first and last report of each stage
        stages.setdefault(stage, [time.perf_counter(), 0.0, total])[1] = time.perf_counter()

    t0 = time.perf_counter()
    catalog_features(catalog, cache, progress)  # a cold first run computes every product's tower features here
    features_s = time.perf_counter() - t0
    image_stage = stages.get("image features")
    image_tower = towers.image_tower()
    paths = catalog.products["image_path"][catalog.products["image_path"] != ""].tolist()[:sample]
    t = time.perf_counter()
    image_features(image_tower, paths[:64])  # warm-up: first-run allocations
    warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    image_features(image_tower, paths if len(paths) >= 1000 else paths * (1000 // len(paths) + 1))
    n = max(len(paths), 1000)
    images_per_s = n / (time.perf_counter() - t)
    out = {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": "offline-lit",
           "features_s": round(features_s, 2),
           # cold runs only: photos featurised in this run, and their rate
           "cold_images_featurised": image_stage[2] if image_stage else 0,
           "cold_image_features_s": round(image_stage[1] - t0, 2) if image_stage else None,
           "cold_images_per_s": round(image_stage[2] / (image_stage[1] - t0), 2) if image_stage else None,
           "warmup_s": round(warmup_s, 2),
           "images_per_s": round(images_per_s, 2), "throughput_sample": n}
    return out | lit_evaluation(catalog, cache, recompute=True).to_dict()


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_backbone(ctx.spec, ArtefactCache(), limit=args.limit)
