"""The texture benchmark: the texture report's headline numbers per kind and the texture pass's cost."""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from core.bench.command import BenchContext
from core.bench.embed import featurisation_rates
from core.bench.measure import reference_s
from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone
from core.embeddings.pipeline import BuildConfig, build


TEXTURE_KEYS = ("pattern_agreement_at_10", "pattern_agreement_chance", "pattern_sensitivity", "pair_auc",
                "probe_balanced_accuracy", "zero_shot_balanced_accuracy", "type_agreement_at_10")
def bench_texture(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                  label: str = "pattern", cfg: BuildConfig = BuildConfig(), progress=None) -> dict:
    """The texture report's headline numbers per kind (held-out products; see core.explore.texture.texture_report),
    the winning photo kind, the cold texture pass over every photo (in a scratch cache: pooled and
    texture features in one pass) and the featurisation rates, bulk against the torch eager loop."""
    from core.embeddings.lit.features import catalog_texture_features
    from core.explore.texture import best_photo_kind, texture_report
    catalog = load_catalog(spec, limit)
    reference = reference_s()
    paths = catalog.products["image_path"][catalog.products["image_path"] != ""].tolist()
    rates = featurisation_rates(paths, cache)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        catalog_texture_features(catalog, ArtefactCache(Path(tmp) / "cache"), views=cfg.texture.views)
        texture_s = time.perf_counter() - t
    built = build(catalog, backbone, cache, cfg, progress)
    t = time.perf_counter()
    report = texture_report(built, cache, label, progress=progress)
    report_s = time.perf_counter() - t
    table = report.table
    kinds = {row["kind"]: {key: (None if pd.isna(row[key]) else round(float(row[key]), 4)) for key in TEXTURE_KEYS}
             for _, row in table.iterrows()}
    best = best_photo_kind(table)
    return {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name, "label": label,
            "split": report.split, "weights": report.weights, "views": list(cfg.texture.views), "kinds": kinds, "best_kind": best,
            "texture_features_s": round(texture_s, 2), "texture_features_photos": len(paths),
            "images_per_s": rates["images_per_s"], "naive_images_per_s": rates["naive_images_per_s"],
            "speedup_vs_naive": rates["speedup_vs_naive"], "runtime": rates["runtime"],
            "report_s": round(report_s, 2), "reference_s": round(reference, 4),
            "texture_features_s_per_reference": round(texture_s / reference, 1)}


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    backbone = ctx.backbone(args.backbone)
    return bench_texture(ctx.spec, backbone, ArtefactCache(), limit=args.limit, label=args.label,
                         cfg=ctx.build_config(args), progress=ctx.progress())
