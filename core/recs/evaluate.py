"""Recommendation evaluation: full-ranking metrics per customer on a temporal split (:mod:`core.recs.split`),
slices, seeds, paired bootstrap comparisons with the best baseline (:mod:`core.recs.paired`), tuned baselines
and plain-words verdicts; the result is typed by :mod:`core.recs.report`.

Protocol. Models learn from the purchases before ``cutoff`` and are tested on the purchases in
``[cutoff, end)``. Every product of the catalogue is a candidate (full ranking); a customer's truth is
the distinct products they bought in the test window. A window with more customers than
``SplitConfig.max_customers`` is measured on a seeded random sample of them (:func:`core.recs.split.sample_customers`;
``window_customers`` in the counts says how many there were). Choices (whether to drop a customer's earlier
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

Seeds: a seeded model is fitted once per ``EvalConfig.seeds`` and each customer's values are averaged
over the fits before the means, the intervals and the paired differences. Paired comparisons: the
bootstrap interval of the mean per-customer difference between a model and a baseline, each resample
the same customers for both (:func:`paired_difference`, :class:`PairedReport`); the reference is the
baseline with the best validation Recall@k. Baselines with a grid are tuned on the validation window;
a learned model whose no-history lists do not beat segment popularity on the validation window's new
customers has its new customers served by segment popularity (see :func:`evaluate`).

Coverage@k cannot exceed q * k / n_products for q test customers (:func:`coverage_ceiling`).

The sampled metric (``sampled_recall_at_10``) ranks each test (customer, product) pair against 99
products the customer never bought, drawn at random from the whole catalogue: it is SAMPLED, kinder
than full ranking, can order models differently from it, and is reported as a reference only.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.cache import ArtefactCache, digest, json_arrays
from core.executor import current
from core.data.catalog import Catalog
from core.embeddings.pipeline import Embeddings
from core.recs.contract import (CUSTOMER_VECTORS, SAVES_STATE, RecData, Recommender, rec_data, scoring_batch,
                                top_k)
from core.progress import Progress
from core.recs.metrics import (bootstrap_ci, coverage, ranking_metrics, ranks_among, sample_negatives,
                              sampled_ranks)
from core.recs.newcustomer import NewCustomerFallback
from core.recs.paired import paired_keys, paired_report, verdict
from core.recs.report import EvalReport
from core.recs.registry import (BASELINES, BLENDS, create_recommender, data_fingerprint, fitted, is_seeded,
                                tuning_grid)
from core.recs.split import (Split, SplitConfig, customer_slice, sample_customers, temporal_split,
                             validation_split)

KIND = "rec-eval"
EVAL_VERSION = 3  # bump when a metric's definition changes, so cached evaluations are recomputed
EXCLUDE_CHOICES = ("auto", "yes", "no")
INDEX_BATCH = 256  # customers whose lists a model with an index is asked for at once


# ---------------------------------------------------------------- configuration

@dataclass(frozen=True)
class EvalConfig:
    split: SplitConfig = SplitConfig()
    k: int = 10
    map_k: int = 12  # the H&M competition's MAP@12
    n_sampled: int = 99  # negatives per test purchase in the sampled metric (1 in 100, as in NCF papers)
    n_bootstrap: int = 1000
    exclude_bought: str = "auto"  # "auto" (chosen per model on the validation window), "yes", "no"
    seed: int = 0  # the bootstrap's resamples and the sampled metric's negatives
    # models whose fit depends on a seed are fitted once per seed and their per-customer values averaged:
    # seeds moved a learned model's Recall@10 by 0.002-0.003 on the sample, as much as gaps between models
    seeds: tuple[int, ...] = (0, 1, 2)
    hybrid_weight: float = 0.5


# ---------------------------------------------------------------- one model

@dataclass
class Ranked:
    """A model's lists for the test customers, both with and without their earlier purchases."""
    customers: np.ndarray  # (q,) str, sorted
    truth: list[np.ndarray]  # q arrays of distinct product rows bought in the test window
    earlier: list[np.ndarray]  # q arrays of distinct product rows bought before the cutoff
    top_excluding: np.ndarray  # (q, max(k, map_k)) int64, earlier purchases never listed
    top_including: np.ndarray  # (q, max(k, map_k)) int64
    ranks_excluding: np.ndarray | None = None  # (m,) sampled ranks of the test pairs
    ranks_including: np.ndarray | None = None


