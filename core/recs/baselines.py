"""Baseline recommenders: popularity, recent popularity, segment popularity, new arrivals, colour
variants, item kNN, ALS, LightGCN and content similarity, all behind :class:`core.recs.contract.Recommender`
(``create(name, seed, params)``; :data:`GRIDS` are the settings the evaluation tries on its validation
window).

What every baseline does the same way (:class:`Baseline`):

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
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.embeddings.backbone import l2_normalise
from core.recs.contract import SAVES_STATE, RecData, Recommender
from core.progress import Progress

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


class Baseline(Recommender):
    """The shared flow: :meth:`fit` keeps the data, the popularity fallback and each customer's
    purchases, then calls the model's ``_fit``; :meth:`score_histories` fills new customers with the
    fallback, scores the others with the model's ``_score`` and keeps ID-only models honest.

    Attributes after fit: ``data_``; ``prior_`` (n_products,) float32 popularity prior;
    ``fallback_`` (n_products,) float32 scores of a new customer; ``bought_`` (n_products,) bool,
    bought before the cutoff; ``ready_`` whether there is anything to learn from.
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


# ---------------------------------------------------------------- popularity

class Popularity(Baseline):
    """All-time purchase counts before the cutoff, the same for every customer."""
    name = "popularity"

    def score_histories(self, histories, customer_ids=None):
        return np.tile(self.fallback_, (len(histories), 1))


@dataclass(frozen=True)
class RecentConfig:
    days: float = 28.0  # the last four weeks: fashion sells by season


class RecentPopularity(Popularity):
    """Purchase counts over the last ``days`` before the cutoff, ties broken by all-time counts."""
    name = "recent_popularity"

    def __init__(self, cfg: RecentConfig = RecentConfig()):
        self.cfg = cfg

    def _fallback(self, data):
        return data.popularity(self.cfg.days) + self.prior_  # prior < 1: only breaks ties of whole counts


# ---------------------------------------------------------------- segment popularity

