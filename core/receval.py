"""Recommendation evaluation: a temporal split, full-ranking metrics per customer, slices, a sampled metric
and bootstrap intervals.

Protocol. Models learn from the purchases before ``cutoff`` and are tested on the purchases in
``[cutoff, end)``. Every product of the catalogue is a candidate (full ranking); a customer's truth is
the distinct products they bought in the test window. Choices (whether to drop a customer's earlier
purchases from their list) are made on a validation window cut from before the cutoff, never on the
test window.

Metrics (k = 10, MAP at 12, as in the H&M competition), per test customer, then averaged:

- Recall@k = |top-k ∩ bought| / |bought|
- NDCG@k, binary relevance, discount 1 / log2(rank + 1), ideal DCG over min(|bought|, k) hits
- AP@12 = sum over ranks i <= 12 of P@i * rel(i), divided by min(|bought|, 12)
- hit rate@k = 1 if any of the top k was bought
- coverage@k = distinct products across all top-k lists / n_products (one number, not per customer)

They come from PyG's ``torch_geometric.metrics`` link-prediction metrics (``LinkPredRecall``,
``LinkPredNDCG``, ``LinkPredMAP``, ``LinkPredHitRatio``, ``LinkPredCoverage``), whose per-example
``_compute`` gives the per-customer values the bootstrap and the slices need. In torch_geometric 2.8
their definitions are the ones above: LinkPredMAP divides by min(|bought|, k), H&M's denominator, and
LinkPredNDCG's ideal DCG runs over min(|bought|, k) (the tests check both against hand-computed values).

Slices: new customers (no purchase before the cutoff), sparse (1-5 earlier purchases, counting purchase
rows), warm (more); cold items (products bought in the test window that nobody bought before the
cutoff; recall over a customer's cold products only, averaged over customers with at least one) and
warm items (likewise).

The sampled metric (``sampled_recall_at_10``) ranks each test (customer, product) pair against 99
products the customer never bought, drawn at random from the whole catalogue: it is SAMPLED, kinder
than full ranking and not comparable to it; it is there to compare with papers that report it.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch_geometric.metrics import LinkPredCoverage, LinkPredHitRatio, LinkPredMAP, LinkPredNDCG, LinkPredRecall
from torch_geometric.metrics.link_pred import LinkPredMetricData

from core.cache import ArtefactCache, digest
from core.catalog import Catalog
from core.pipeline import Embeddings
from core.recommend import Progress, RecData, Recommender, data_fingerprint, fitted, rec_data, top_k

SPARSE_MAX = 5  # a customer with 1..SPARSE_MAX purchases before the cutoff is sparse; more is warm
BATCH = 256  # test customers scored at once: (256, n_products) float32 is 17 MB on the full H&M catalogue
KIND = "rec-eval"
EVAL_VERSION = 1  # bump when a metric's definition changes, so cached evaluations are recomputed
EXCLUDE_CHOICES = ("auto", "yes", "no")


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class SplitConfig:
    # The H&M sample's purchases run to 2020-06-30: the last three months are the test window.
    cutoff: str = "2020-04-01"
    end: str = "2020-07-01"
    validation_days: int = 0  # 0: as long as the test window


@dataclass(frozen=True)
class EvalConfig:
    split: SplitConfig = SplitConfig()
    k: int = 10
    map_k: int = 12  # the H&M competition's MAP@12
    n_sampled: int = 99  # negatives per test purchase in the sampled metric (1 in 100, as in NCF papers)
    n_bootstrap: int = 1000
    exclude_bought: str = "auto"  # "auto" (chosen per model on the validation window), "yes", "no"
    seed: int = 0
    hybrid_weight: float = 0.5


# ---------------------------------------------------------------- split

def _day(ts: pd.Timestamp) -> str:
    """"2020-04-01" for a midnight, else the full ISO time."""
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def customer_slice(n_earlier: np.ndarray) -> np.ndarray:
    """(q,) str "new" / "sparse" / "warm" from each customer's number of purchases before the cutoff."""
    n_earlier = np.asarray(n_earlier)
    return np.where(n_earlier == 0, "new", np.where(n_earlier <= SPARSE_MAX, "sparse", "warm"))


