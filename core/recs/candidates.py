"""The ranking stage's candidates: per customer, the union of the top N of each retriever, with every retriever's
score of every candidate and its place in the lists that proposed it.

Sources (:data:`SOURCES`): the learned retrievers (two-tower, GraphSAGE), content similarity, other colours of
what the customer bought, what they bought (repurchase), recent bestsellers overall and in their segment (age
band), and new arrivals. All but repurchase are fitted recommenders (:data:`MODEL_SOURCES`, by their registry
names), fitted by the caller on the purchases before the window being predicted: nothing here reads a purchase
at or after a model's cutoff.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from core.recs.baselines.base import history_matrix, recency_weights
from core.recs.contract import RecData, Recommender, top_k

SOURCES = ("two_tower", "graphsage", "content", "two_tower_unsold", "graphsage_unsold", "content_unsold",
           "colour_variants", "repurchase", "recent_popularity", "segment_popularity", "new_arrivals")
UNSOLD = "_unsold"  # a source's proposals among the products nobody bought before the cutoff only (a quota of them)
MODEL_SOURCES = tuple(s for s in SOURCES if s != "repurchase")  # fitted recommenders (by registry name, less UNSOLD)
# Sources that propose only products related to the customer's own purchases (none for a customer without any).
HISTORY_SOURCES = ("colour_variants", "repurchase")
REPURCHASE_HALF_LIFE = 30.0  # days: a repurchase candidate's weight halves every month since it was bought


@dataclass(frozen=True)
class CandidateConfig:
    """Products each source proposes per customer (0: the source is off). The defaults give about 200 distinct
    candidates a customer; chosen by candidate recall on the validation window (README, "The ranking stage")."""
    two_tower: int = 50
    graphsage: int = 50
    content: int = 50
    # never-bought products are most of what is bought in a window and few of any list's top: a quota of them
    two_tower_unsold: int = 0
    graphsage_unsold: int = 0
    content_unsold: int = 0
    colour_variants: int = 20  # at most: only actual other colours of their purchases
    repurchase: int = 20  # at most: only products they bought
    recent_popularity: int = 30
    segment_popularity: int = 30
    new_arrivals: int = 20

    def sizes(self) -> dict[str, int]:
        """{source: N} in :data:`SOURCES` order, sources that are off left out."""
        return {s: int(getattr(self, s)) for s in SOURCES if getattr(self, s) > 0}

    def models(self) -> list[str]:
        """The fitted recommenders these sources need (registry names)."""
        return list(dict.fromkeys(model_of(s) for s in self.sizes() if s in MODEL_SOURCES))


def model_of(source: str) -> str:
    """The registry name of the recommender behind a source ("graphsage" for "graphsage_unsold")."""
    return source.removesuffix(UNSOLD)


@dataclass
class CustomerBatch:
    """Customers as the ranking stage reads them: each a history (product rows, oldest first; may be empty) with
    the purchases' ages (days before the cutoff) and prices, and, where known, an id (attributes)."""
    ids: list[str | None]
    histories: list[np.ndarray]  # int64 product rows, oldest first
    ages: list[np.ndarray]  # float32 days before the cutoff of each history entry (0: liked now)
    prices: list[np.ndarray]  # float32 price paid for each entry, NaN where unknown
    known: bool  # the histories are the customers' own training purchases (scored by id), not liked lists

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, at: Sequence[int]) -> "CustomerBatch":
        at = list(at)
        return CustomerBatch([self.ids[i] for i in at], [self.histories[i] for i in at],
                             [self.ages[i] for i in at], [self.prices[i] for i in at], self.known)


def known_customers(data: RecData, customer_ids: Sequence[str]) -> CustomerBatch:
    """Customers by id, each with their purchases before ``data``'s cutoff (none for an unknown id)."""
    prices = data.purchases["price"].to_numpy(np.float32) if "price" in data.purchases else \
        np.full(len(data.items), np.nan, np.float32)
    own = [data.purchases_of(c) for c in customer_ids]
    hists, ages, paid = [data.items[o] for o in own], [data.days_ago[o] for o in own], [prices[o] for o in own]
    return CustomerBatch(list(customer_ids), hists, ages, paid, known=True)