def rank_customers(model: Recommender, data: RecData, test: pd.DataFrame, cfg: EvalConfig,
                   sampled: bool = False, from_index: bool = False) -> Ranked:
    """The test customers' top lists (and, if ``sampled``, the sampled ranks of every distinct test pair), in
    batches: every product scored for :func:`scoring_batch` customers at a time. With ``from_index``, a model with
    customer vectors (:data:`~core.recs.contract.CUSTOMER_VECTORS`: two-tower, GraphSAGE) is asked for its lists
    instead, which it answers from its inner-product index (FAISS), :data:`INDEX_BATCH` customers at a time, and
    for the sampled pairs' scores alone. Not the default: the models' indexes are exact (flat), and FAISS's flat
    search took 1.8x as long per customer as scoring every product in NumPy and ranking with torch (two-tower
    against content, 10,000 customers of a million products, ``bench scale``; 5.7x on 200,000 x 256 rows alone),
    while the scores held at once are bounded either way (``SCORE_ENTRIES``). With an approximate index it would be
    the faster path."""
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
        ranks_ex, ranks_in = np.zeros(len(pairs), np.int64), np.zeros(len(pairs), np.int64)
    indexed = from_index and model.supports(CUSTOMER_VECTORS)
    again = None
    if sampled and indexed:  # pairs whose product the customer had bought before (in pair order, as truth is)
        again = np.concatenate([np.isin(t, e) for t, e in zip(truth, earlier)]) if len(pairs) else np.zeros(0, bool)
    batch = INDEX_BATCH if indexed else scoring_batch(data.n_products)
    work = RankBatch(model, customers, earlier, top_in.shape[1], indexed, np.append(starts, len(pairs)), owner,
                     pairs["p"].to_numpy() if sampled else None, negatives, again)
    short: list[np.ndarray] = []  # customers whose lists from the index came back short
    executor = current()
    if executor is not None:  # batches on a cluster's workers, each holding the model
        done = executor.map(work, np.arange(len(customers)), batch)
    else:
        done = ((np.arange(start, min(start + batch, len(customers))),
                 work(np.arange(start, min(start + batch, len(customers)))))
                for start in range(0, len(customers), batch))
    for at, out in done:
        top_in[at], top_ex[at] = out["top_including"], out["top_excluding"]
        short.append(at[out["short"]])
        if sampled:  # every test customer has at least one pair
            j = np.concatenate([np.arange(work.stops[i], work.stops[i + 1]) for i in at])
            ranks_in[j] = np.concatenate(list(out["ranks_including"]))
            ranks_ex[j] = np.concatenate(list(out["ranks_excluding"]))
    short_rows = np.concatenate(short) if short else np.zeros(0, np.int64)
    every = scoring_batch(data.n_products)
    for start in range(0, len(short_rows), every):  # ranked from every score instead
        at = short_rows[start:start + every]
        top_in[at], top_ex[at], _, _ = _score_lists(model, customers[at].tolist(), [earlier[i] for i in at], width)
    ranked = Ranked(customers, truth, earlier, top_ex, top_in)
    if sampled:
        ranked.ranks_excluding, ranked.ranks_including = ranks_ex, ranks_in
    return ranked


