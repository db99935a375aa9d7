"""Baseline recommenders by name: popularity, recent popularity, segment popularity, new arrivals, colour
variants, item kNN, ALS, LightGCN and content similarity, all behind :class:`core.recs.contract.Recommender`
(:func:`create` ``(name, seed, params)``; :data:`GRIDS` are the settings the evaluation tries on its validation
window).

Modules, lowest first: ``base`` (the shared :class:`~core.recs.baselines.base.Baseline` flow: new customers,
ties, ID-only models, recency; and the score helpers), then one per family, each importing only ``base``:
``popularity`` (all-time, recent, segment), ``new_arrivals``, ``colour_variants``, ``itemknn``, ``als``,
``lightgcn``, ``content``. This package's own module is the registry above them.
"""
from __future__ import annotations

import dataclasses

from core.recs.baselines.als import ALS, AlsConfig
from core.recs.baselines.base import Baseline
from core.recs.baselines.colour_variants import ColourVariants, VariantsConfig
from core.recs.baselines.content import Content, ContentConfig
from core.recs.baselines.itemknn import ItemKNN, KnnConfig
from core.recs.baselines.lightgcn import LightGCN, LightGCNConfig
from core.recs.baselines.new_arrivals import NewArrivals
from core.recs.baselines.popularity import (Popularity, RecentConfig, RecentPopularity, SegmentConfig,
                                            SegmentPopularity)
from core.recs.contract import Recommender

# name -> (class, its config class or None when it has no settings)
_MODELS: dict[str, tuple[type[Baseline], type | None]] = {
    "popularity": (Popularity, None),
    "recent_popularity": (RecentPopularity, RecentConfig),
    "segment_popularity": (SegmentPopularity, SegmentConfig),
    "new_arrivals": (NewArrivals, None),
    "colour_variants": (ColourVariants, VariantsConfig),
    "itemknn": (ItemKNN, KnnConfig),
    "als": (ALS, AlsConfig),
    "lightgcn": (LightGCN, LightGCNConfig),
    "content": (Content, ContentConfig),
}

# Settings the evaluation tries on its validation window (core.recs.evaluate), keeping the best by Recall@10;
# a few points each, so the baselines get tuned as the learned models were (Dacrema et al., RecSys 2019)
# at a cost that keeps the whole evaluation within minutes. The first point is the config's default.
GRIDS: dict[str, tuple[dict, ...]] = {
    "itemknn": ({"k": 100}, {"k": 10}, {"k": 30}, {"k": 300}, {"k": 1000}),
    "als": ({}, {"factors": 32}, {"factors": 128}, {"regularization": 1.0}, {"alpha": 10.0},
            {"factors": 128, "regularization": 1.0, "alpha": 10.0}),
    "lightgcn": ({}, {"epochs": 10}, {"epochs": 40}, {"lambda_reg": 1e-2}, {"dim": 32}),
    "segment_popularity": tuple({"days": d, "smoothing": m} for d in (28.0, 56.0, 112.0) for m in (100.0, 3000.0)),
}


def create(name: str, seed: int = 0, params: dict | None = None) -> Recommender:
    """A fresh, unfitted baseline by name (``core.recs.contract.BASELINES``); ``seed`` seeds the learned ones
    (those whose config has a ``seed``); ``params`` overrides fields of its config (see :data:`GRIDS`)."""
    if name not in _MODELS:
        raise ValueError(f"unknown baseline '{name}'; one of {', '.join(_MODELS)}")
    cls, config = _MODELS[name]
    params = dict(params or {})
    if config is None:
        if params:
            raise ValueError(f"baseline '{name}' has no settings; got {sorted(params)}")
        return cls()
    fields = {f.name for f in dataclasses.fields(config)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(f"baseline '{name}' has no setting {', '.join(unknown)}; it has {', '.join(sorted(fields))}")
    if "seed" in fields:
        params.setdefault("seed", seed)
    return cls(config(**params))
