"""The content baseline: cosine between products' content vectors and the customer's recent-taste profile."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.embeddings.backbone import l2_normalise
from core.recs.baselines.base import Baseline, history_matrix, recency_weights


@dataclass(frozen=True)
class ContentConfig:
    last_n: int = 10  # the customer's latest purchases make their current taste
    half_life_days: float = 30.0  # a purchase's weight halves every month


class Content(Baseline):
    """Cosine between every product's hybrid content vector (photo and sentence) and the customer's
    profile: the recency-weighted mean of their last ``last_n`` purchases' vectors. Needs no
    purchases by anyone, so it ranks never-bought products as readily as bought ones."""
    name = "content"

    def __init__(self, cfg: ContentConfig = ContentConfig()):
        self.cfg = cfg

    def _fit(self, data, progress):
        self.vectors_ = np.ascontiguousarray(data.hybrid, dtype=np.float32)  # (n_products, d) rows L2-normalised

    def _score(self, histories, customer_ids):
        n = self.cfg.last_n
        weights = [recency_weights(self._ages(h, c)[-n:], self.cfg.half_life_days)
                   for h, c in zip(histories, customer_ids)]
        latest = history_matrix([h[-n:] for h in histories], self.data_.n_products, weights)
        profile = l2_normalise(latest @ self.vectors_)  # (q, d)
        return profile @ self.vectors_.T

    def item_vectors(self) -> np.ndarray | None:
        return self.vectors_