def liked_customers(histories: Sequence[np.ndarray], customer_ids: Sequence[str | None] | None = None
                    ) -> CustomerBatch:
    """Customers given as liked product rows (liked now: age 0, no price), with their ids where known."""
    hists = [np.asarray(h, dtype=np.int64).reshape(-1) for h in histories]
    ids = [None] * len(hists) if customer_ids is None else list(customer_ids)
    return CustomerBatch(ids, hists, [np.zeros(len(h), np.float32) for h in hists],
                         [np.full(len(h), np.nan, np.float32) for h in hists], known=False)


@dataclass
class Candidates:
    """The candidates of a batch of customers, as (customer, product) pairs grouped by customer in batch order,
    each customer's products in row order."""
    sources: tuple[str, ...]  # the sources, in the columns' order
    customer: np.ndarray  # (m,) int64 each pair's customer (position in the batch)
    product: np.ndarray  # (m,) int64 each pair's product row
    scores: np.ndarray  # (m, n_sources) float32 each source's score of the product for the customer
    ranks: np.ndarray  # (m, n_sources) float32 the product's place in the source's list (0 first), NaN: not proposed
    stops: np.ndarray  # (q + 1,) customer i's pairs are [stops[i], stops[i + 1])

    def __len__(self) -> int:
        return len(self.product)

    def proposed(self) -> np.ndarray:
        """(m, n_sources) bool: the source proposed the pair's product."""
        return ~np.isnan(self.ranks)

    def of(self, i: int) -> np.ndarray:
        """Customer ``i``'s candidate product rows."""
        return self.product[self.stops[i]:self.stops[i + 1]]


def source_scores(retrievers: Mapping[str, Recommender], source: str, customers: CustomerBatch) -> np.ndarray:
    """(q, n_products) float32 the source's score of every product for each customer; for colour variants and
    repurchase a weight that is 0 (and never proposed) for a product unrelated to their purchases."""
    n = _n_products(retrievers)
    if source.endswith(UNSOLD):
        return unsold_only(retrievers[model_of(source)], source_scores(retrievers, model_of(source), customers))
    if source == "repurchase":
        weights = [recency_weights(a, REPURCHASE_HALF_LIFE) for a in customers.ages]
        return history_matrix(customers.histories, n, weights).toarray()
    model = retrievers[source]
    if source == "colour_variants":
        out = np.zeros((len(customers), n), dtype=np.float32)
        live = [i for i, h in enumerate(customers.histories) if len(h)]
        if live:
            out[live] = model.variants([customers.histories[i] for i in live], [customers.ids[i] for i in live]
                                       if customers.known else [None] * len(live))
        return out
    if customers.known:
        return np.asarray(model.score(customers.ids), dtype=np.float32)
    return np.asarray(model.score_histories(customers.histories, customers.ids), dtype=np.float32)


def unsold_only(model: Recommender, scores: np.ndarray) -> np.ndarray:
    """``scores`` (q, n_products) with every product somebody bought before the model's cutoff at -inf."""
    return np.where(model.data_.popularity() == 0, scores, -np.inf).astype(np.float32)


def _n_products(retrievers: Mapping[str, Recommender]) -> int:
    return next(iter(retrievers.values())).data_.n_products