@dataclass
class Split:
    """Purchases cut by time: ``train`` before ``cutoff``, ``test`` in ``[cutoff, end)``."""
    cutoff: pd.Timestamp
    end: pd.Timestamp
    train: pd.DataFrame  # purchases with timestamp < cutoff
    test: pd.DataFrame  # purchases with cutoff <= timestamp < end

    def test_customers(self) -> np.ndarray:
        """(q,) str sorted ids of the customers with a purchase in the test window."""
        return np.unique(self.test["customer_id"].astype(str).to_numpy())

    def customer_slices(self) -> pd.Series:
        """"new" / "sparse" / "warm" per test customer (index: :meth:`test_customers`)."""
        customers = self.test_customers()
        earlier = self.train["customer_id"].astype(str).value_counts()
        return pd.Series(customer_slice(earlier.reindex(customers, fill_value=0).to_numpy()), index=customers)

    def cold_purchases(self) -> np.ndarray:
        """(len(test),) bool: the test purchase is of a product nobody bought before the cutoff."""
        return ~self.test["product_id"].isin(self.train["product_id"].unique()).to_numpy()

    def repurchases(self) -> np.ndarray:
        """(len(test),) bool: the customer had bought this product before the cutoff."""
        cols = ["customer_id", "product_id"]
        return pd.MultiIndex.from_frame(self.test[cols].astype(str)).isin(
            pd.MultiIndex.from_frame(self.train[cols].astype(str))).astype(bool)

    def counts(self) -> dict[str, int]:
        """Purchase rows and customers per part and slice; ``*_item_customers`` are the customers the
        cold / warm item recall averages over."""
        slices = self.customer_slices().to_numpy()
        cold = self.cold_purchases()
        customers = self.test["customer_id"].astype(str).to_numpy()
        return {
            "train_purchases": len(self.train),
            "test_purchases": len(self.test),
            "test_customers": len(slices),
            "new_customers": int((slices == "new").sum()),
            "sparse_customers": int((slices == "sparse").sum()),
            "warm_customers": int((slices == "warm").sum()),
            "cold_item_purchases": int(cold.sum()),
            "warm_item_purchases": int((~cold).sum()),
            "cold_item_customers": len(np.unique(customers[cold])),
            "warm_item_customers": len(np.unique(customers[~cold])),
            "repurchases": int(self.repurchases().sum()),
        }

    def window(self) -> dict:
        return {"cutoff": _day(self.cutoff), "end": _day(self.end),
                "days": round((self.end - self.cutoff) / pd.Timedelta(days=1), 3)}


def temporal_split(purchases: pd.DataFrame, cutoff, end) -> Split:
    """Purchases before ``cutoff`` (train) and in ``[cutoff, end)`` (test); undated purchases are in neither."""
    cutoff, end = pd.Timestamp(cutoff), pd.Timestamp(end)
    if not cutoff < end:
        raise ValueError(f"the test window is empty: cutoff {cutoff} is not before end {end}")
    t = purchases["timestamp"]
    return Split(cutoff, end, purchases[t < cutoff].reset_index(drop=True),
                 purchases[(t >= cutoff) & (t < end)].reset_index(drop=True))


def validation_split(purchases: pd.DataFrame, cfg: SplitConfig) -> Split:
    """The split used for choices: a window of ``cfg.validation_days`` (0: the test window's length)
    ending at ``cfg.cutoff``, its train everything before that window. It never sees the test window."""
    cutoff = pd.Timestamp(cfg.cutoff)
    length = pd.Timedelta(days=cfg.validation_days) if cfg.validation_days else pd.Timestamp(cfg.end) - cutoff
    return temporal_split(purchases, cutoff - length, cutoff)


# ---------------------------------------------------------------- metrics

def _pyg_data(top: np.ndarray, truth: Sequence[np.ndarray]) -> LinkPredMetricData:
    """PyG's batch of ranked lists and their ground truth (duplicates within a truth dropped)."""
    lengths = np.fromiter((len(t) for t in truth), dtype=np.int64, count=len(truth))
    users = np.repeat(np.arange(len(truth), dtype=np.int64), lengths)
    items = np.concatenate([np.asarray(t, dtype=np.int64) for t in truth]) if len(truth) else \
        np.empty(0, dtype=np.int64)
    pairs = np.unique(np.stack([users, items], axis=1), axis=0) if len(items) else np.empty((0, 2), np.int64)
    return LinkPredMetricData(torch.from_numpy(np.ascontiguousarray(top, dtype=np.int64)),
                              torch.from_numpy(np.ascontiguousarray(pairs.T)))