@dataclass
class RankBatch:
    """The body of :func:`rank_customers` for a batch of test customers (positions (b,), in any order), here or on a
    cluster's worker (:mod:`core.executor`, which sends it once to each worker): ``top_including`` and
    ``top_excluding`` (b, width) int64, ``short`` (b,) bool (an index's list came back short: ranked again from
    every score), and, when ``targets`` are given, each customer's sampled ranks of their test pairs, with and
    without earlier purchases (b,) object arrays of int64 arrays."""
    model: Recommender
    customers: np.ndarray  # (q,) the test customers' ids
    earlier: list[np.ndarray]  # q arrays of distinct product rows bought before the cutoff
    width: int  # the lists' length (at most the number of products)
    indexed: bool  # lists from the model's index (:func:`_index_lists`), else from every score
    stops: np.ndarray  # (q + 1,) customer i's test pairs are pairs[stops[i]:stops[i + 1]]; stops[q] = their number
    owner: np.ndarray  # (m,) the customer of each test pair
    targets: np.ndarray | None = None  # (m,) the pairs' product rows: sampled ranks wanted
    negatives: np.ndarray | None = None  # (m, n_sampled) each pair's sampled negatives
    again: np.ndarray | None = None  # (m,) bool, indexed only: the pair's product was bought before the cutoff
    threads: int = 1  # CPUs of a cluster's worker (Ray sets its OpenMP and torch threads to them)

    def __call__(self, at: np.ndarray) -> dict[str, np.ndarray]:
        at = np.asarray(at, dtype=np.int64)
        ids, earlier = self.customers[at].tolist(), [self.earlier[i] for i in at]
        lacking = np.zeros(len(at), dtype=bool)
        if self.indexed:
            top_in, top_ex, short = _index_lists(self.model, ids, earlier, self.width)
            lacking[short] = True
        else:
            top_in, top_ex, scores, masked = _score_lists(self.model, ids, earlier, self.width)
        out = {"top_including": top_in, "top_excluding": top_ex, "short": lacking}
        if self.targets is None:
            return out
        counts = self.stops[at + 1] - self.stops[at]  # each customer's test pairs, in the order of ``at``
        j = np.concatenate([np.arange(self.stops[i], self.stops[i + 1]) for i in at]) if len(at) else at
        targets, negatives = self.targets[j], self.negatives[j]
        if self.indexed:  # the pairs' scores alone: the target first, then its negatives
            candidates = np.concatenate([targets[:, None], np.maximum(negatives, 0)], axis=1)
            s = self.model.score_pairs(self.customers[self.owner[j]].tolist(), candidates)
            ranks_in = ranks_among(s[:, 0], s[:, 1:], targets, negatives)
            # a product bought again is one of the earlier purchases a list without them never shows
            ranks_ex = ranks_among(np.where(self.again[j], -np.inf, s[:, 0]), s[:, 1:], targets, negatives)
        else:
            query = np.repeat(np.arange(len(at)), counts)  # each pair's row in this batch's scores
            ranks_in = sampled_ranks(scores, query, targets, negatives)
            ranks_ex = sampled_ranks(masked, query, targets, negatives)
        cuts = np.cumsum(counts)[:-1]
        out["ranks_including"] = _ragged(np.split(ranks_in, cuts))
        out["ranks_excluding"] = _ragged(np.split(ranks_ex, cuts))
        return out


def _ragged(parts: list[np.ndarray]) -> np.ndarray:
    """(len(parts),) object array holding the arrays as they are (np.array would stack equal lengths)."""
    out = np.empty(len(parts), dtype=object)
    out[:] = parts
    return out