def customer_attribute_kinds(customers: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(numeric, categorical) customer columns, by the rules of :func:`core.recs.graph.feature_spec`: ids and
    hashed postcodes skipped; numeric when every given value is a number and there are more than two
    distinct ones; categorical when there are 2..50 distinct values (missing counting as one)."""
    numeric, categorical = [], []
    for col in customers.columns:
        if col == "postal_code" or col.endswith("_id"):  # hashed ids: nothing a new customer would share
            continue
        raw = customers[col].fillna("").astype(str).str.strip()
        given = raw[raw != ""]
        if len(given) and pd.to_numeric(given, errors="coerce").notna().all() and given.nunique() > 2:
            numeric.append(col)
        elif 1 < raw.nunique() <= 50:
            categorical.append(col)
    return numeric, categorical


def attribute_bands(values: pd.Series, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bands of a numeric attribute: (edges (<= bands - 1,) float64, interior cut points of the
    given values' quantiles, and codes (n,) int64, 0..len(edges) the band of each value, -1 missing)."""
    numbers = pd.to_numeric(values.fillna("").astype(str).str.strip(), errors="coerce").to_numpy(np.float64)
    given = numbers[~np.isnan(numbers)]
    edges = np.unique(np.quantile(given, np.linspace(0, 1, bands + 1)[1:-1])) if len(given) else np.empty(0)
    codes = np.where(np.isnan(numbers), -1, np.searchsorted(edges, numbers, side="right"))
    return edges, codes.astype(np.int64)


@dataclass(frozen=True)
class SegmentConfig:
    days: float = 28.0  # the last weeks whose purchases count
    # pseudo-purchases of overall recent popularity mixed into every segment: a segment with far fewer
    # recent purchases than this is mostly the overall list, one with far more mostly its own (an H&M
    # sample band has ~200 purchases in 4 weeks; below ~300 the smoothing only breaks the segment's ties)
    smoothing: float = 100.0
    bands: int = 5  # quantile bands of the numeric attribute (about 20% of the customers each)
    numeric: str = "auto"  # the numeric attribute cut into bands; "auto": the first one, "": none
    categorical: str = ""  # a categorical attribute crossed with the bands; "": none


class SegmentPopularity(Baseline):
    """What customers of the same segment bought in the last ``days`` before the cutoff, shrunk toward
    everyone's recent purchases: product i scores (c_s(i) + m p(i)) / (n_s + m) for a customer of
    segment s, where c_s counts the segment's purchases of i in the window, n_s all of them, p(i) is i's
    share of everyone's purchases in the window and m is ``smoothing``; ties go to all-time popularity.

    A segment is a band of a numeric customer attribute (age, for H&M), optionally crossed with a
    categorical one, with "missing" a value of its own; which columns are numeric or categorical is
    detected from the data (:func:`customer_attribute_kinds`). Every customer is scored by their
    segment, whatever they bought; a customer with none of those attributes (or an id not in the
    customers table) gets overall recent popularity. Scores order products (:func:`ordered_scores`).

    After fit: ``columns_`` the attributes used, ``segment_`` (n_customers,) int64 each customer row's
    segment (-1: none), ``segment_scores_`` (n_segments, n_products) float32.
    """
    name = "segment_popularity"

    def __init__(self, cfg: SegmentConfig = SegmentConfig()):
        self.cfg = cfg

    def _fallback(self, data):
        recent = data.popularity(self.cfg.days)
        return ordered_scores(recent, data.popularity())

    def _columns(self, customers: pd.DataFrame) -> tuple[str, str]:
        numeric, categorical = customer_attribute_kinds(customers)
        num = (numeric[0] if numeric else "") if self.cfg.numeric == "auto" else self.cfg.numeric
        cat = self.cfg.categorical
        for col in (num, cat):
            if col and col not in customers:
                raise ValueError(f"no customer attribute '{col}'; the customers table has {list(customers.columns)}")
        return num, cat

    def _fit(self, data, progress):
        num, cat = self._columns(data.customers)
        self.columns_ = tuple(c for c in (num, cat) if c)
        attrs = data.customers.reindex(pd.Index(data.customer_ids))  # ids only in the purchases: all missing
        n = len(data.customer_ids)
        band = attribute_bands(attrs[num], self.cfg.bands)[1] if num else np.full(n, -1)
        given = attrs[cat].fillna("").astype(str).str.strip() if cat else pd.Series("", index=attrs.index)
        level = pd.Series(pd.Categorical(given.where(given != "", "(missing)"))).cat.codes.to_numpy(np.int64)
        known = (band >= 0) | (given.to_numpy() != "")
        keys = pd.MultiIndex.from_arrays([band, level if cat else np.zeros(n, np.int64)])
        self.segment_ = np.full(n, -1, dtype=np.int64)
        self.segment_[known] = pd.factorize(keys[known])[0]
        n_segments = int(self.segment_.max(initial=-1)) + 1
        recent = data.days_ago <= self.cfg.days
        segment_of_purchase = self.segment_[data.users[recent]]
        mine = segment_of_purchase >= 0
        counts = np.zeros((n_segments, data.n_products), dtype=np.float64)
        np.add.at(counts, (segment_of_purchase[mine], data.items[recent][mine]), 1.0)
        overall = data.popularity(self.cfg.days).astype(np.float64)
        share = overall / max(overall.sum(), 1.0)
        m = self.cfg.smoothing
        smoothed = (counts + m * share) / (counts.sum(axis=1, keepdims=True) + m)
        all_time = data.popularity()
        self.segment_scores_ = np.stack([ordered_scores(s, overall, all_time) for s in smoothed]) \
            if n_segments else np.empty((0, data.n_products), np.float32)

    def segments(self, customer_ids: Sequence[str | None]) -> np.ndarray:
        """(q,) int64 each customer's segment (a row of ``segment_scores_``), -1 for overall popularity."""
        rows = [self.data_.customer_row.get(c) if c is not None else None for c in customer_ids]
        return np.array([-1 if r is None else self.segment_[r] for r in rows], dtype=np.int64)

    def score_histories(self, histories, customer_ids=None):
        ids = [None] * len(histories) if customer_ids is None else list(customer_ids)
        scores = np.tile(self.fallback_, (len(ids), 1))
        segment = self.segments(ids)
        scores[segment >= 0] = self.segment_scores_[segment[segment >= 0]]
        return scores


# ---------------------------------------------------------------- new arrivals

def launch_date_column(products: pd.DataFrame) -> str | None:
    """The first product attribute that reads as a date (a launch or introduction date): at least 90% of
    its given values parse as ISO-like dates and hold a date separator, so codes and numbers never
    count. None when the catalogue has no such column."""
    for col in products.columns:
        if col in ("image_path", "description", "sentence", "title"):
            continue
        raw = products[col].fillna("").astype(str).str.strip()
        given = raw[raw != ""]
        if not len(given) or not given.str.contains(r"^\d{4}[-/]\d{1,2}[-/]\d{1,2}", regex=True).mean() >= 0.9:
            continue
        if pd.to_datetime(given, errors="coerce", format="mixed").notna().mean() >= 0.9:
            return col
    return None


class NewArrivals(Baseline):
    """The most recently introduced products first, the same list for every customer.

    "Introduced" is the catalogue's launch date when it has a date-like product attribute
    (:func:`launch_date_column`); products launched on or before the cutoff come newest first, and
    products with no date or a launch date after the cutoff (not on sale yet) come after them.
    Otherwise it is the product's first purchase before the cutoff, newest first; a product never
    bought before the cutoff has shown no sign of being on sale, so never-bought products come after
    every bought one, in catalogue row order. Ties (the same day) go to the more bought product.

    After fit: ``launch_column_`` (None when first purchases were used).
    """
    name = "new_arrivals"

    def _fallback(self, data):
        self.launch_column_ = launch_date_column(data.products)
        if self.launch_column_ is not None:
            launched = pd.to_datetime(data.products[self.launch_column_].fillna("").astype(str).str.strip(),
                                      errors="coerce", format="mixed")
            days = ((data.cutoff - launched).dt.total_seconds() / 86400.0).to_numpy(np.float64)
            known = ~np.isnan(days) & (days >= 0)
        else:
            days = np.full(data.n_products, -np.inf)
            np.maximum.at(days, data.items, data.days_ago.astype(np.float64))  # the first purchase's age
            known = np.isfinite(days)
        newness = np.where(known, -np.where(known, days, 0.0), -np.inf)  # higher: newer; unknown last
        return ordered_scores(newness, data.popularity())

    def score_histories(self, histories, customer_ids=None):
        return np.tile(self.fallback_, (len(histories), 1))


# ---------------------------------------------------------------- colour variants

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

    def _score(self, histories, customer_ids):
        weights = [recency_weights(self._ages(h, c), self.cfg.half_life_days)
                   for h, c in zip(histories, customer_ids)]
        own = history_matrix(histories, self.data_.n_products, weights)
        # weight of the customer's purchases of *other* products in each product's group
        variant = ((own @ self.groups_) @ self.groups_.T - own).toarray()
        top = np.maximum(variant.max(axis=1, keepdims=True), 1e-12)
        return np.where(variant > 1e-9 * top, 2.0 + variant / top, self.prior_).astype(np.float32)


# ---------------------------------------------------------------- item kNN

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
            knn.fit(_customer_products(data), show_progress=False)
        # (n_products, n_products) float32 CSR; row i holds product i's k nearest neighbours
        self.similarity_ = knn.similarity.astype(np.float32)

    def _score(self, histories, customer_ids):
        return (history_matrix(histories, self.data_.n_products) @ self.similarity_).toarray()


def _customer_products(data: RecData) -> sp.csr_matrix:
    """(n_customers, n_products) float32 CSR purchase counts before the cutoff."""
    return sp.csr_matrix((np.ones(len(data.items), dtype=np.float32), (data.users, data.items)),
                         shape=(len(data.customer_ids), data.n_products), dtype=np.float32)


# ---------------------------------------------------------------- ALS

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
            self.model_.fit(_customer_products(data), show_progress=False)

    def _score(self, histories, customer_ids):
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, "blas"):
            users = self.model_.recalculate_user(np.arange(len(histories)),
                                                 history_matrix(histories, self.data_.n_products))
        return users @ self.model_.item_factors.T

    def item_vectors(self) -> np.ndarray | None:
        return l2_normalise(self.model_.item_factors) if self.ready_ else None


