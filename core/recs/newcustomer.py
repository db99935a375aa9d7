"""The new-customer path: what a customer with no purchases is recommended (:func:`recommend_new`), and a model
whose customers with no history are served by another recommender (:class:`NewCustomerFallback`)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from core.progress import Progress
from core.recs.contract import POPULAR, REASONS, SAVES_STATE, SESSION, RecData, Recommender

NEW_CUSTOMER_SEEDS = 3  # products read as liked from a text or a photo, for models without a session mode


def session_mode(model: Recommender, liked: Sequence, query: np.ndarray | None) -> bool:
    """Whether a new customer is read by the model's session mode: a query (text or photo) and nothing liked,
    for a model that has one (:data:`~core.recs.contract.SESSION`)."""
    return query is not None and not len(liked) and model.supports(SESSION)


def recommend_new(model: Recommender, liked: Sequence[int], k: int, query: np.ndarray | None = None,
                  photo: bool = False, nearest: Callable[[np.ndarray], Sequence[int]] | None = None,
                  exclude_nearest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-k product rows (1, k) int64 and scores (1, k) float32 for a new customer given as liked product rows
    and/or a (d,) backbone vector of what they describe (``query``: a text's, or a photo's with ``photo``).

    A query alone is read by the model's session mode where it has one (:func:`session_mode`); otherwise it
    stands for the products ``nearest(query)`` gives (rows, e.g. the :data:`NEW_CUSTOMER_SEEDS` nearest in the
    hybrid space), read as liked. Liked products are not recommended back (nor, with ``exclude_nearest``,
    the products standing for the query)."""
    liked = np.asarray(liked, dtype=np.int64)
    if session_mode(model, liked, query):
        vector = model.session_vector(image=query) if photo else model.session_vector(text=query)
        return model.search(vector[None], k)
    history = liked
    if query is not None:
        history = np.concatenate([liked, np.asarray(nearest(query), dtype=np.int64)]).astype(np.int64)
    return model.recommend_histories([history], k, exclude=[history if exclude_nearest else liked])


class NewCustomerFallback(Recommender):
    """A fitted model whose customers with no history are served by another fitted recommender
    (``fallback``: segment popularity, when the model's no-history lists did not beat it on the
    validation window; see :mod:`core.recs.evaluate`). Everything else is the model's: a customer with a
    history (known or liked) is scored by it, and its attributes (``data_``...) and capabilities are
    reached through the wrapper (its saved state excepted: it would lose the fallback).
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

    def _served(self, ids: list[str]) -> list[tuple[np.ndarray, Recommender]]:
        """(positions in ``ids``, the recommender serving them): the model for customers with a history, the
        fallback for the others; only the non-empty parts."""
        new = np.asarray([not len(self.data_.history(c)) for c in ids], dtype=bool)
        return [(np.flatnonzero(part), model) for part, model in ((~new, self.model), (new, self.fallback))
                if part.any()]

    def recommend(self, customer_ids, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """The model's lists (from its index, where it has one) for customers with a history, the fallback's for
        the others."""
        ids = list(customer_ids)
        parts = [(at, model.recommend([ids[i] for i in at], k, [exclude[i] for i in at] if exclude is not None
                                      else None)) for at, model in self._served(ids)]
        if len(parts) < 2:
            return parts[0][1] if parts else self.model.recommend(ids, k, exclude)
        width = min(rows.shape[1] for _, (rows, _) in parts)  # the same, unless one catalogue runs out first
        out_rows, out_scores = np.empty((len(ids), width), np.int64), np.empty((len(ids), width), np.float32)
        for at, (rows, scores) in parts:
            out_rows[at], out_scores[at] = rows[:, :width], scores[:, :width]
        return out_rows, out_scores

    def score_pairs(self, customer_ids, rows) -> np.ndarray:
        """The model's scores of the pairs of customers with a history, the fallback's of the others'."""
        ids, rows = list(customer_ids), np.asarray(rows, dtype=np.int64)
        out = np.empty(rows.shape, np.float32)
        for at, model in self._served(ids):
            out[at] = model.score_pairs([ids[i] for i in at], rows[at])
        return out

    def item_vectors(self) -> np.ndarray | None:
        return self.model.item_vectors()

    def explain(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        if len(history) == 0:
            return np.full(len(rows), POPULAR, dtype=np.int64)
        return self.model.explain(history, rows, customer_id)

    def reasons_for(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None) -> list[str]:
        if not self.model.supports(REASONS):
            raise self._unsupported(REASONS)
        if len(history) == 0:
            return [f"served by {self.fallback.name.replace('_', ' ')} (no history)"] * len(rows)
        return self.model.reasons_for(history, rows, customer_id)

    # The capabilities are the model's, delegated one by one: Recommender defines each method, so
    # __getattr__ never reaches them.
    @property
    def capabilities(self) -> frozenset[str]:
        return self.model.capabilities - {SAVES_STATE}

    def customer_vectors(self) -> np.ndarray:
        return self.model.customer_vectors()

    def query_vectors(self, customer_ids) -> np.ndarray:
        """The model's vectors of customers with a history; a customer without one is the fallback's, which has
        no vector (ValueError)."""
        new = [c for c in customer_ids if not len(self.data_.history(c))]
        if new:
            raise ValueError(f"{len(new)} customer(s) without a history (e.g. {new[0]}) are served by "
                             f"{self.fallback.name}, which scores without vectors")
        return self.model.query_vectors(customer_ids)

    def product_vector(self, image, text, attributes=None, has_image=True, hide_row=None) -> np.ndarray:
        return self.model.product_vector(image, text, attributes, has_image, hide_row)

    def add_product(self, product_id, image, text, attributes=None, has_image=True) -> int:
        return self.model.add_product(product_id, image, text, attributes, has_image)

    def session_vector(self, image=None, text=None) -> np.ndarray:
        return self.model.session_vector(image=image, text=text)

    def search(self, vectors, k, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        return self.model.search(vectors, k, exclude)