def _score_lists(model: Recommender, ids: list[str], earlier: list[np.ndarray], width: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The customers' top ``width`` with and without their earlier purchases from every product's score, and the
    scores both ways (earlier purchases at -inf in the second)."""
    scores = np.asarray(model.score(ids), dtype=np.float32)
    masked = scores.copy()
    for i, e in enumerate(earlier):
        masked[i, e] = -np.inf
    return top_k(scores, width)[0], top_k(masked, width)[0], scores, masked


def _index_lists(model: Recommender, ids: list[str], earlier: list[np.ndarray], width: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The customers' top ``width`` with and without their earlier purchases (distinct rows) from one search of the
    model's own :meth:`~core.recs.contract.Recommender.recommend`, deep enough for both, and the positions of the
    customers for whom either came short (a catalogue with fewer products than a list and its exclusions, or an
    index that caps how deep it searches)."""
    deep = model.recommend(ids, width + max((len(e) for e in earlier), default=0))[0]
    with_earlier = np.full((len(ids), width), -1, dtype=np.int64)
    without = np.full((len(ids), width), -1, dtype=np.int64)
    for i, (rows, e) in enumerate(zip(deep, earlier)):
        rows = rows[rows >= 0]
        with_earlier[i, :min(width, len(rows))] = rows[:width]
        kept = rows[~np.isin(rows, e)][:width]
        without[i, :len(kept)] = kept
    return with_earlier, without, np.flatnonzero((with_earlier < 0).any(axis=1) | (without < 0).any(axis=1))


def _mean(values: np.ndarray) -> float | None:
    """The mean, or None (JSON null) when there is nothing to average."""
    return float(np.mean(values)) if len(values) else None


def _ci(values: np.ndarray, cfg: EvalConfig) -> tuple[float | None, float | None]:
    if not len(values):
        return None, None
    return bootstrap_ci(values, cfg.n_bootstrap, cfg.seed)


@dataclass
class CustomerMetrics:
    """One model's values per test customer, one way (earlier purchases dropped from the lists or not),
    for one fit or averaged over seeds. Rows are the window's test customers, sorted: the same rows for
    every model, so two models' arrays pair up customer by customer."""
    slices: np.ndarray  # (q,) str "new" / "sparse" / "warm"
    recall: np.ndarray  # (q,) float64 Recall@k
    ndcg: np.ndarray  # (q,) float64 NDCG@k
    ap: np.ndarray  # (q,) float64 AP@map_k
    hit: np.ndarray  # (q,) float64 hit@k
    cold_recall: np.ndarray  # (q,) float64 recall over the customer's cold products; NaN if they bought none
    warm_recall: np.ndarray  # (q,) float64 likewise over warm products
    sampled_hit: np.ndarray  # (m,) float64 per distinct test pair, 1 if it made the SAMPLED top k; may be empty
    never_bought: np.ndarray  # (q,) float64 share of the top k that nobody bought before the cutoff
    coverage: float | None  # coverage@k of the lists (one number; the mean over seeds when averaged)

    @classmethod
    def average(cls, each: Sequence["CustomerMetrics"]) -> "CustomerMetrics":
        """The per-customer (and per-pair) mean over fits of the same model on the same window."""
        mean = lambda name: np.mean([getattr(m, name) for m in each], axis=0)  # noqa: E731
        covers = [m.coverage for m in each if m.coverage is not None]
        return cls(each[0].slices, *(mean(n) for n in ("recall", "ndcg", "ap", "hit", "cold_recall", "warm_recall",
                                                       "sampled_hit", "never_bought")),
                   float(np.mean(covers)) if covers else None)

    def slice_recall(self, name: str) -> np.ndarray:
        """(q,) Recall@k of the customers in slice ``name`` ("new", "sparse", "warm"), NaN elsewhere."""
        return np.where(self.slices == name, self.recall, np.nan)


def _customer_metrics(ranked: Ranked, data: RecData, cfg: EvalConfig) -> dict[str, CustomerMetrics]:
    """Both ways' per-customer metrics of ranked lists: ``{"excluding": ..., "including": ...}``."""
    k, mk = cfg.k, cfg.map_k
    n_earlier = np.array([len(data.history(c)) for c in ranked.customers.tolist()], dtype=np.int64)
    slices = customer_slice(n_earlier)
    cold = data.popularity() == 0  # (n_products,) nobody bought it before the cutoff
    out = {}
    for way in ("excluding", "including"):
        top = getattr(ranked, f"top_{way}")
        per = ranking_metrics(top, ranked.truth, k, mk)
        item_recall = {}
        for name, keep in (("cold", cold), ("warm", ~cold)):
            truth = [t[keep[t]] for t in ranked.truth]
            has = np.array([len(t) > 0 for t in truth], dtype=bool)
            recall = ranking_metrics(top, truth, k, mk)["recall"] if len(truth) else np.empty(0)
            item_recall[name] = np.where(has, recall, np.nan)
        ranks = getattr(ranked, f"ranks_{way}")
        out[way] = CustomerMetrics(slices, per["recall"], per["ndcg"], per["ap"], per["hit"], item_recall["cold"],
                                   item_recall["warm"],
                                   np.empty(0) if ranks is None else (ranks < k).astype(np.float64),
                                   cold[top[:, :k]].mean(axis=1) if len(top) else np.empty(0),
                                   coverage(top, data.n_products, k) if len(top) else None)
    return out


def _given(values: np.ndarray) -> np.ndarray:
    return values[~np.isnan(values)]


def _summary(m: CustomerMetrics, cfg: EvalConfig) -> dict[str, float | None]:
    """The flat metric keys of :func:`evaluate_model` from per-customer values."""
    k, mk = cfg.k, cfg.map_k
    out: dict[str, float | None] = {
        f"recall_at_{k}": _mean(m.recall),
        f"ndcg_at_{k}": _mean(m.ndcg),
        f"map_at_{mk}": _mean(m.ap),
        f"hit_rate_at_{k}": _mean(m.hit),
        f"coverage_at_{k}": m.coverage,
        f"sampled_recall_at_{k}": _mean(m.sampled_hit),
        f"never_bought_at_{k}": _mean(m.never_bought),
    }
    for name in ("new", "sparse", "warm"):
        out[f"recall_at_{k}_{name}_customers"] = _mean(_given(m.slice_recall(name)))
    out[f"recall_at_{k}_cold_items"] = _mean(_given(m.cold_recall))
    out[f"recall_at_{k}_warm_items"] = _mean(_given(m.warm_recall))
    for key, values in ((f"recall_at_{k}", m.recall), (f"ndcg_at_{k}", m.ndcg), (f"map_at_{mk}", m.ap),
                        (f"hit_rate_at_{k}", m.hit), (f"recall_at_{k}_cold_items", _given(m.cold_recall))):
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = _ci(values, cfg)
    return out


def evaluate_model(model: Recommender, data: RecData, test: pd.DataFrame, cfg: EvalConfig,
                   exclude_bought: bool) -> dict[str, float]:
    """Test metrics of a model fitted on ``data`` (purchases before the cutoff), over ``test`` (the
    purchases of the test window), every product a candidate. With ``exclude_bought`` a customer's
    earlier purchases are never in their list. Flat keys (k = 10, map_k = 12 by default):
    ``recall_at_10``, ``ndcg_at_10``, ``map_at_12``, ``hit_rate_at_10``, ``coverage_at_10``, ``never_bought_at_10``
    (the mean share of a top 10 going to products nobody bought before the cutoff),
    ``sampled_recall_at_10`` (SAMPLED: 1 + 99 candidates), ``recall_at_10_{new,sparse,warm}_customers``,
    ``recall_at_10_{cold,warm}_items``, ``<metric>_ci_low`` / ``_ci_high`` (bootstrap 95% over customers)
    for recall, ndcg, map, hit rate and cold-item recall, ``recall_at_10_excluding`` /
    ``recall_at_10_including`` (both ways), ``exclude_bought`` and ``id_only``. A metric over no
    customers is None."""
    both = _customer_metrics(rank_customers(model, data, test, cfg, sampled=True), data, cfg)
    return _flat(both, cfg, exclude_bought, model.id_only)


def _flat(both: dict[str, CustomerMetrics], cfg: EvalConfig, exclude_bought: bool, id_only: bool) -> dict:
    k = cfg.k
    return {**_summary(both["excluding" if exclude_bought else "including"], cfg),
            f"recall_at_{k}_excluding": _mean(both["excluding"].recall),
            f"recall_at_{k}_including": _mean(both["including"].recall),
            "exclude_bought": bool(exclude_bought), "id_only": id_only}


# ---------------------------------------------------------------- paired comparisons

def paired_values(m: CustomerMetrics, k: int = 10) -> dict[str, np.ndarray]:
    """(q,) per-customer values of each of :func:`paired_keys`, NaN for customers outside the slice (the
    cold-item slice's customers are those who bought a cold product)."""
    return dict(zip(paired_keys(k), (m.recall, m.slice_recall("new"), m.slice_recall("sparse"),
                                     m.slice_recall("warm"), m.cold_recall)))


def coverage_ceiling(n_customers: int, n_products: int, k: int = 10) -> float:
    """The highest coverage@k the test customers' lists can reach: q lists of k products hold at most
    q * k distinct products, so min(1, q * k / n_products)."""
    return min(1.0, n_customers * k / n_products) if n_products else 0.0


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
    if not cfg.seeds:
        raise ValueError("seeds is empty: learned models need at least one seed")
    split = sample_customers(temporal_split(catalog.purchases, cfg.split.cutoff, cfg.split.end),
                             cfg.split.max_customers, cfg.seed)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings,
                    cfg.hybrid_weight)
    key_cfg = {**asdict(cfg), "models": sorted(models), "version": EVAL_VERSION, "fits": _fit_configs(models)}
    return split, data, key_cfg, digest(data_fingerprint(data), _test_digest(split.test))


