"""The embed benchmark: build times (cold, warm, 100 new products) and photo throughput, bulk against naive."""
from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import ImageOps

from core.bench.command import BenchContext
from core.bench.measure import reference_s
from core.cache import ArtefactCache
from core.data.catalog import Catalog, product_sentences
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone, encode_images, load_image
from core.embeddings.pipeline import BuildConfig, build


def naive_images_per_s(backbone: Backbone, paths: list[str]) -> float:
    """The naive loop: open, preprocess and encode one image at a time."""
    t = time.perf_counter()
    for p in paths:
        backbone.encode_image(backbone.preprocess(load_image(p))[None])
    return len(paths) / (time.perf_counter() - t)


def with_new_products(catalog: Catalog, n: int, image_dir: Path) -> Catalog:
    """``catalog`` plus ``n`` new products: mirrored copies of existing photos under new ids and titles."""
    src = catalog.products[catalog.products["image_path"] != ""].iloc[:n].copy()
    image_dir.mkdir(parents=True, exist_ok=True)
    new_ids = [f"new{i:06d}" for i in range(len(src))]
    paths = []
    for pid, path in zip(new_ids, src["image_path"]):
        out = image_dir / f"{pid}.png"
        ImageOps.mirror(load_image(path)).save(out)
        paths.append(str(out))
    src.index = pd.Index(new_ids, name="product_id")
    src["image_path"] = paths
    src["title"] = "New " + src["title"]
    src["sentence"] = product_sentences(src)
    return dataclasses.replace(catalog, products=pd.concat([catalog.products, src]))


def featurisation_rates(paths: list[str], cache: ArtefactCache, naive_sample: int = 64, sample: int = 512) -> dict:
    """offline-lit photo featurisation, both ways on the same photos (the first ``sample`` of ``paths``):
    ``naive_images_per_s``, the torch eager loop (open, preprocess, ImageTower forward, one photo at a
    time, pooled features only) over the first ``naive_sample``; ``images_per_s``, the bulk path
    (:func:`core.embeddings.lit.features.photo_features`: decoding threads, batches through ONNX Runtime or its torch
    fallback, pooled and texture outputs); their ratio, and ``runtime`` ("onnxruntime" or "torch").
    The naive loop is also timed on one torch thread (``naive_one_thread_images_per_s``): on a machine
    whose cores are busy, torch's default threads wait on each other at every small operator and the
    loop ran 10-40x slower (measured 0.6-2.4 against 26-29 photos/s), which would flatter the bulk path.
    Loading and any export happen before timing; so does one warm-up batch."""
    import torch

    from core.embeddings.lit.features import FEATURE_BATCH, EagerImageFeatures, photo_features
    from core.embeddings.lit.runtime import create_feature_tower
    from core.embeddings.lit.towers import image_tower
    tower = create_feature_tower(cache)
    bulk, naive = paths[:sample], paths[:naive_sample]
    photo_features(bulk[:FEATURE_BATCH], tower=tower)  # warm-up: first-run allocations
    t = time.perf_counter()
    photo_features(bulk, tower=tower)
    images_per_s = len(bulk) / (time.perf_counter() - t)
    shim = EagerImageFeatures(image_tower())  # single photos: always the eager forward
    naive_images_per_s(shim, naive[:1])
    naive_rate = naive_images_per_s(shim, naive)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = naive_images_per_s(shim, naive)
    finally:
        torch.set_num_threads(threads)
    return {"runtime": tower.runtime, "runtime_note": tower.reason, "images_per_s": round(images_per_s, 2),
            "naive_images_per_s": round(naive_rate, 2), "speedup_vs_naive": round(images_per_s / naive_rate, 2),
            "naive_one_thread_images_per_s": round(one_thread, 2),
            "speedup_vs_naive_one_thread": round(images_per_s / one_thread, 2), "torch_threads": threads,
            "batch_size": FEATURE_BATCH, "throughput_sample": len(bulk), "naive_sample": len(naive)}


def bench_embed(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                sample: int = 512, naive_sample: int = 64, cfg: BuildConfig = BuildConfig()) -> dict:
    """A cold or warm build, photo throughput (bulk against the naive one-at-a-time loop), a warm rebuild
    and 100 new products. For offline-lit the throughput is its photo featurisation (see
    :func:`featurisation_rates`); for other backbones, ``encode_images`` against ``naive_images_per_s``.
    Times are also given per ``reference_s`` (a fixed numpy workload timed in the same run):
    ``<time>_per_reference`` = seconds / reference_s, ``<rate>_per_reference`` = photos per reference_s."""
    catalog = load_catalog(spec, limit)
    t = time.perf_counter()
    first = build(catalog, backbone, cache, cfg)  # cold or warm; a backbone that learns (offline-lit) is ready after
    first_s = time.perf_counter() - t
    paths = catalog.products["image_path"][catalog.products["image_path"] != ""].tolist()
    if backbone.name == "offline-lit":
        rates = featurisation_rates(paths, cache, naive_sample, sample)
    else:
        encode_images(backbone, paths[:cfg.batch_size], cfg.batch_size, cfg.workers)  # warm-up (and any compile)
        backbone.encode_image(backbone.preprocess(load_image(paths[0]))[None])
        t = time.perf_counter()
        encode_images(backbone, paths[:sample], cfg.batch_size, cfg.workers)
        images_per_s = min(sample, len(paths)) / (time.perf_counter() - t)
        naive = naive_images_per_s(backbone, paths[:naive_sample])
        rates = {"runtime": "torch", "images_per_s": round(images_per_s, 2), "naive_images_per_s": round(naive, 2),
                 "speedup_vs_naive": round(images_per_s / naive, 2), "batch_size": cfg.batch_size,
                 "throughput_sample": min(sample, len(paths)), "naive_sample": min(naive_sample, len(paths))}

    t = time.perf_counter()
    warm = build(load_catalog(spec, limit), backbone, cache, cfg)
    warm_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        # a copy of the embedding rows, so the benchmark's new products never enter the real cache
        scratch = ArtefactCache(Path(tmp) / "cache")
        if (cache.root / "rows").is_dir():
            shutil.copytree(cache.root / "rows", scratch.root / "rows")
        grown = with_new_products(catalog, 100, Path(tmp) / "new")
        t = time.perf_counter()
        added = build(grown, backbone, scratch, cfg)
        added_s = time.perf_counter() - t
    ref = reference_s()
    times = {"first_build_s": first_s, "warm_rebuild_s": warm_s, "incremental_s": added_s}
    return {
        "catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name,
        "weights": backbone.weights, "decode_threads": cfg.workers, **rates,
        "first_build_s": round(first_s, 2), "first_build_images_embedded": first.stats.images_embedded,
        "warm_rebuild_s": round(warm_s, 3), "warm_rebuild_images_embedded": warm.stats.images_embedded,
        "warm_rebuild_steps_s": {k: round(v, 3) for k, v in warm.stats.seconds.items()},
        "incremental_added": 100, "incremental_embedded": added.stats.images_embedded,
        "incremental_texts_embedded": added.stats.texts_embedded, "incremental_s": round(added_s, 2),
        "reference_s": round(ref, 4),
        **{f"{k}_per_reference": round(v / ref, 3) for k, v in times.items()},
        "images_per_reference": round(rates["images_per_s"] * ref, 2),
        "naive_images_per_reference": round(rates["naive_images_per_s"] * ref, 2),
    }


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    backbone = ctx.backbone(args.backbone)
    return bench_embed(ctx.spec, backbone, ArtefactCache(), limit=args.limit, cfg=ctx.build_config(args))
