"""The new-customer path: a model whose customers with no history are served by another recommender."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from core.progress import Progress
from core.recs.contract import POPULAR, RecData, Recommender


class NewCustomerFallback(Recommender):
    """A fitted model whose customers with no history are served by another fitted recommender
    (``fallback``: segment popularity, when the model's no-history lists did not beat it on the
    validation window; see :mod:`core.recs.evaluate`). Everything else is the model's: a customer with a
    history (known or liked) is scored by it, and its attributes and methods (``data_``,
    ``item_vectors``, ``customer_vectors``, ``product_vector``...) are reached through the wrapper.
    A no-history customer's products are explained as :data:`POPULAR`."""

    def __init__(self, model: Recommender, fallback: Recommender):
        self.model, self.fallback = model, fallback
        self.name, self.id_only = model.name, model.id_only

    def __getattr__(self, attr: str):
        if attr in ("model", "fallback") or attr.startswith("__"):  # not set yet (copy, unpickling)
            raise AttributeError(attr)
        return getattr(self.model, attr)

    def fit(self, data: RecData, progress: Progress | None = None) -> "NewCustomerFallback":
        self.model, self.fallback = self.model.fit(data, progress), self.fallback.fit(data, progress)
        return self

    def _split(self, lengths: Sequence[int], model_part: Callable[[list[int]], np.ndarray],
               fallback_part: Callable[[list[int]], np.ndarray]) -> np.ndarray:
        new = [i for i, n in enumerate(lengths) if n == 0]
        old = [i for i, n in enumerate(lengths) if n > 0]
        out = np.empty((len(lengths), self.data_.n_products), dtype=np.float32)
        if old:
            out[old] = model_part(old)
        if new:
            out[new] = fallback_part(new)
        return out

    def score(self, customer_ids: Sequence[str]) -> np.ndarray:
        ids = list(customer_ids)
        return self._split([len(self.data_.history(c)) for c in ids],
                           lambda rows: self.model.score([ids[i] for i in rows]),
                           lambda rows: self.fallback.score([ids[i] for i in rows]))

    def score_histories(self, histories, customer_ids=None) -> np.ndarray:
        ids = [None] * len(histories) if customer_ids is None else list(customer_ids)
        return self._split([len(h) for h in histories],
                           lambda rows: self.model.score_histories([histories[i] for i in rows],
                                                                   [ids[i] for i in rows]),
                           lambda rows: self.fallback.score_histories([histories[i] for i in rows],
                                                                      [ids[i] for i in rows]))

    def item_vectors(self) -> np.ndarray | None:
        return self.model.item_vectors()

    def explain(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        if len(history) == 0:
            return np.full(len(rows), POPULAR, dtype=np.int64)
        return self.model.explain(history, rows, customer_id)