def _fit_configs(models: list[str]) -> dict[str, dict]:
    """What each stored model's fit depends on besides the data (its cache config, with its default settings and
    seed 0), by name: a stored evaluation is not served once a model's settings or training change."""
    configs = {}
    for name in sorted(set(models) | {part for m in models for part in BLENDS.get(m, ())}):  # a blend's parts too
        try:
            model = create_recommender(name)
        except ValueError:  # not the registry's (a caller's own): nothing stored to key
            continue
        if SAVES_STATE in model.capabilities:
            configs[name] = model.cache_config()
    return configs


def evaluate(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig = EvalConfig(),
             cache: ArtefactCache | None = None, progress: Progress | None = None) -> EvalReport:
    """Fit each named model on the purchases before the cutoff and measure it on the test window.

    Choices are made on the validation window (:func:`validation_split`): each baseline with a grid
    (:func:`core.recs.contract.tuning_grid`) keeps the settings with the best validation Recall@k (one
    seed, the first); whether to drop earlier purchases (``exclude_bought="auto"``: the better way on
    validation, ties not dropping); the best baseline (the highest validation Recall@k), which every
    model is compared with in pairs; and for each model that is not a baseline, its new-customer
    path: if its validation Recall@k on new customers does not beat segment popularity's, its
    customers with no history are served by segment popularity (:class:`core.recs.contract.NewCustomerFallback`).
    Seeded models (:func:`core.recs.contract.is_seeded`) are fitted once per ``cfg.seeds``, on validation
    and on the test, and their per-customer values averaged over seeds; the others once.

    Returns the report (:class:`core.recs.report.EvalReport`); its ``to_dict()`` is the JSON ``python -m core
    evaluate`` prints: ``{"split": {"cutoff", "end", "exclude_bought", "validation": {window and its
    counts}, **Split.counts()}, "coverage_ceiling", "new_customer_reference": {"model", "params",
    "validation_recall_at_10_new_customers"}, "paired": PairedReport.to_dict(), "models": {name:
    evaluate_model's keys (seed-averaged) + seeds, recall_at_10_seed_min / _max,
    recall_at_10_cold_items_seed_min / _max, params, grid, new_customer_path, verdict, train_s,
    model_train_s, validation_recall_at_10_excluding / _including / _new_customers}}``. ``seeds`` is []
    for a deterministic model; ``grid`` lists each setting tried with its validation Recall@k (empty
    when there was one); ``train_s`` is the mean wall time of :func:`core.recs.contract.fitted` per fit (a
    load when the fitted model was cached), ``model_train_s`` the model's own ``train_s_`` when it
    records one. With a cache the whole result is an artefact (see :func:`cached_evaluation`).
    """
    split, data, key_cfg, fingerprint = _prepare(catalog, embeddings, models, cfg)

    def compute() -> dict[str, np.ndarray]:
        return json_arrays(_evaluate(catalog, embeddings, models, cfg, split, data, cache, progress), "json")
    if cache is None:
        return EvalReport.from_arrays(compute())
    return EvalReport.from_arrays(cache.get_or_compute(KIND, key_cfg, fingerprint, compute))


