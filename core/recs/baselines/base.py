"""What every baseline recommender shares: the :class:`Baseline` flow and the score helpers it and they use."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from core.progress import Progress
from core.recs.contract import RecData, Recommender

TIE_BREAK = 1e-4  # weight of the popularity prior in every score: far below real score differences


def popularity_prior(counts: np.ndarray) -> np.ndarray:
    """(n_products,) float32 in [0, 1): counts / (max + 1), the same order as the counts."""
    counts = np.asarray(counts, dtype=np.float32)
    return counts / (float(counts.max(initial=0.0)) + 1.0)


def history_matrix(histories: Sequence[np.ndarray], n_products: int,
                   weights: Sequence[np.ndarray] | None = None) -> sp.csr_matrix:
    """(q, n_products) float32 CSR: row i sums ``weights[i]`` (default 1 per entry, so repeats count)
    over the product rows of ``histories[i]``."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories)), lengths)
    cols = np.concatenate([np.empty(0, np.int64)] + [np.asarray(h, dtype=np.int64) for h in histories])
    vals = np.ones(len(cols), dtype=np.float32) if weights is None else \
        np.concatenate([np.empty(0, np.float32)] + [np.asarray(w, dtype=np.float32) for w in weights])
    return sp.csr_matrix((vals, (rows, cols)), shape=(len(histories), n_products), dtype=np.float32)


def ordered_scores(*keys: np.ndarray) -> np.ndarray:
    """(n,) float32 scores in (0, 1] that order n products by ``keys`` ((n,) arrays each, higher first),
    the first key deciding, each next one breaking the previous one's ties, the lower row first after
    that. Exact whatever the keys' scales, which adding a small tie-breaking term is not."""
    n = len(keys[0])
    order = np.lexsort((np.arange(n),) + tuple(-np.asarray(k, dtype=np.float64) for k in reversed(keys)))
    scores = np.empty(n, dtype=np.float32)
    scores[order] = (n - np.arange(n, dtype=np.float64)) / max(n, 1)
    return scores


def recency_weights(days_ago: np.ndarray, half_life_days: float) -> np.ndarray:
    """(n,) float32: 1 for a purchase made at the cutoff, halving every ``half_life_days``."""
    return np.power(0.5, np.asarray(days_ago, dtype=np.float32) / half_life_days).astype(np.float32)


def customer_products(data: RecData) -> sp.csr_matrix:
    """(n_customers, n_products) float32 CSR purchase counts before the cutoff."""
    return sp.csr_matrix((np.ones(len(data.items), dtype=np.float32), (data.users, data.items)),
                         shape=(len(data.customer_ids), data.n_products), dtype=np.float32)


class Baseline(Recommender):
    """The shared flow: :meth:`fit` keeps the data, the popularity fallback and each customer's
    purchases, then calls the model's ``_fit``; :meth:`score_histories` fills new customers with the
    fallback, scores the others with the model's ``_score`` and keeps ID-only models honest.

    Attributes after fit: ``data_``; ``prior_`` (n_products,) float32 popularity prior;
    ``fallback_`` (n_products,) float32 scores of a new customer; ``bought_`` (n_products,) bool,
    bought before the cutoff; ``ready_`` whether there is anything to learn from.

    What every baseline does the same way:

    - **New customers.** A customer with no history (a new customer, or an id not in the data) is scored
      by all-time popularity before the cutoff (recent popularity for ``recent_popularity``, their
      segment's recent popularity for ``segment_popularity``, the newest products for ``new_arrivals``).
    - **Ties.** Every score gets a tiny popularity prior (``TIE_BREAK`` times counts / (max + 1)), so
      products a model cannot tell apart (e.g. never co-bought with anything of the customer's) come in
      popularity order, without reordering the model's own differences.
    - **ID-only models** (``itemknn``, ``als``, ``lightgcn``; ``id_only = True``) learn from purchase ids
      alone, so they know nothing about a product nobody bought before the cutoff: such products are
      always scored below every product somebody bought (they tie at the bottom, in row order), and
      are dropped from a liked list (a liked list of only such products is a new customer).
    - **No training purchases at all.** Nothing to learn: ID-only models score every product 0,
      popularity models score 0, and content and colour variants still work from a liked list.
    - **Recency.** A known customer's training history carries the purchases' ages (days before the
      cutoff); a liked list given to :meth:`~Baseline.score_histories` is liked now (age 0).
    """

    def fit(self, data: RecData, progress: Progress | None = None) -> "Baseline":
        self._prepare(data)
        if self.ready_:
            self._fit(data, progress)
        if progress is not None:
            progress(self.name, 1, 1)
        return self

    def _prepare(self, data: RecData) -> None:
        self.data_ = data
        counts = data.popularity()
        self.bought_ = counts > 0
        self.prior_ = popularity_prior(counts)
        self.fallback_ = self._fallback(data)
        self.ready_ = bool(self.bought_.any()) or not self.id_only
        # purchases of customer row r, oldest first: order_[starts_[r]:starts_[r + 1]]
        self.order_ = np.argsort(data.users, kind="stable")
        self.starts_ = np.searchsorted(data.users[self.order_], np.arange(len(data.customer_ids) + 1))

    def _fallback(self, data: RecData) -> np.ndarray:
        return self.prior_

    def _fit(self, data: RecData, progress: Progress | None) -> None:
        """Learn from ``data`` (only called when there is something to learn from)."""

    def _score(self, histories: list[np.ndarray], customer_ids: list[str | None]) -> np.ndarray:
        """(q, n_products) float32 scores for non-empty histories."""
        raise NotImplementedError

    def _training_row(self, history: np.ndarray, customer_id: str | None) -> int | None:
        """The customer's row when ``history`` is exactly their training history, else None."""
        row = self.data_.customer_row.get(customer_id) if customer_id is not None else None
        if row is None:
            return None
        own = self.data_.items[self.order_[self.starts_[row]:self.starts_[row + 1]]]
        return row if np.array_equal(own, history) else None

    def _ages(self, history: np.ndarray, customer_id: str | None) -> np.ndarray:
        """(len(history),) float32 days before the cutoff: the purchases' own for a training
        history, 0 (liked now) for a liked list."""
        row = self._training_row(history, customer_id)
        if row is None:
            return np.zeros(len(history), dtype=np.float32)
        return self.data_.days_ago[self.order_[self.starts_[row]:self.starts_[row + 1]]]

    def score_histories(self, histories: Sequence[np.ndarray],
                        customer_ids: Sequence[str | None] | None = None) -> np.ndarray:
        """(q, n_products) float32 scores, higher is better, for q histories of product rows
        (oldest first; may be empty) with, where known, the customer's id."""
        ids = [None] * len(histories) if customer_ids is None else list(customer_ids)
        hists = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
        if self.id_only:
            hists = [h[self.bought_[h]] for h in hists]
        scores = np.tile(self.fallback_, (len(hists), 1))
        live = np.flatnonzero([len(h) > 0 for h in hists]) if self.ready_ else np.empty(0, dtype=np.int64)
        if len(live):
            scores[live] = self._score([hists[i] for i in live], [ids[i] for i in live]) + TIE_BREAK * self.prior_
        if self.id_only and self.bought_.any() and not self.bought_.all():
            scores[:, ~self.bought_] = scores[:, self.bought_].min(axis=1, keepdims=True) - 1.0
        return scores.astype(np.float32, copy=False)