def ranking_metrics(top: np.ndarray, truth: list[np.ndarray], k: int = 10, map_k: int = 12) -> dict[str, np.ndarray]:
    """Per-customer metrics of ranked lists over the whole catalogue.

    ``top``: (q, m) int64 product rows, best first, m >= max(k, map_k) (fewer only when the catalogue
    has fewer products); ``truth[i]``: product rows customer i bought (repeats are counted once).
    Returns (q,) float64 arrays: ``recall`` (at k), ``ndcg`` (at k), ``ap`` (AP at map_k, H&M's) and
    ``hit`` (at k), as defined in the module docstring; a customer with no truth scores 0 on each.
    """
    q = len(truth)
    if top.shape[0] != q:
        raise ValueError(f"{top.shape[0]} ranked lists for {q} truths")
    if q == 0:
        return {name: np.empty(0) for name in ("recall", "ndcg", "ap", "hit")}
    data = _pyg_data(top, truth)  # shared, so PyG matches predictions to truth once
    # PyG's per-example values (what its update() sums), so the bootstrap and the slices can use them
    metrics = {"recall": LinkPredRecall(k), "ndcg": LinkPredNDCG(k), "ap": LinkPredMAP(map_k),
               "hit": LinkPredHitRatio(k)}
    return {name: m._compute(data).double().numpy() for name, m in metrics.items()}


def coverage(top: np.ndarray, n_products: int, k: int = 10) -> float:
    """Distinct products across all top-k lists (rows of ``top``, (q, >= k) int64) / n_products."""
    metric = LinkPredCoverage(k, n_products)
    metric.update(torch.from_numpy(np.ascontiguousarray(top, dtype=np.int64)), torch.empty((2, 0), dtype=torch.long))
    return float(metric.compute())