def _exclude(both: dict[str, CustomerMetrics], cfg: EvalConfig) -> bool:
    """Drop earlier purchases? Fixed by ``cfg.exclude_bought``, or with "auto" whichever way had the higher
    Recall@k on ``both`` (validation values; ties: not dropping)."""
    if cfg.exclude_bought != "auto":
        return cfg.exclude_bought == "yes"
    return (_mean(both["excluding"].recall) or 0.0) > (_mean(both["including"].recall) or 0.0)


def _best_way_recall(both: dict[str, CustomerMetrics], cfg: EvalConfig) -> float:
    """Validation Recall@k in the way :func:`_exclude` would choose (0 when there are no customers)."""
    return _mean(both["excluding" if _exclude(both, cfg) else "including"].recall) or 0.0


class _Validator:
    """Fits and scores models on the validation window, each (name, settings, seed) once."""

    def __init__(self, catalog: Catalog, embeddings: Embeddings, cfg: EvalConfig, cache: ArtefactCache | None,
                 progress: Progress | None):
        self.cfg, self.cache, self.progress = cfg, cache, progress
        self.split = sample_customers(validation_split(catalog.purchases, cfg.split), cfg.split.max_customers,
                                      cfg.seed)
        self.data = rec_data(catalog.products, catalog.customers, catalog.purchases, self.split.cutoff,
                             embeddings, cfg.hybrid_weight)
        self._done: dict[tuple, dict[str, CustomerMetrics]] = {}
        self._tuned: dict[str, tuple[dict, list[dict]]] = {}

    def metrics(self, name: str, params: dict, seeds: Sequence[int]) -> dict[str, CustomerMetrics]:
        """Both ways' per-customer validation metrics, averaged over ``seeds``."""
        each = []
        for seed in seeds:
            key = (name, json.dumps(params, sort_keys=True), seed)
            if key not in self._done:
                model = fitted(name, self.data, self.cache, seed, self.progress, params)
                ranked = rank_customers(model, self.data, self.split.test, self.cfg)
                self._done[key] = _customer_metrics(ranked, self.data, self.cfg)
            each.append(self._done[key])
        return {way: CustomerMetrics.average([b[way] for b in each]) for way in ("excluding", "including")}

    def tune(self, name: str) -> tuple[dict, list[dict]]:
        """The settings of ``name`` with the best validation Recall@k over its grid (first seed; ties: the
        earlier setting) and the grid's table ``[{"params", "validation_recall_at_10"}]`` (empty when the
        grid has one setting)."""
        if name not in self._tuned:
            grid = tuning_grid(name)
            table = []
            if len(grid) > 1:
                for i, params in enumerate(grid):
                    if self.progress:
                        self.progress(f"tuning {name}", i, len(grid))
                    recall = _best_way_recall(self.metrics(name, params, self.cfg.seeds[:1]), self.cfg)
                    table.append({"params": params, f"validation_recall_at_{self.cfg.k}": recall})
                if self.progress:
                    self.progress(f"tuning {name}", len(grid), len(grid))
            best = max(range(len(grid)), key=lambda i: (table[i][f"validation_recall_at_{self.cfg.k}"], -i)) \
                if table else 0
            self._tuned[name] = (grid[best], table)
        return self._tuned[name]


