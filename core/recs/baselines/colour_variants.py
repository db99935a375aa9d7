"""The colour-variants baseline: other colours (same ``group_id``) of what the customer bought."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from core.recs.baselines.base import Baseline, history_matrix, recency_weights


@dataclass(frozen=True)
class VariantsConfig:
    half_life_days: float = 30.0  # a purchase's weight halves every month: recent purchases lead


class ColourVariants(Baseline):
    """Other colour variants (same ``group_id``) of the customer's products, weighted by how often and
    how recently they bought them, then everything else by popularity. A product without a
    ``group_id`` is a group of its own."""
    name = "colour_variants"

    def __init__(self, cfg: VariantsConfig = VariantsConfig()):
        self.cfg = cfg

    def _fit(self, data, progress):
        own_group = "product:" + data.products.index.to_series().astype(str)  # no group: a group of its own
        groups = data.products.get("group_id", own_group).fillna("").astype(str)
        codes = groups.where(groups != "", own_group).factorize()[0]
        # (n_products, n_groups) one-hot membership
        self.groups_ = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (np.arange(len(codes)), codes)))

    def variants(self, histories, customer_ids) -> np.ndarray:
        """(q, n_products) float32: each product's weight as another colour of the customer's purchases (the
        recency-weighted purchases of other products of its group), 0 for a product of no group they bought from.
        Histories as :meth:`score_histories` takes them, non-empty; the model must be fitted on purchases."""
        weights = [recency_weights(self._ages(h, c), self.cfg.half_life_days)
                   for h, c in zip(histories, customer_ids)]
        own = history_matrix(histories, self.data_.n_products, weights)
        # weight of the customer's purchases of *other* products in each product's group
        return np.maximum(((own @ self.groups_) @ self.groups_.T - own).toarray(), 0.0).astype(np.float32)

    def _score(self, histories, customer_ids):
        variant = self.variants(histories, customer_ids)
        top = np.maximum(variant.max(axis=1, keepdims=True), 1e-12)
        return np.where(variant > 1e-9 * top, 2.0 + variant / top, self.prior_).astype(np.float32)
