"""Reciprocal-rank fusion: several fitted recommenders as one."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from core.progress import Progress
from core.recs.contract import RecData, Recommender


def reciprocal_ranks(scores: np.ndarray, k: float = 60.0) -> np.ndarray:
    """(q, n) float32 1 / (k + rank) of every product in each row's ranking of ``scores`` (q, n), rank 1
    the best (ties by product row, as :func:`top_k`): the reciprocal-rank fusion terms (Cormack et al.,
    SIGIR 2009; k = 60 is theirs)."""
    scores = np.nan_to_num(np.asarray(scores, dtype=np.float32), nan=-np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
    return (1.0 / (k + ranks)).astype(np.float32)


class RankFusion(Recommender):
    """Reciprocal-rank fusion of fitted recommenders: a product's score is the sum over the models of
    1 / (k + its rank in that model's list over the whole catalogue). It declares no capability: a sum of
    ranks is no inner product of customer and item vectors, and its parts are saved each on its own."""

    def __init__(self, name: str, models: Sequence[Recommender], k: float = 60.0):
        self.name, self.models, self.k = name, list(models), k

    def fit(self, data: RecData, progress: Progress | None = None) -> "RankFusion":
        self.models = [m.fit(data, progress) for m in self.models]
        self.data_ = data
        return self

    def _fuse(self, each: list[np.ndarray]) -> np.ndarray:
        return np.sum([reciprocal_ranks(s, self.k) for s in each], axis=0)

    def score(self, customer_ids: Sequence[str]) -> np.ndarray:
        return self._fuse([m.score(customer_ids) for m in self.models])

    def score_histories(self, histories, customer_ids=None) -> np.ndarray:
        return self._fuse([m.score_histories(histories, customer_ids) for m in self.models])
