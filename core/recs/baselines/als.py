"""The ALS baseline: implicit-feedback matrix factorisation of the customer x product purchases."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.embeddings.backbone import l2_normalise
from core.recs.baselines.base import Baseline, customer_products, history_matrix


@dataclass(frozen=True)
class AlsConfig:
    factors: int = 64
    regularization: float = 0.05  # a little above implicit's 0.01: most products are bought once
    alpha: float = 1.0  # confidence 1 + alpha * count, implicit's default
    iterations: int = 15  # implicit's default
    seed: int = 0


class ALS(Baseline):
    """Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008; ``implicit``'s
    AlternatingLeastSquares). Any history, known or liked, gets its customer factors by one exact
    least-squares step against the item factors (``recalculate_user``)."""
    name = "als"
    id_only = True

    def __init__(self, cfg: AlsConfig = AlsConfig()):
        self.cfg = cfg

    def _fit(self, data, progress):
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, "blas"):  # implicit runs its own threads; a BLAS pool on top thrashes
            self.model_ = AlternatingLeastSquares(
                factors=self.cfg.factors, regularization=self.cfg.regularization, alpha=self.cfg.alpha,
                iterations=self.cfg.iterations, random_state=self.cfg.seed)
            self.model_.fit(customer_products(data), show_progress=False)

    def _score(self, histories, customer_ids):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, "blas"):
            users = self.model_.recalculate_user(np.arange(len(histories)),
                                                 history_matrix(histories, self.data_.n_products))
        return users @ self.model_.item_factors.T

    def item_vectors(self) -> np.ndarray | None:
        return l2_normalise(self.model_.item_factors) if self.ready_ else None