def bootstrap_ci(values: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` ((q,), one per customer): the customers
    are resampled with replacement ``n`` times. (nan, nan) when there are no values."""
    values = np.asarray(values, dtype=np.float64)
    q = len(values)
    if q == 0 or n <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n)
    chunk = max(1, 2 ** 22 // q)  # resamples drawn at once: at most 4M indices (32 MB) in memory
    for start in range(0, n, chunk):
        c = min(chunk, n - start)
        means[start:start + c] = values[rng.integers(0, q, size=(c, q))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


# ---------------------------------------------------------------- the sampled metric

def sample_negatives(n_products: int, bought: Sequence[np.ndarray], owner: np.ndarray, n: int = 99,
                     seed: int = 0) -> np.ndarray:
    """(m, n) int64: for each test pair j, ``n`` distinct product rows drawn uniformly from the whole
    catalogue minus what its customer bought (``bought[owner[j]]``, product rows); -1 pads a row when
    fewer than ``n`` products are left."""
    rng = np.random.default_rng(seed)
    out = np.full((len(owner), n), -1, dtype=np.int64)
    # the v-th product not in sorted b is v + #{i : b[i] - i <= v}
    gaps = [np.unique(np.asarray(b, dtype=np.int64)) for b in bought]
    gaps = [b - np.arange(len(b)) for b in gaps]
    for j, o in enumerate(np.asarray(owner, dtype=np.int64)):
        g = gaps[o]
        free = n_products - len(g)
        v = rng.choice(free, size=min(n, free), replace=False) if free > 0 else np.empty(0, dtype=np.int64)
        out[j, :len(v)] = v + np.searchsorted(g, v, side="right")
    return out


def sampled_ranks(model_scores: np.ndarray, query: np.ndarray, target: np.ndarray,
                  negatives: np.ndarray) -> np.ndarray:
    """(m,) int64 rank (0 = best) of each pair's target among itself and its negatives.

    ``model_scores``: (q, n_products) scores; pair j is query row ``query[j]``, product row
    ``target[j]``, negatives ``negatives[j]`` ((m, n) int64, -1 = none). Ties break as in
    :func:`core.recommend.top_k` (the lower product row first), so the sampled order is the full
    ranking's order restricted to the 1 + n candidates; NaN counts as -inf.
    """
    s = np.nan_to_num(np.asarray(model_scores, dtype=np.float32), nan=-np.inf)
    query, target = np.asarray(query, dtype=np.int64), np.asarray(target, dtype=np.int64)
    own = s[query, target][:, None]
    other = s[query[:, None], np.maximum(negatives, 0)]
    beats = (other > own) | ((other == own) & (negatives < target[:, None]))
    return (beats & (negatives >= 0)).sum(axis=1)


def sampled_recall(model_scores: np.ndarray, query: np.ndarray, target: np.ndarray, negatives: np.ndarray,
                   k: int = 10) -> float:
    """SAMPLED Recall@k (hit rate among 1 + n candidates, not comparable to full ranking): the share
    of pairs whose target ranks in the top k of itself and its negatives (see :func:`sampled_ranks`)."""
    ranks = sampled_ranks(model_scores, query, target, negatives)
    return float(np.mean(ranks < k)) if len(ranks) else float("nan")


# ---------------------------------------------------------------- one model

@dataclass
class _Ranked:
    """A model's lists for the test customers, both with and without their earlier purchases."""
    customers: np.ndarray  # (q,) str, sorted
    truth: list[np.ndarray]  # q arrays of distinct product rows bought in the test window
    earlier: list[np.ndarray]  # q arrays of distinct product rows bought before the cutoff
    top_excluding: np.ndarray  # (q, max(k, map_k)) int64, earlier purchases never listed
    top_including: np.ndarray  # (q, max(k, map_k)) int64
    ranks_excluding: np.ndarray | None = None  # (m,) sampled ranks of the test pairs
    ranks_including: np.ndarray | None = None


def _rank(model: Recommender, data: RecData, test: pd.DataFrame, cfg: EvalConfig,
          sampled: bool = False) -> _Ranked:
    """Score the test customers in batches of :data:`BATCH` and keep their top lists (and, if
    ``sampled``, the sampled ranks of every distinct test pair)."""
    rows = test["product_id"].astype(str).map(data.product_row)
    pairs = pd.DataFrame({"c": test["customer_id"].astype(str).to_numpy(), "p": rows.to_numpy()})
    pairs = pairs[rows.notna().to_numpy()].astype({"p": np.int64}).drop_duplicates().sort_values(["c", "p"])
    customers, starts = np.unique(pairs["c"].to_numpy(), return_index=True)
    truth = np.split(pairs["p"].to_numpy(), starts[1:]) if len(customers) else []
    owner = np.repeat(np.arange(len(customers)), np.diff(np.append(starts, len(pairs))))
    earlier = [np.unique(data.history(c)) for c in customers.tolist()]
    width = max(cfg.k, cfg.map_k)
    top_ex = np.zeros((len(customers), min(width, data.n_products)), dtype=np.int64)
    top_in = np.zeros_like(top_ex)
    negatives = None
    if sampled:
        bought = [np.concatenate([e, t]) for e, t in zip(earlier, truth)]
        negatives = sample_negatives(data.n_products, bought, owner, cfg.n_sampled, cfg.seed)
        targets = pairs["p"].to_numpy()
        ranks_ex, ranks_in = np.zeros(len(pairs), np.int64), np.zeros(len(pairs), np.int64)
    for start in range(0, len(customers), BATCH):
        stop = min(start + BATCH, len(customers))
        scores = np.asarray(model.score(customers[start:stop].tolist()), dtype=np.float32)
        top_in[start:stop] = top_k(scores, width)[0]
        masked = scores.copy()
        for i, e in enumerate(earlier[start:stop]):
            masked[i, e] = -np.inf
        top_ex[start:stop] = top_k(masked, width)[0]
        if sampled:
            j = slice(starts[start], starts[stop] if stop < len(customers) else len(pairs))
            query = owner[j] - start
            ranks_in[j] = sampled_ranks(scores, query, targets[j], negatives[j])
            ranks_ex[j] = sampled_ranks(masked, query, targets[j], negatives[j])
    ranked = _Ranked(customers, truth, earlier, top_ex, top_in)
    if sampled:
        ranked.ranks_excluding, ranked.ranks_including = ranks_ex, ranks_in
    return ranked


def _mean(values: np.ndarray) -> float | None:
    """The mean, or None (JSON null) when there is nothing to average."""
    return float(np.mean(values)) if len(values) else None


def _ci(values: np.ndarray, cfg: EvalConfig) -> tuple[float | None, float | None]:
    if not len(values):
        return None, None
    return bootstrap_ci(values, cfg.n_bootstrap, cfg.seed)


def evaluate_model(model: Recommender, data: RecData, test: pd.DataFrame, cfg: EvalConfig,
                   exclude_bought: bool) -> dict[str, float]:
    """Test metrics of a model fitted on ``data`` (purchases before the cutoff), over ``test`` (the
    purchases of the test window), every product a candidate. With ``exclude_bought`` a customer's
    earlier purchases are never in their list. Flat keys (k = 10, map_k = 12 by default):
    ``recall_at_10``, ``ndcg_at_10``, ``map_at_12``, ``hit_rate_at_10``, ``coverage_at_10``,
    ``sampled_recall_at_10`` (SAMPLED: 1 + 99 candidates), ``recall_at_10_{new,sparse,warm}_customers``,
    ``recall_at_10_{cold,warm}_items``, ``<metric>_ci_low`` / ``_ci_high`` (bootstrap 95% over customers)
    for recall, ndcg, map, hit rate and cold-item recall, ``recall_at_10_excluding`` /
    ``recall_at_10_including`` (both ways), ``exclude_bought`` and ``id_only``. A metric over no
    customers is None."""
    k, mk = cfg.k, cfg.map_k
    ranked = _rank(model, data, test, cfg, sampled=True)
    both = {way: ranking_metrics(top, ranked.truth, k, mk)
            for way, top in (("excluding", ranked.top_excluding), ("including", ranked.top_including))}
    way = "excluding" if exclude_bought else "including"
    per, top = both[way], getattr(ranked, f"top_{way}")
    ranks = getattr(ranked, f"ranks_{way}")
    out: dict[str, float | bool | None] = {
        f"recall_at_{k}": _mean(per["recall"]),
        f"ndcg_at_{k}": _mean(per["ndcg"]),
        f"map_at_{mk}": _mean(per["ap"]),
        f"hit_rate_at_{k}": _mean(per["hit"]),
        f"coverage_at_{k}": coverage(top, data.n_products, k) if len(top) else None,
        f"sampled_recall_at_{k}": _mean(ranks < k),
    }
    n_earlier = np.array([len(data.history(c)) for c in ranked.customers.tolist()], dtype=np.int64)
    slices = customer_slice(n_earlier)
    for name in ("new", "sparse", "warm"):
        out[f"recall_at_{k}_{name}_customers"] = _mean(per["recall"][slices == name])
    cold = data.popularity() == 0  # (n_products,) nobody bought it before the cutoff
    item_recall = {}
    for name, keep in (("cold", cold), ("warm", ~cold)):
        truth = [t[keep[t]] for t in ranked.truth]
        has = np.array([len(t) > 0 for t in truth], dtype=bool)
        item_recall[name] = ranking_metrics(top, truth, k, mk)["recall"][has] if len(truth) else np.empty(0)
        out[f"recall_at_{k}_{name}_items"] = _mean(item_recall[name])
    for key, values in ((f"recall_at_{k}", per["recall"]), (f"ndcg_at_{k}", per["ndcg"]),
                        (f"map_at_{mk}", per["ap"]), (f"hit_rate_at_{k}", per["hit"]),
                        (f"recall_at_{k}_cold_items", item_recall["cold"])):
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = _ci(values, cfg)
    out[f"recall_at_{k}_excluding"] = _mean(both["excluding"]["recall"])
    out[f"recall_at_{k}_including"] = _mean(both["including"]["recall"])
    out["exclude_bought"] = bool(exclude_bought)
    out["id_only"] = bool(getattr(model, "id_only", False))
    return out


def _recall_both_ways(model: Recommender, data: RecData, test: pd.DataFrame, cfg: EvalConfig
                      ) -> tuple[float | None, float | None]:
    """Recall@k over ``test`` (excluding earlier purchases, including them)."""
    ranked = _rank(model, data, test, cfg)
    return (_mean(ranking_metrics(ranked.top_excluding, ranked.truth, cfg.k, cfg.map_k)["recall"]),
            _mean(ranking_metrics(ranked.top_including, ranked.truth, cfg.k, cfg.map_k)["recall"]))


# ---------------------------------------------------------------- the whole evaluation

def _test_digest(test: pd.DataFrame) -> str:
    """Hash of the test purchases (who bought what when)."""
    return digest(test["customer_id"].astype(str).to_numpy(dtype=str),
                  test["product_id"].astype(str).to_numpy(dtype=str),
                  test["timestamp"].to_numpy(dtype="datetime64[ns]").astype(np.int64))


def _prepare(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig
             ) -> tuple[Split, RecData, dict, str]:
    """The split, the training RecData, and the artefact's config and fingerprint."""
    if cfg.exclude_bought not in EXCLUDE_CHOICES:
        raise ValueError(f"exclude_bought must be one of {EXCLUDE_CHOICES}, not {cfg.exclude_bought!r}")
    split = temporal_split(catalog.purchases, cfg.split.cutoff, cfg.split.end)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings,
                    cfg.hybrid_weight)
    key_cfg = {**asdict(cfg), "models": sorted(models), "version": EVAL_VERSION}
    return split, data, key_cfg, digest(data_fingerprint(data), _test_digest(split.test))


def evaluate(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig = EvalConfig(),
             cache: ArtefactCache | None = None, progress: Progress | None = None) -> dict:
    """Fit each named model on the purchases before the cutoff and measure it on the test window.

    Returns ``{"split": {"cutoff", "end", "validation": {window and its counts}, **Split.counts()},
    "models": {name: evaluate_model's keys + train_s, model_train_s, validation_recall_at_10_excluding,
    validation_recall_at_10_including}}``, JSON-ready. ``train_s`` is the wall time of
    :func:`core.recommend.fitted` (a load when the fitted model was cached); ``model_train_s`` is the
    model's own ``train_s_`` when it records one. With ``exclude_bought="auto"`` each model is also
    fitted on the validation split and the way with the higher validation Recall@k is used (ties: not
    excluding). With a cache the whole result is an artefact (see :func:`cached_evaluation`).
    """
    split, data, key_cfg, fingerprint = _prepare(catalog, embeddings, models, cfg)

    def compute() -> dict[str, np.ndarray]:
        return {"json": np.array(json.dumps(_evaluate(catalog, embeddings, models, cfg, split, data, cache,
                                                       progress)))}
    if cache is None:
        return json.loads(str(compute()["json"]))
    return json.loads(str(cache.get_or_compute(KIND, key_cfg, fingerprint, compute)["json"]))


def _evaluate(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig, split: Split,
              data: RecData, cache: ArtefactCache | None, progress: Progress | None) -> dict:
    k = cfg.k
    val = validation_split(catalog.purchases, cfg.split)
    val_data = rec_data(catalog.products, catalog.customers, catalog.purchases, val.cutoff, embeddings,
                        cfg.hybrid_weight) if cfg.exclude_bought == "auto" and models else None
    results = {}
    for i, name in enumerate(models):
        if progress:
            progress("evaluating recommenders", i, len(models))
        v_ex = v_in = None
        if val_data is not None:
            v_ex, v_in = _recall_both_ways(fitted(name, val_data, cache, cfg.seed, progress), val_data, val.test, cfg)
            exclude = (v_ex or 0.0) > (v_in or 0.0)
        else:
            exclude = cfg.exclude_bought == "yes"
        t0 = time.perf_counter()
        model = fitted(name, data, cache, cfg.seed, progress)
        train_s = time.perf_counter() - t0
        own = getattr(model, "train_s_", None)
        results[name] = {**evaluate_model(model, data, split.test, cfg, exclude),
                         "train_s": train_s, "model_train_s": None if own is None else float(own),
                         f"validation_recall_at_{k}_excluding": v_ex,
                         f"validation_recall_at_{k}_including": v_in}
    if progress:
        progress("evaluating recommenders", len(models), len(models))
    return {"split": {**split.window(), "exclude_bought": cfg.exclude_bought,
                      "validation": {**val.window(), **val.counts()}, **split.counts()},
            "models": results}


def cached_evaluation(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig,
                      cache: ArtefactCache) -> dict | None:
    """The result :func:`evaluate` stored for exactly this catalogue, embeddings, models (any order)
    and config, or None; computes nothing but the data's fingerprint."""
    _, _, key_cfg, fingerprint = _prepare(catalog, embeddings, models, cfg)
    arrays = cache.load(KIND, ArtefactCache.key(key_cfg, fingerprint))
    return None if arrays is None else json.loads(str(arrays["json"]))