NEW_CUSTOMER_REFERENCE = "segment_popularity"  # what serves the new customers of a model that does no better


def _evaluate(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig, split: Split,
              data: RecData, cache: ArtefactCache | None, progress: Progress | None) -> dict:
    k = cfg.k
    val = _Validator(catalog, embeddings, cfg, cache, progress)
    seeds_of = {name: list(cfg.seeds) if is_seeded(name) else [] for name in models}
    learned = [name for name in models if name not in BASELINES]
    reference_params, reference_new = None, None
    if learned:
        reference_params, _ = val.tune(NEW_CUSTOMER_REFERENCE)
        reference_val = val.metrics(NEW_CUSTOMER_REFERENCE, reference_params, cfg.seeds[:1])
        reference_new = _mean(_given(reference_val["including"].slice_recall("new")))
    fallback = None
    results, values, val_recall = {}, {}, {}
    for i, name in enumerate(models):
        if progress:
            progress("evaluating recommenders", i, len(models))
        params, table = val.tune(name)
        fits = seeds_of[name] or list(cfg.seeds[:1])
        val_both = val.metrics(name, params, fits)
        exclude = _exclude(val_both, cfg)
        val_recall[name] = _best_way_recall(val_both, cfg)
        val_new = _mean(_given(val_both["including"].slice_recall("new")))  # no history: the same either way
        path = "model"
        if name in learned and val_new is not None and reference_new is not None and not val_new > reference_new:
            path = NEW_CUSTOMER_REFERENCE
            if fallback is None:
                fallback = fitted(NEW_CUSTOMER_REFERENCE, data, cache, cfg.seeds[0], progress, reference_params)
        per_seed, times, own = [], [], []
        for seed in fits:
            t0 = time.perf_counter()
            model = fitted(name, data, cache, seed, progress, params)
            times.append(time.perf_counter() - t0)
            if model.train_s_ is not None:
                own.append(float(model.train_s_))
            if path != "model":
                model = NewCustomerFallback(model, fallback)
            ranked = rank_customers(model, data, split.test, cfg, sampled=True)
            per_seed.append(_customer_metrics(ranked, data, cfg))
        way = "excluding" if exclude else "including"
        both = {w: CustomerMetrics.average([b[w] for b in per_seed]) for w in ("excluding", "including")}
        values[name] = paired_values(both[way], k)
        seed_recall = [_mean(b[way].recall) for b in per_seed]
        seed_cold = [_mean(_given(b[way].cold_recall)) for b in per_seed]
        spread = lambda xs, f: None if any(x is None for x in xs) else f(xs)  # noqa: E731
        results[name] = {**_flat(both, cfg, exclude, model.id_only),
                         "seeds": seeds_of[name],
                         f"recall_at_{k}_seed_min": spread(seed_recall, min),
                         f"recall_at_{k}_seed_max": spread(seed_recall, max),
                         f"recall_at_{k}_cold_items_seed_min": spread(seed_cold, min),
                         f"recall_at_{k}_cold_items_seed_max": spread(seed_cold, max),
                         "params": params, "grid": table, "new_customer_path": path,
                         "train_s": float(np.mean(times)), "model_train_s": float(np.mean(own)) if own else None,
                         f"validation_recall_at_{k}_excluding": _mean(val_both["excluding"].recall),
                         f"validation_recall_at_{k}_including": _mean(val_both["including"].recall),
                         f"validation_recall_at_{k}_new_customers": val_new}
    if progress:
        progress("evaluating recommenders", len(models), len(models))
    baselines = [name for name in models if name in BASELINES]
    reference = max(baselines, key=lambda b: (val_recall[b], -baselines.index(b))) if baselines else None
    report = paired_report(values, baselines, reference, k, cfg.n_bootstrap, cfg.seed)
    out = {"split": {**split.window(), "exclude_bought": cfg.exclude_bought,
                     "validation": {**val.split.window(), **val.split.counts()}, **split.counts()},
           "coverage_ceiling": coverage_ceiling(len(split.test_customers()), data.n_products, k),
           "new_customer_reference": {"model": NEW_CUSTOMER_REFERENCE, "params": reference_params,
                                      f"validation_recall_at_{k}_new_customers": reference_new},
           "paired": report.to_dict(), "models": results}
    for name in models:
        results[name]["verdict"] = verdict(report, name)
    return out