# ---------------------------------------------------------------- LightGCN

@dataclass(frozen=True)
class LightGCNConfig:
    dim: int = 64
    layers: int = 2
    # a fixed budget, ~20 s of one CPU thread for the H&M sample before 2020-04-01 (~21k distinct
    # purchases); sanity-checked on a validation window (train before 2020-01-01, validate Jan-Mar
    # 2020), never on the test window: 30 epochs were within seed noise of 20
    epochs: int = 20
    batch_size: int = 2048
    lr: float = 0.005
    lambda_reg: float = 1e-4  # PyG's default L2 weight on the batch's layer-0 embeddings
    seed: int = 0


class LightGCN(Baseline):
    """PyG's LightGCN (He et al. 2020) on the bipartite customer-product graph of training purchases,
    trained with its BPR loss against negatives drawn uniformly from all products. A known customer
    with their training history is scored by their own embedding; any other history (a liked list) by
    the mean of its products' embeddings.

    After fit: ``user_`` (n_customers, dim) and ``item_`` (n_products, dim) float32 final embeddings.
    """
    name = "lightgcn"
    capabilities = frozenset({SAVES_STATE})
    id_only = True

    def __init__(self, cfg: LightGCNConfig = LightGCNConfig()):
        self.cfg = cfg

    def _fit(self, data, progress):
        report = None if progress is None else (lambda done, total: progress(self.name, done, total))
        self.user_, self.item_ = train_lightgcn(data.users, data.items, len(data.customer_ids), data.n_products,
                                                self.cfg, report)

    def _score(self, histories, customer_ids):
        rows = [self._training_row(h, c) for h, c in zip(histories, customer_ids)]
        means = history_matrix(histories, self.data_.n_products,
                               [np.full(len(h), 1.0 / len(h)) for h in histories]) @ self.item_
        vectors = np.array([self.user_[r] if r is not None else m for r, m in zip(rows, means)],
                           dtype=np.float32).reshape(len(histories), -1)
        return vectors @ self.item_.T

    def item_vectors(self) -> np.ndarray | None:
        return l2_normalise(self.item_) if self.ready_ else None

    # trained state, for core.recs.contract.fitted's artefact cache
    def cache_config(self) -> dict:
        return {"model": self.name, **asdict(self.cfg)}

    def state_arrays(self) -> dict[str, np.ndarray]:
        if not self.ready_:  # nothing was trained
            return {"user": np.empty((0, self.cfg.dim), np.float32), "item": np.empty((0, self.cfg.dim), np.float32)}
        return {"user": self.user_, "item": self.item_}

    def load_state(self, data: RecData, state: dict[str, np.ndarray]) -> "LightGCN":
        self._prepare(data)
        self.user_, self.item_ = np.asarray(state["user"], np.float32), np.asarray(state["item"], np.float32)
        return self


