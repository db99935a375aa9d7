"""The build benchmark: a cold build (embeddings, texture kind, indexes) into an empty cache, stage by stage."""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.bench.command import BenchContext
from core.bench.measure import reference_s
from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone
from core.embeddings.pipeline import BuildConfig, build


@dataclass
class StageClock:
    """A progress callback recording when each stage first and last reported, in seconds from its creation.

    A parenthesised tail of a stage's name ("texture features (gray)") is kept: each view is its own stage."""
    start: float = field(default_factory=time.perf_counter)
    stages: dict[str, dict] = field(default_factory=dict)  # name -> {"first_s", "last_s", "total"}, in first order

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = round(time.perf_counter() - self.start, 2)
        seen = self.stages.setdefault(stage, {"first_s": now, "last_s": now, "total": total})
        seen["last_s"], seen["total"] = now, total

    def table(self) -> dict[str, dict]:
        """Per stage: first and last report, ``seconds`` between them, and the (last) ``total`` of items."""
        return {name: {**s, "seconds": round(s["last_s"] - s["first_s"], 2)} for name, s in self.stages.items()}


def bench_build(spec: str | None, backbone: Backbone, limit: int | None = None,
                cfg: BuildConfig = BuildConfig(), root: str | os.PathLike | None = None) -> dict:
    """A cold :func:`core.embeddings.pipeline.build` (what ``python -m core build`` computes before its warm
    stages) into an empty cache in a temporary folder (under ``root`` if given), removed afterwards.

    Returns ``total_s`` (the build, from an empty cache: tower exports, photo digests, features, heads,
    embeddings, texture kind, indexes), ``load_s`` (reading the catalogue, before), ``stages`` (each progress
    stage's first and last report, seconds from the build's start), ``steps_s`` (the build's own timings,
    BuildStats.seconds: prepare, fingerprint, images, texts, texture, index_<kind>), and ``reference_s`` (a fixed
    numpy workload timed before and after the build, their mean: the machine's speed during this run) with
    ``total_per_reference`` = total_s / reference_s, the number to compare between runs and machines."""
    before = reference_s()
    load = os.getloadavg()[0]
    t = time.perf_counter()
    catalog = load_catalog(spec, limit)
    load_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        clock = StageClock()
        built = build(catalog, backbone, ArtefactCache(Path(tmp) / "cache"), cfg, clock)
        total_s = time.perf_counter() - clock.start
    after = reference_s()
    reference = (before + after) / 2
    return {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_1m_before": round(load, 2),
            "images_embedded": built.stats.images_embedded, "texts_embedded": built.stats.texts_embedded,
            "kinds": list(built.kinds), "load_s": round(load_s, 2), "total_s": round(total_s, 2),
            "stages": clock.table(), "steps_s": {k: round(v, 2) for k, v in built.stats.seconds.items()},
            "reference_s": round(reference, 4), "reference_s_before": round(before, 4),
            "reference_s_after": round(after, 4), "total_per_reference": round(total_s / reference, 1)}


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_build(ctx.spec, ctx.backbone(args.backbone), limit=args.limit, cfg=ctx.build_config(args))
