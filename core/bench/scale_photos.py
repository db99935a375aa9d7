"""Featurisation in the scaling benchmark (:mod:`core.bench.scale`), on real photos and sentences: the one part of a
build the features-only catalogue cannot stand in for, measured at the sizes a real catalogue allows.

Each stage featurises a seeded random sample of the catalogue's products with a photo (``--catalog``; the H&M sample
by default) from an empty store, in a process of its own, as a cold build does: the photos hashed, decoded and run
through offline-lit's image tower (pooled features and texture descriptors in one pass), or the sentences through its
text tower, saved in chunks as they go. The towers are loaded (and exported to ONNX, once per run) before the clock
starts, and the peak RSS is reset after loading them, so ``peak_rss_mb`` is what featurising adds on top of the
loaded towers. Streaming means that this stays near the arrays the stage returns (``output_mb``) whatever the size:
``beyond_output_mb`` is the rest.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from core.bench.measure import own_peak_rss_mb

REAL = "real photos and sentences: a seeded random sample of the catalogue's products with a photo"
CATALOGUE_FILE = "catalogue.txt"  # in the stages' shared folder: the --catalog spec the stages load
# what a stage computes, cleared before each: every photo hashed and featurised, every sentence encoded
FEATURE_KINDS = ("file-digests", "rows/lit-image-features", "rows/lit-texture-features", "rows/lit-text-features")


def photo_count(spec: str) -> int:
    """How many products of the catalogue ``spec`` have a photo: the largest size the stages can measure."""
    from core.data.load import load_catalog
    return int((load_catalog(spec).products["image_path"] != "").sum())


def sampled_catalogue(shared: Path, n: int, seed: int = 0):
    """The catalogue named in ``shared``/:data:`CATALOGUE_FILE`, cut to a seeded random ``n`` of its products with a
    photo (in catalogue order)."""
    from core.data.load import load_catalog
    catalog = load_catalog((shared / CATALOGUE_FILE).read_text())
    with_photo = np.flatnonzero(catalog.products["image_path"].to_numpy() != "")
    if n > len(with_photo):
        raise ValueError(f"{n:,} products asked for; the catalogue has {len(with_photo):,} with a photo")
    rows = np.sort(np.random.default_rng(seed).choice(with_photo, n, replace=False))
    return dataclasses.replace(catalog, products=catalog.products.iloc[rows])


def _empty_store(shared: Path):
    """The stages' artefact cache with every feature row and photo digest removed (the ONNX exports stay)."""
    from core.cache import ArtefactCache
    cache = ArtefactCache(shared / "cache")
    for kind in FEATURE_KINDS:
        cache.clear(kind)
    return cache


def _reset_peak_rss() -> float:
    """Start this process's peak RSS (VmHWM) anew from its current RSS (Linux: ``/proc/self/clear_refs``); the
    current RSS in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return own_peak_rss_mb()


def _measured(seconds: float, n: int, loaded_mb: float, output_width: int, computed: int) -> dict:
    """The stage's numbers: ``output_width`` float32 columns per product are the arrays it returns."""
    peak = own_peak_rss_mb()
    output_mb = n * output_width * 4 / 2 ** 20
    return {"seconds": seconds, "per_s": round(n / seconds, 1), "featurised": computed,
            "rss_loaded_mb": round(loaded_mb, 1), "output_mb": round(output_mb, 1),
            "beyond_output_mb": round(peak - loaded_mb - output_mb, 1)}


def photo_stage(shared: Path, n: int) -> dict:
    """Photo featurisation of ``n`` real products from an empty store (:func:`core.embeddings.lit.features.
    catalog_texture_features`: digests, decoding in threads, the image tower through ONNX Runtime, pooled features
    and texture descriptors saved every 1,024 photos). Output: both (n, d) float32 matrices."""
    from core.embeddings.lit.features import catalog_texture_features
    from core.embeddings.lit.runtime import FeatureRunners
    from core.embeddings.lit.towers import IMAGE_FEATURES
    catalog = sampled_catalogue(shared, n)
    cache = _empty_store(shared)
    runners = FeatureRunners()
    tower = runners.get(cache)
    loaded = _reset_peak_rss()
    t = time.perf_counter()
    computed: dict[str, int] = {}
    descriptors, _ = catalog_texture_features(catalog, cache, runners=runners, computed=computed)
    seconds = time.perf_counter() - t
    # the pass fills the pooled features beside the descriptors, both held to its end
    out = _measured(seconds, n, loaded, IMAGE_FEATURES + descriptors.shape[1], computed["images"])
    out["runtime"] = getattr(tower, "runtime", type(tower).__name__)
    return out


def sentence_stage(shared: Path, n: int) -> dict:
    """Sentence featurisation of ``n`` real products from an empty store (:func:`core.embeddings.lit.features.
    sentence_features`: MiniLM through ONNX Runtime, saved every TEXT_CHUNK sentences). Output: the (n, 384) matrix."""
    from core.embeddings.lit.features import sentence_features
    from core.embeddings.lit.text import TextTower
    catalog = sampled_catalogue(shared, n)
    cache = _empty_store(shared)
    text = TextTower(cache)
    runner = text.runner()
    loaded = _reset_peak_rss()
    t = time.perf_counter()
    rows, computed = sentence_features(catalog, cache, text=text)
    out = _measured(time.perf_counter() - t, n, loaded, rows.shape[1], computed)
    out["runtime"] = getattr(runner, "runtime", type(runner).__name__)
    return out


STAGES = {"photo features": photo_stage, "sentence features": sentence_stage}
