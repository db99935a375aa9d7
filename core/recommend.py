"""The recommenders' shared contract: what they learn from (:class:`RecData`), how they score
(:class:`Recommender`), their registry, and top-k over the whole catalogue.

Every recommender ranks every product of the catalogue (the candidates), bought or not. A
customer is a history of product rows plus their attributes: a known customer's history is their
purchases before the cutoff, a new one's a few liked products (or none).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from core.cache import ArtefactCache, RowBlocks, digest
from core.catalog import Catalog
from core.embed import fuse
from core.pipeline import Embeddings

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class RecData:
    """What a recommender may learn from: every product (the candidates, in this row order), every
    customer, the purchases before ``cutoff`` only, and the products' content vectors.

    Built by :func:`rec_data`; ``purchases`` never holds anything at or after ``cutoff``.
    """
    products: pd.DataFrame  # index product_id, the catalogue's attribute columns; row i is candidate i
    customers: pd.DataFrame  # index customer_id, attribute columns (str); may be empty of columns
    purchases: pd.DataFrame  # customer_id, product_id, timestamp, price; sorted by timestamp
    cutoff: pd.Timestamp  # "now" for the model: recency is measured back from here
    image: np.ndarray  # (n_products, d) float32 rows L2-normalised; zero rows where there is no photo
    text: np.ndarray  # (n_products, d) float32 rows L2-normalised
    has_image: np.ndarray  # (n_products,) bool
    hybrid_weight: float = 0.5
    # derived in __post_init__
    product_ids: np.ndarray = field(init=False)  # (n_products,) str
    product_row: dict[str, int] = field(init=False)
    customer_ids: np.ndarray = field(init=False)  # (n_customers,) str
    customer_row: dict[str, int] = field(init=False)
    items: np.ndarray = field(init=False)  # (n_purchases,) int64 product row of each purchase
    users: np.ndarray = field(init=False)  # (n_purchases,) int64 customer row of each purchase
    days_ago: np.ndarray = field(init=False)  # (n_purchases,) float32 days from the purchase to the cutoff

    def __post_init__(self) -> None:
        self.product_ids = self.products.index.to_numpy(dtype=str)
        self.product_row = {p: i for i, p in enumerate(self.product_ids.tolist())}
        known = pd.Index(self.customers.index.astype(str))
        extra = pd.Index(self.purchases["customer_id"].unique()).difference(known)
        self.customer_ids = np.concatenate([known.to_numpy(dtype=str), extra.to_numpy(dtype=str)])
        self.customer_row = {c: i for i, c in enumerate(self.customer_ids.tolist())}
        self.items = self.purchases["product_id"].map(self.product_row).to_numpy(dtype=np.int64)
        self.users = self.purchases["customer_id"].map(self.customer_row).to_numpy(dtype=np.int64)
        delta = (self.cutoff - self.purchases["timestamp"]).dt.total_seconds().to_numpy() / 86400.0
        self.days_ago = np.nan_to_num(delta, nan=0.0).astype(np.float32)
        self._histories: dict[str, np.ndarray] | None = None

    @property
    def n_products(self) -> int:
        return len(self.product_ids)

    @property
    def hybrid(self) -> np.ndarray:
        """(n_products, d) float32 rows L2-normalised: photo and sentence fused at ``hybrid_weight``."""
        return fuse(self.image, self.text, self.hybrid_weight, self.has_image)

    def history(self, customer_id: str) -> np.ndarray:
        """Product rows the customer bought before the cutoff, oldest first (repeats kept); empty if none."""
        if self._histories is None:
            order = np.argsort(self.users, kind="stable")  # purchases are time-sorted, so each group is too
            users, items = self.users[order], self.items[order]
            cuts = np.flatnonzero(np.diff(users)) + 1
            self._histories = {self.customer_ids[g[0]]: it for g, it in
                               zip(np.split(users, cuts), np.split(items, cuts)) if len(g)}
        return self._histories.get(customer_id, np.empty(0, dtype=np.int64))

    def popularity(self, since_days: float | None = None) -> np.ndarray:
        """(n_products,) float32 purchase counts, over the last ``since_days`` before the cutoff if given."""
        keep = slice(None) if since_days is None else self.days_ago <= since_days
        return np.bincount(self.items[keep], minlength=self.n_products).astype(np.float32)


NO_CUTOFF = pd.Timestamp("1970-01-01")  # the cutoff of a catalogue without dated purchases: nothing is before it


def cutoff_after(purchases: pd.DataFrame) -> pd.Timestamp:
    """Midnight after the day of the last purchase, so every purchase is before it: the cutoff of a model
    trained on everything. :data:`NO_CUTOFF` when no purchase is dated: not today, since a version's
    cutoff is part of its id, and the same content must be the same version whatever day it is built."""
    last = purchases["timestamp"].max()
    return NO_CUTOFF if pd.isna(last) else last.normalize() + pd.Timedelta(days=1)


def no_purchases(catalog: Catalog, cutoff=None) -> str | None:
    """Why no recommender can be fitted on ``catalog`` (on its purchases before ``cutoff``, if given), in
    words naming the catalogue (e.g. "no purchases in shop"); None when there are dated purchases to learn
    from. The one check the build, the service, the app and the CLI make."""
    purchases, where = catalog.purchases, f"in {catalog.name}"
    dated = purchases["timestamp"].notna()
    if cutoff is not None:
        if (dated & (purchases["timestamp"] < pd.Timestamp(cutoff))).any():
            return None
        if dated.any():
            return f"no purchases {where} before {pd.Timestamp(cutoff):%Y-%m-%d}"
    elif dated.any():
        return None
    if len(purchases):
        return f"no dated purchases {where} (none of its {len(purchases):,} purchase(s) has a timestamp)"
    skipped = sum(i.count for i in catalog.report.issues if i.problem == "purchases of unknown products")
    if skipped:
        return (f"no purchases of known products {where} (its {skipped:,} purchase(s) are all of products not in "
                "the catalogue; see the validation report)")
    return f"no purchases {where}"


class NoPurchases(ValueError):
    """Recommenders asked of a catalogue with no purchases to learn from (see :func:`require_purchases`)."""


def require_purchases(catalog: Catalog, cutoff=None, what: str = "fitting recommenders") -> None:
    """Raise :class:`NoPurchases`, its message naming why and ``what`` cannot run, when :func:`no_purchases`
    finds nothing to learn from."""
    reason = no_purchases(catalog, cutoff)
    if reason:
        raise NoPurchases(f"{reason}, so {what} has nothing to learn from: recommenders need purchases "
                          "(interactions.csv in the generic layout; see the README section 'Your own catalogue'). "
                          "Similar products and search need none")


def rec_data(products: pd.DataFrame, customers: pd.DataFrame, purchases: pd.DataFrame, cutoff,
             embeddings: Embeddings, hybrid_weight: float = 0.5) -> RecData:
    """RecData of purchases strictly before ``cutoff``; ``embeddings`` rows must be in ``products`` order."""
    if not np.array_equal(np.asarray(embeddings.ids, dtype=str), products.index.to_numpy(dtype=str)):
        raise ValueError("embeddings are not aligned with the products (rebuild the catalogue's embeddings)")
    cutoff = pd.Timestamp(cutoff)
    train = purchases[purchases["timestamp"] < cutoff].sort_values("timestamp", kind="stable").reset_index(drop=True)
    return RecData(products, customers, train, cutoff, embeddings.image, embeddings.text, embeddings.has_image,
                   hybrid_weight)


class Recommender:
    """A model scoring every product for a customer. Subclasses set ``name``, implement :meth:`fit` and
    :meth:`score_histories`, and may override :meth:`score` to use what they learned per customer."""
    name: str = ""
    # True for models that only know products bought in training (ItemKNN, ALS, LightGCN): they can never
    # rank a product nobody bought before the cutoff above one somebody did.
    id_only: bool = False

    def fit(self, data: RecData, progress: Progress | None = None) -> "Recommender":
        raise NotImplementedError

    def score_histories(self, histories: Sequence[np.ndarray],
                        customer_ids: Sequence[str | None] | None = None) -> np.ndarray:
        """(q, n_products) float32 scores, higher is better, for q customers given as their history
        (product rows, oldest first; may be empty) and, where known, their id (attributes)."""
        raise NotImplementedError

    def score(self, customer_ids: Sequence[str]) -> np.ndarray:
        """(q, n_products) float32 scores for known customers (their training history and attributes);
        an id with no purchases (or not in the data) is scored from its attributes or as a new customer."""
        data = self.data_
        return self.score_histories([data.history(c) for c in customer_ids], list(customer_ids))

    def recommend(self, customer_ids: Sequence[str], k: int,
                  exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k product rows (q, k) int64 and scores (q, k) float32 for known customers, best first."""
        return top_k(self.score(customer_ids), k, exclude)

    def recommend_histories(self, histories: Sequence[np.ndarray], k: int, customer_ids: Sequence[str | None] | None
                            = None, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k product rows and scores for customers given as histories (see :meth:`score_histories`)."""
        return top_k(self.score_histories(histories, customer_ids), k, exclude)

    def item_vectors(self) -> np.ndarray | None:
        """(n_products, d) float32 item vectors where the model has them (for explanations), else None."""
        return None

    def explain(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None) -> np.ndarray:
        """Why each recommended product row in ``rows`` scored as it did for the customer given as
        ``history`` (product rows; may be empty): (len(rows),) int64, the row of the liked product (an
        entry of ``history``) that contributed most to that product's score, :data:`POPULAR` when the
        model's customer-independent popularity prior did, :data:`NO_REASON` when there is nothing to name.
        The default names the liked product most similar in the model's item vectors (content where it
        has none); models that can split their score into parts override it."""
        vectors = self.item_vectors()
        vectors = self.data_.hybrid if vectors is None else vectors
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return reasons(history, rows, vectors / np.maximum(norms, 1e-12), empty=NO_REASON)


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows (q, k) int64 and scores (q, k) float32 of the k best products per query, best first;
    ``exclude[i]`` are product rows never returned for query i (e.g. products already bought). Ties
    break by product row (the lower row first), also at the k-th place, so results are deterministic;
    NaN scores count as -inf."""
    scores = np.array(scores, dtype=np.float32, copy=True)
    np.nan_to_num(scores, copy=False, nan=-np.inf, posinf=np.inf, neginf=-np.inf)
    if exclude is not None:
        for i, rows in enumerate(exclude):
            if len(rows):
                scores[i, rows] = -np.inf
    q, n = scores.shape
    k = max(0, min(k, n))
    if k == 0:
        return np.empty((q, 0), dtype=np.int64), np.empty((q, 0), dtype=np.float32)
    if k < n:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition picks arbitrarily among products tied at the k-th score: take the lowest rows
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        tie_rows = np.flatnonzero((scores >= kth).sum(axis=1) > k)
        if len(tie_rows):
            s, t = scores[tie_rows], kth[tie_rows]
            above, tied = s > t, s == t
            room = k - above.sum(axis=1, keepdims=True)
            keep = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= room))
            part[tie_rows] = np.nonzero(keep)[1].reshape(len(tie_rows), k)
    else:
        part = np.tile(np.arange(n), (q, 1))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    rows = np.take_along_axis(part, order, axis=1)
    return rows, np.take_along_axis(scores, rows, axis=1)


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
    1 / (k + its rank in that model's list over the whole catalogue)."""

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


# ---------------------------------------------------------------- registry

BASELINES = ("popularity", "recent_popularity", "segment_popularity", "new_arrivals", "colour_variants", "itemknn",
             "als", "lightgcn", "content")
MODELS = ("graphsage", "two_tower") + BASELINES
# Models whose fit depends on a seed: the evaluation fits them once per seed; the others are deterministic.
SEEDED = ("graphsage", "two_tower", "als", "lightgcn")
# Reciprocal-rank fusion of GraphSAGE and two-tower, by name only: the validation window (2020-01-01..03-31)
# preferred two-tower alone (Recall@10 0.0156 against the blend's 0.0138 and GraphSAGE's 0.0115), so the
# blend is not among the default models (evaluate --models blend measures it).
BLENDS = {"blend": ("graphsage", "two_tower")}


def list_recommenders(blends: bool = False) -> list[str]:
    """The default models (every evaluation runs them), and with ``blends`` the blends too."""
    return list(MODELS) + (list(BLENDS) if blends else [])


def is_seeded(name: str) -> bool:
    """Whether the named model's fit depends on its seed (a blend when any part's does)."""
    return name in SEEDED or any(is_seeded(part) for part in BLENDS.get(name, ()))


def tuning_grid(name: str) -> list[dict]:
    """The settings the evaluation tries for the named model on its validation window (``params`` of
    :func:`create_recommender`): the baselines' :data:`core.baselines.GRIDS`; ``[{}]`` (its defaults)
    for a model that chooses its own settings (GraphSAGE and two-tower stop early on their own
    validation window) or has none."""
    if name in BASELINES:
        from core import baselines
        return [dict(p) for p in baselines.GRIDS.get(name, ({},))]
    return [{}]


def create_recommender(name: str, seed: int = 0, params: dict | None = None) -> Recommender:
    """A fresh, unfitted recommender by name (see :func:`list_recommenders`); ``params`` overrides a
    baseline's settings (see :func:`tuning_grid`)."""
    if params and name not in BASELINES:
        raise ValueError(f"'{name}' takes no settings here; got {sorted(params)}")
    if name == "graphsage":
        from core.sage import SageConfig, SageRecommender
        return SageRecommender(SageConfig(seed=seed))
    if name == "two_tower":
        from core.two_tower import TwoTowerConfig, TwoTowerRecommender
        return TwoTowerRecommender(TwoTowerConfig(seed=seed))
    if name in BLENDS:
        return RankFusion(name, [create_recommender(part, seed) for part in BLENDS[name]])
    if name in BASELINES:
        from core import baselines
        return baselines.create(name, seed=seed, params=params)
    raise ValueError(f"unknown model '{name}'; one of {', '.join(list_recommenders(blends=True))}")


# ---------------------------------------------------------------- cached fitting

FINGERPRINT_ROWS = 128  # rows converted to text at a time for a fingerprint (~8 ms each on H&M's products)


def _as_text(frame: pd.DataFrame, rows: int = FINGERPRINT_ROWS) -> np.ndarray | RowBlocks:
    """``frame.to_numpy(dtype=str)``, or for more than ``rows`` rows the same array as :class:`RowBlocks`
    (a :func:`digest` of either is the same): converted ``rows`` at a time, because one conversion holds the
    GIL throughout (1.5 s for H&M's products) and the whole array is large (740 MB: its width is the
    longest text's)."""
    if len(frame) <= rows:
        return frame.to_numpy(dtype=str)
    blocks = [frame.iloc[start:start + rows].to_numpy(dtype=str) for start in range(0, len(frame), rows)]
    return RowBlocks(blocks, max((b.dtype for b in blocks), key=lambda d: d.itemsize), (len(frame), frame.shape[1]))


def data_fingerprint(data: RecData) -> str:
    """Hash of everything a recommender learns from: candidates, customers, training purchases, content."""
    attrs = _as_text(data.products.drop(columns=["image_path", "description"], errors="ignore"))
    return digest(data.product_ids, data.customer_ids, attrs, _as_text(data.customers),
                  data.items, data.users, data.days_ago, str(data.cutoff), data.image, data.text,
                  float(data.hybrid_weight))


def fitted(name: str, data: RecData, cache: ArtefactCache | None = None, seed: int = 0,
           progress: Progress | None = None, params: dict | None = None) -> Recommender:
    """A recommender fitted on ``data`` (``params``: see :func:`create_recommender`). Models that can
    save their state (``cache_config``, ``state_arrays``, ``load_state``) are cache artefacts keyed by
    their config and the data's fingerprint, so a trained model is trained once; the others fit in
    seconds and are refitted."""
    if name in BLENDS:
        fused = RankFusion(name, [fitted(part, data, cache, seed, progress) for part in BLENDS[name]])
        fused.data_ = data
        return fused
    model = create_recommender(name, seed, params)
    if cache is None or not hasattr(model, "state_arrays"):
        return model.fit(data, progress)
    state = cache.get_or_compute(f"recommender-{name}", model.cache_config(), data_fingerprint(data),
                                 lambda: model.fit(data, progress).state_arrays())
    return model.load_state(data, state)


# ---------------------------------------------------------------- the new-customer path

class NewCustomerFallback(Recommender):
    """A fitted model whose customers with no history are served by another fitted recommender
    (``fallback``: segment popularity, when the model's no-history lists did not beat it on the
    validation window; see :mod:`core.receval`). Everything else is the model's: a customer with a
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


POPULAR = -1  # an explanation: the model's popularity prior, not a liked product, placed it
NO_REASON = -2  # an explanation: nothing to name (no history, or a model that ignores it)


def reasons(history: np.ndarray, rows: np.ndarray, vectors: np.ndarray, empty: int = -1) -> np.ndarray:
    """For each recommended product row, the history product it is most similar to (cosine of
    ``vectors``, (n_products, d) rows L2-normalised: a model's item vectors or the content vectors);
    ``empty`` where the history is empty. (len(rows),) int64."""
    history, rows = np.asarray(history, dtype=np.int64), np.asarray(rows, dtype=np.int64)
    if not len(history) or not len(rows):
        return np.full(len(rows), empty, dtype=np.int64)
    sims = vectors[rows] @ vectors[history].T
    return history[np.argmax(sims, axis=1)]


def rank_in_lists(scores: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Where a product scoring ``candidate`` (q,) would rank in each of q customers' lists over the
    catalogue with ``scores`` (q, n_products): (q,) int64, 0 = first. Scores of one customer compare
    products; scores of different customers do not (a ranking loss only orders each customer's list),
    so "which customers would get this product" is answered by its rank, not its raw score."""
    return (np.asarray(scores) > np.asarray(candidate)[:, None]).sum(axis=1).astype(np.int64)


# ---------------------------------------------------------------- helpers of the app's Cold start page
# (added for app_pages/coldstart.py: small pure functions the page calls instead of doing arithmetic)

def purchase_counts(purchases: pd.DataFrame, cutoff, end, customer_ids: Sequence[str] = ()) -> pd.DataFrame:
    """Purchase rows per customer before ``cutoff`` (``before``) and in ``[cutoff, end)`` (``after``), int64,
    index ``customer_id``: every customer with a purchase, plus ``customer_ids`` (zeros where they bought
    nothing). Sorted for listing: most purchases after the cutoff first, then most before, then by id."""
    cutoff, end = pd.Timestamp(cutoff), pd.Timestamp(end)
    t = purchases["timestamp"]
    ids = purchases["customer_id"].astype(str)
    before = ids[t < cutoff].value_counts()
    after = ids[(t >= cutoff) & (t < end)].value_counts()
    index = pd.Index(pd.unique(np.concatenate([np.asarray(customer_ids, dtype=str), ids.unique().astype(str)])),
                     name="customer_id")
    counts = pd.DataFrame({"before": before.reindex(index, fill_value=0).astype(np.int64),
                           "after": after.reindex(index, fill_value=0).astype(np.int64)}, index=index)
    order = np.lexsort((counts.index.to_numpy(dtype=str), -counts["before"].to_numpy(), -counts["after"].to_numpy()))
    return counts.iloc[order]


def product_audience(model: Recommender, customer_ids: Sequence[str], product_row: int | None = None,
                     product_vector: np.ndarray | None = None, batch: int = 256) -> pd.DataFrame:
    """Where one product would rank in each customer's list over the whole catalogue: columns
    ``customer_id`` and ``rank`` (int64, 0 = first), best-placed customers first (ties in the given order).

    The product is a catalogue row (``product_row``), or a product outside the catalogue given as the
    model's (d,) vector for it (``product_vector``, e.g. ``SageRecommender.product_vector``; needs the
    model's ``customer_vectors()``, so only customers in ``model.data_`` are ranked). Customers are
    scored ``batch`` at a time, so memory stays (batch, n_products)."""
    if (product_row is None) == (product_vector is None):
        raise ValueError("give exactly one of product_row and product_vector")
    ids = np.asarray(customer_ids, dtype=str)
    if product_vector is not None:
        rows = [model.data_.customer_row.get(c) for c in ids.tolist()]
        ids = ids[[r is not None for r in rows]]
        own = model.customer_vectors()[[r for r in rows if r is not None]] @ np.asarray(product_vector, np.float32)
    ranks = np.empty(len(ids), dtype=np.int64)
    for start in range(0, len(ids), batch):
        scores = model.score(ids[start:start + batch].tolist())
        candidate = scores[:, product_row] if product_vector is None else own[start:start + batch]
        ranks[start:start + batch] = rank_in_lists(scores, candidate)
    order = np.argsort(ranks, kind="stable")
    return pd.DataFrame({"customer_id": ids[order], "rank": ranks[order]})