def propose(retrievers: Mapping[str, Recommender], customers: CustomerBatch, cfg: CandidateConfig) -> Candidates:
    """The batch's candidates: for each customer the union of each source's top N (``cfg``), with every source's
    score of each candidate. ``retrievers`` holds a fitted recommender for each of ``cfg.models()`` (at least
    one), all on the same data. Products a history source gives no weight are never its proposals."""
    sizes = cfg.sizes()
    sources = tuple(sizes)
    q = len(customers)
    full = {}
    for s in sources:  # an UNSOLD source reuses its model's scores
        base = model_of(s)
        if base not in full:
            full[base] = source_scores(retrievers, base, customers)
        if s != base:
            full[s] = unsold_only(retrievers[base], full[base])
    n = next(iter(full.values())).shape[1] if full else 0
    place = np.full((q, n), np.nan, dtype=np.float32)  # scratch: a source's places of the products, per customer
    proposed = np.zeros((q, n), dtype=bool)
    tops = {}
    for s in sources:
        rows, scores = top_k(full[s], sizes[s])
        if s in HISTORY_SOURCES:
            rows = np.where(scores > 0, rows, -1)
        elif s.endswith(UNSOLD):
            rows = np.where(np.isfinite(scores), rows, -1)
        tops[s] = rows
        for i in range(q):
            proposed[i, rows[i][rows[i] >= 0]] = True
    customer, product = np.nonzero(proposed)
    stops = np.searchsorted(customer, np.arange(q + 1))
    scores = np.stack([full[s][customer, product] for s in sources], axis=1) if sources else \
        np.zeros((len(product), 0), np.float32)
    scores[~np.isfinite(scores)] = np.nan  # an UNSOLD source has no score for a product somebody bought
    ranks = np.empty((len(product), len(sources)), dtype=np.float32)
    for j, s in enumerate(sources):
        place[:] = np.nan
        rows = tops[s]
        for i in range(q):
            kept = rows[i] >= 0
            place[i, rows[i][kept]] = np.flatnonzero(kept)
        ranks[:, j] = place[customer, product]
    return Candidates(sources, customer.astype(np.int64), product.astype(np.int64), scores.astype(np.float32),
                      ranks, stops.astype(np.int64))


@dataclass
class CandidateRecall:
    """How many of a window's purchases the candidates hold at all: the ranking stage can never recover the
    rest. Shares of the window's distinct (customer, product) purchases, overall and of never-bought products."""
    pairs: int  # distinct purchases in the window (of the customers asked)
    cold_pairs: int  # those of products nobody bought before the cutoff
    merged: float | None  # share in the merged candidates
    merged_cold: float | None
    per_source: dict[str, float | None]  # share in each source's top N
    per_source_cold: dict[str, float | None]
    top10: dict[str, float | None]  # share in each source's top 10 (a retriever's own list, as a model)
    top10_cold: dict[str, float | None]
    candidates_per_customer: float

    def best_top10(self) -> tuple[str | None, float]:
        """The source whose top 10 holds the most purchases, and that share."""
        given = {s: v for s, v in self.top10.items() if v is not None}
        if not given:
            return None, 0.0
        best = max(given, key=given.get)
        return best, given[best]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def candidate_recall(candidates: Candidates, truth: Sequence[np.ndarray], cold: np.ndarray) -> CandidateRecall:
    """Candidate recall of ``candidates`` against ``truth[i]``, customer i's distinct product rows bought in the
    window; ``cold`` (n_products,) bool marks the products nobody bought before the cutoff."""
    bought = np.zeros(len(candidates), dtype=bool)
    for i, t in enumerate(truth):
        lo, hi = candidates.stops[i], candidates.stops[i + 1]
        bought[lo:hi] = np.isin(candidates.product[lo:hi], t)
    pairs = int(sum(len(t) for t in truth))
    cold_pairs = int(sum(int(cold[t].sum()) for t in truth))
    is_cold = cold[candidates.product]
    share = lambda mask, total: float(mask.sum()) / total if total else None  # noqa: E731
    proposed = candidates.proposed()
    out = {"per_source": {}, "per_source_cold": {}, "top10": {}, "top10_cold": {}}
    for j, s in enumerate(candidates.sources):
        mine = proposed[:, j] & bought
        ten = mine & (candidates.ranks[:, j] < 10)
        out["per_source"][s], out["per_source_cold"][s] = share(mine, pairs), share(mine & is_cold, cold_pairs)
        out["top10"][s], out["top10_cold"][s] = share(ten, pairs), share(ten & is_cold, cold_pairs)
    q = len(truth)
    return CandidateRecall(pairs, cold_pairs, share(bought, pairs), share(bought & is_cold, cold_pairs),
                           out["per_source"], out["per_source_cold"], out["top10"], out["top10_cold"],
                           len(candidates) / q if q else 0.0)