def cached_evaluation(catalog: Catalog, embeddings: Embeddings, models: list[str], cfg: EvalConfig,
                      cache: ArtefactCache) -> EvalReport | None:
    """The result :func:`evaluate` stored for exactly this catalogue, embeddings, models (any order)
    and config, or None; computes nothing but the data's fingerprint."""
    _, _, key_cfg, fingerprint = _prepare(catalog, embeddings, models, cfg)
    return EvalReport.from_arrays(cache.load(KIND, ArtefactCache.key(key_cfg, fingerprint)))


def as_evaluated(name: str, data: RecData, result: EvalReport | None, cache: ArtefactCache | None = None,
                 seed: int = 0, progress: Progress | None = None) -> Recommender:
    """The named recommender fitted on ``data`` as the evaluation ``result`` served it: with the settings it
    chose on its validation window (``params``) and, where it chose so, segment popularity for the customers
    with no history (:class:`core.recs.contract.NewCustomerFallback`). Without a result (or for a model it did
    not evaluate), the model's defaults. The fits come from the artefact cache the evaluation filled."""
    entry = result.models.get(name) if result is not None else None
    model = fitted(name, data, cache, seed, progress, (entry.params if entry else None) or None)
    path = (entry.new_customer_path if entry else None) or "model"
    if path != "model":
        reference = result.new_customer_reference or {}
        params = reference.get("params") if reference.get("model") == path else None
        model = NewCustomerFallback(model, fitted(path, data, cache, seed, progress, params or None))
    return model
