"""Featurisation in the scaling benchmark (:mod:`core.bench.scale`), on real photos and sentences: the one part of a
build the features-only catalogue cannot stand in for, measured at the sizes a real catalogue allows.

Each stage featurises the first ``n`` of one seeded random order of the catalogue's products with a photo
(``--catalog``; the H&M sample by default), so a larger size holds the smaller ones, from an emptied store, in a
process of its own, as a build does: the photos hashed, decoded and run through offline-lit's image tower (pooled
features and texture descriptors in one pass), or the sentences through its text tower, saved in chunks as they go.
The photo files are read through the operating system's page cache, which earlier stages (and earlier runs) leave
warm, so the rate is that of a machine whose disk keeps up. The towers are exported to ONNX once, in a process of
their own (:func:`export_stage`), before any stage is measured; each stage loads them before its clock starts and then
restarts its peak RSS from there (:func:`core.bench.measure.reset_peak_rss`; ``peak_reset`` says whether the kernel
allowed it). So ``peak_rss_mb`` is the loaded towers plus what featurising added, and ``beyond_output_mb`` is the
part of that addition which is not the arrays the stage returns (``output_mb``): streaming means it stays about the
same whatever the size.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from core.bench.measure import current_rss_mb, own_peak_rss_mb, reset_peak_rss

REAL = "real photos and sentences: the first n of a seeded random order of the catalogue's products with a photo"
CATALOGUE_FILE = "catalogue.txt"  # in the stages' shared folder: the --catalog spec the stages load
# what a stage computes, cleared before each: every photo hashed and featurised, every sentence encoded
FEATURE_KINDS = ("file-digests", "rows/lit-image-features", "rows/lit-texture-features", "rows/lit-text-features")


def photo_count(spec: str) -> int:
    """How many products of the catalogue ``spec`` have a photo: the largest size the stages can measure."""
    from core.data.load import load_catalog
    return int((load_catalog(spec).products["image_path"] != "").sum())


def sampled_catalogue(shared: Path, n: int, seed: int = 0):
    """The catalogue named in ``shared``/:data:`CATALOGUE_FILE`, cut to the first ``n`` of a seeded random order of its
    products with a photo (kept in catalogue order)."""
    from core.data.load import load_catalog
    catalog = load_catalog((shared / CATALOGUE_FILE).read_text())
    with_photo = np.flatnonzero(catalog.products["image_path"].to_numpy() != "")
    if n > len(with_photo):
        raise ValueError(f"{n:,} products asked for; the catalogue has {len(with_photo):,} with a photo")
    rows = np.sort(np.random.default_rng(seed).permutation(with_photo)[:n])
    return dataclasses.replace(catalog, products=catalog.products.iloc[rows])


def _store(shared: Path):
    """The stages' artefact cache, where the towers' ONNX exports live."""
    from core.cache import ArtefactCache
    return ArtefactCache(shared / "cache")


def _empty_store(shared: Path):
    """The stages' artefact cache with every feature row and photo digest removed (the ONNX exports stay)."""
    cache = _store(shared)
    for kind in FEATURE_KINDS:
        cache.clear(kind)
    return cache


def export_stage(shared: Path, n: int) -> dict:
    """Setup, not measured: both towers exported to ONNX into the stages' store (their cost is a build's once)."""
    from core.embeddings.lit.runtime import FeatureRunners
    from core.embeddings.lit.text import TextTower
    cache = _store(shared)
    image, text = FeatureRunners().get(cache), TextTower(cache).runner()
    return {"image_runtime": image.runtime, "text_runtime": text.runtime}


def _measured(seconds: float, n: int, computed: int, loaded: tuple[float, bool], output_width: int) -> dict:
    """A stage's numbers: ``computed`` items went through a tower (a photo or sentence two products share, once);
    ``output_width`` float32 columns per product are the arrays it returns."""
    output_mb = n * output_width * 4 / 2 ** 20
    return {"seconds": seconds, "per_s": round(n / seconds, 1), "featurised": computed,
            "featurised_per_s": round(computed / seconds, 1), "rss_loaded_mb": round(loaded[0], 1),
            "peak_reset": loaded[1], "output_mb": round(output_mb, 1),
            "beyond_output_mb": round(own_peak_rss_mb() - loaded[0] - output_mb, 1)}