def train_lightgcn(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
                   cfg: LightGCNConfig = LightGCNConfig(),
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Final LightGCN embeddings, (n_users, dim) and (n_items, dim) float32, of the bipartite graph of
    (user, item) purchase pairs ((n_purchases,) int64 rows each; repeats count once), trained for
    ``cfg.epochs`` with BPR against uniformly sampled negative items; ``progress(epoch, epochs)``."""
    import torch
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    pairs = np.unique(np.stack([users, items], axis=1), axis=0)
    user_nodes, item_nodes = torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1] + n_users)
    edge_index = torch.stack([torch.cat([user_nodes, item_nodes]), torch.cat([item_nodes, user_nodes])])
    # LightGCN's symmetric normalisation, computed once rather than by every layer of every step
    edge_index, edge_weight = gcn_norm(edge_index, None, n_users + n_items, add_self_loops=False)
    threads = torch.get_num_threads()
    # one intra-op thread: the graph is small, and spinning thread pools thrash a shared 2-core CPU
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = PygLightGCN(n_users + n_items, cfg.dim, cfg.layers, normalize=False)
            optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            for epoch in range(cfg.epochs):
                for batch in torch.randperm(len(pairs)).split(cfg.batch_size):
                    u, pos = user_nodes[batch], item_nodes[batch]
                    neg = torch.randint(0, n_items, (len(batch),)) + n_users
                    emb = model.get_embedding(edge_index, edge_weight)
                    loss = model.recommendation_loss((emb[u] * emb[pos]).sum(-1), (emb[u] * emb[neg]).sum(-1),
                                                     node_id=torch.cat([u, pos, neg]), lambda_reg=cfg.lambda_reg)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                if progress is not None:
                    progress(epoch + 1, cfg.epochs)
            with torch.no_grad():
                emb = model.get_embedding(edge_index, edge_weight).numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)
    return emb[:n_users], emb[n_users:]


# ---------------------------------------------------------------- content

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


# ---------------------------------------------------------------- registry

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
