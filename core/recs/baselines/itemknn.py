"""The item kNN baseline: item-item cosine similarity over customer x product purchase counts."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from core.recs.baselines.base import Baseline, customer_products, history_matrix


@dataclass(frozen=True)
class KnnConfig:
    k: int = 100  # neighbours kept per product: the usual default for item kNN


class ItemKNN(Baseline):
    """Item-item cosine kNN (``implicit``'s CosineRecommender) over customer x product counts: a
    product's score is the summed similarity to the products in the history."""
    name = "itemknn"
    id_only = True

    def __init__(self, cfg: KnnConfig = KnnConfig()):
        self.cfg = cfg

    def _fit(self, data, progress):
        from implicit.nearest_neighbours import CosineRecommender
        from implicit.utils import ParameterWarning
        knn = CosineRecommender(K=self.cfg.k)
        with warnings.catch_warnings():  # implicit hands itself a COO matrix and warns about it
            warnings.simplefilter("ignore", ParameterWarning)
            knn.fit(customer_products(data), show_progress=False)
        # (n_products, n_products) float32 CSR; row i holds product i's k nearest neighbours
        self.similarity_ = knn.similarity.astype(np.float32)

    def _score(self, histories, customer_ids):
        return (history_matrix(histories, self.data_.n_products) @ self.similarity_).toarray()