class HeldTrace:
    """What a featurising stage holds beyond the rows it has filled so far, as it goes: called as a progress callback
    (``(label, done, total)``; other labels' ticks are ignored), it reads the process's RSS at least ``every`` items
    apart and at the end, and subtracts the loaded towers (``loaded_mb``) and ``done`` rows of ``width`` float32
    columns. The output matrices are zero-filled by the kernel page by page as rows land in them, so a stage that
    streams holds about the same at every point of its run, whatever the catalogue's size.

    Rows land in the output at the end of each chunk the stage saves, and a chunk's last tick comes twice (once from
    the tower, once after the rows landed): a point keeps the later of ticks with the same ``done``. A point inside a
    chunk counts that chunk's rows encoded so far as held: with ``every`` the chunk's size (photos: 1,024) the points
    fall one batch into the next chunk (32 photos' rows, 0.3 MB); with a larger chunk (sentences: 8,192), up to one
    chunk's rows (12.6 MB).
    :meth:`summary` gives the first and last point and the growth per 1,000 items fitted over the run's second half
    (a step, such as a store's merge, shows as a jump between points)."""

    def __init__(self, loaded_mb: float, width: int, label: str, every: int = 1024):
        self.loaded_mb, self.width, self.label, self.every = loaded_mb, width, label, every
        self.points: list[tuple[int, float]] = []

    def __call__(self, label: str, done: int, total: int) -> None:
        if label != self.label:
            return
        again = bool(self.points) and done == self.points[-1][0]
        if self.points and not again and done < total and done - self.points[-1][0] < self.every:
            return
        now = current_rss_mb()
        if now is None:
            return
        if again:
            self.points.pop()
        self.points.append((done, now - self.loaded_mb - done * self.width * 4 / 2 ** 20))

    def summary(self) -> dict:
        """{} with no point, else ``held_first_mb``, ``held_last_mb``, ``held_growth_mb_per_1000`` (None with fewer
        than two points in the second half) and ``held_trace`` [[done, held MB], ...]."""
        if not self.points:
            return {}
        done, held = np.array(self.points, dtype=float).T
        half = done >= done[-1] / 2
        slope = round(float(np.polyfit(done[half], held[half], 1)[0]) * 1000, 2) if half.sum() >= 2 else None
        return {"held_first_mb": round(float(held[0]), 1), "held_last_mb": round(float(held[-1]), 1),
                "held_growth_mb_per_1000": slope,
                "held_trace": [[int(d), round(float(h), 1)] for d, h in self.points]}


def photo_stage(shared: Path, n: int) -> dict:
    """Photo featurisation of ``n`` real products from an emptied store (:func:`core.embeddings.lit.features.
    catalog_texture_features`: digests, decoding in threads, the image tower through ONNX Runtime, pooled features
    and texture descriptors saved every 1,024 photos). Output: both (n, d) float32 matrices, held to the pass's end."""
    from core.embeddings.lit.features import catalog_texture_features
    from core.embeddings.lit.runtime import FeatureRunners
    from core.embeddings.lit.towers import IMAGE_FEATURES
    catalog = sampled_catalogue(shared, n)
    cache = _empty_store(shared)
    runners = FeatureRunners()
    tower = runners.get(cache)
    loaded = reset_peak_rss()
    # the pooled features and the texture descriptor (its means and Grams, side by side): the tower's outputs
    trace = HeldTrace(loaded[0], sum(tower.widths), "image features")
    t = time.perf_counter()
    computed: dict[str, int] = {}
    descriptors, _ = catalog_texture_features(catalog, cache, trace, runners=runners, computed=computed)
    out = _measured(time.perf_counter() - t, n, computed["images"], loaded, IMAGE_FEATURES + descriptors.shape[1])
    return {**out, **trace.summary(), "runtime": tower.runtime}


def sentence_stage(shared: Path, n: int) -> dict:
    """Sentence featurisation of ``n`` real products from an emptied store (:func:`core.embeddings.lit.features.
    sentence_features`: MiniLM through ONNX Runtime, saved every TEXT_CHUNK sentences). Output: the (n, 384) matrix."""
    from core.embeddings.lit.features import sentence_features
    from core.embeddings.lit.text import TextTower
    from core.embeddings.lit.towers import TEXT_FEATURES
    catalog = sampled_catalogue(shared, n)
    cache = _empty_store(shared)
    text = TextTower(cache)
    runner = text.runner()
    loaded = reset_peak_rss()
    trace = HeldTrace(loaded[0], TEXT_FEATURES, "text features")
    t = time.perf_counter()
    rows, computed = sentence_features(catalog, cache, trace, text=text)
    return {**_measured(time.perf_counter() - t, n, computed, loaded, rows.shape[1]), **trace.summary(),
            "runtime": runner.runtime}


STAGES = {"photo features": photo_stage, "sentence features": sentence_stage}
