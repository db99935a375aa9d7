"""The ranking stage: every retriever proposes candidates (:mod:`core.recs.candidates`), a LightGBM ranker
(``lambdarank``, grouped by customer) orders them by features no single retriever sees (:mod:`core.recs.rank_features`).

Training, inside :meth:`RankerRecommender.fit` on purchases before a cutoff C: the last ``train_windows + 1`` label
windows of ``window_days`` before C. For each window [s, e) the retrievers are fitted on the purchases before s, the
window's customers get their candidates and features from those purchases alone, and a candidate's label is whether
they bought it in the window (negatives: the candidates they did not buy). LightGBM learns on the older windows and
is early-stopped, and its settings chosen from a small grid, on the last window [C - window, C): the validation
window. It is then trained again on every window with the chosen settings and rounds, and the retrievers fitted on
everything before C serve. Scores: a customer's candidates get the booster's score, every other product scores below
all of them (so its lists are a reordering of its candidates).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence

import numpy as np
import pandas as pd

from core.progress import Progress
from core.recs.baselines.base import popularity_prior
from core.recs.candidates import (CandidateConfig, CandidateRecall, Candidates, CustomerBatch, candidate_recall,
                                  known_customers, liked_customers, propose)
from core.recs.contract import REASONS, SAVES_STATE, SCORE_ENTRIES, RecData, Recommender
from core.recs.rank_features import SOURCE_LABELS, FeatureContext, feature_names

REVISION = 1  # raised when training changes what a config fits (part of the cache key)
FUSION_K = 60.0  # reciprocal-rank fusion's constant, the order used when there was nothing to learn from


@dataclass(frozen=True)
class RankerConfig:
    seed: int = 0  # LightGBM's and the learned retrievers'
    # label windows: as long as the evaluation's test window (the H&M sample's quarter); shortened on a shop whose
    # purchases span less than train_windows + 2 windows, so the oldest window has a window of history before it
    window_days: float = 91.0
    train_windows: int = 2  # windows LightGBM learns from before the validation (early-stopping) window
    max_window_customers: int = 3000  # a window's customers at most (a seeded sample): bounds training on big shops
    rounds: int = 1000  # boosting rounds at most; early stopping on the validation window picks the number
    patience: int = 50  # rounds without a better validation NDCG@10 before stopping
    # (num_leaves, learning_rate, min_data_in_leaf) tried, kept by validation NDCG@10; the first is LightGBM's default
    grid: tuple[tuple[int, float, int], ...] = ((31, 0.05, 20), (15, 0.05, 100), (63, 0.03, 50))
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    batch: int = 64  # customers proposed for at once, at most (each source's full scores of them are held)
    # the gain of a bought never-bought product in the ranking loss and the validation NDCG (a bought product that
    # somebody had bought before gains 1): above 1 the ranker weighs finding never-bought products higher
    cold_gain: float = 1.0


class Retrievers(Protocol):
    """Fits the candidate sources' recommenders (the registry's, through its cache), supplied by the registry: this
    module sits below it."""

    def fit(self, name: str, data: RecData, seed: int, progress: Progress | None = None) -> Recommender: ...

    def config(self, name: str) -> dict | None: ...


@dataclass
class Window:
    """One label window's training groups."""
    start: pd.Timestamp
    end: pd.Timestamp
    features: np.ndarray  # (m, f) float32
    labels: np.ndarray  # (m,) float32 0 not bought in the window, 1 bought, 2 bought and never bought before it
    groups: np.ndarray  # (g,) int64 pairs per customer (customers with at least one bought candidate)
    recall: CandidateRecall


class RankerRecommender(Recommender):
    """Candidates from every retriever, ordered by LightGBM (see the module's docstring).

    After fit: ``booster_`` (lightgbm.Booster, None when no window had a purchase to learn from: candidates are then
    ordered by reciprocal-rank fusion of the sources), ``retrievers_`` {source: fitted recommender on ``data_``},
    ``context_`` the features' :class:`FeatureContext` of ``data_``, ``report_`` what training saw and chose (JSON:
    windows, candidate recall on the validation window, the grid, the chosen settings and rounds), ``train_s_``."""
    name = "ranker"
    capabilities = frozenset({SAVES_STATE, REASONS})

    def __init__(self, cfg: RankerConfig = RankerConfig(), retrievers: Retrievers | None = None):
        self.cfg, self.parts = cfg, retrievers

    def cache_config(self) -> dict:
        parts = {s: self.parts.config(s) for s in self._retriever_names()} if self.parts else {}
        return {"model": self.name, "revision": REVISION, **asdict(self.cfg), "retrievers": parts,
                "features": list(feature_names(self.cfg.candidates.sizes()))}

    def _retriever_names(self) -> list[str]:
        return sorted(set(self.cfg.candidates.models()) | {"segment_popularity"})  # the features' age bands

    # ------------------------------------------------------------ candidates and features

    def _retrievers(self, data: RecData, progress: Progress | None) -> dict:
        if self.parts is None:
            raise ValueError("the ranker needs its retrievers' fitter (create it through core.recs.registry)")
        return {n: self.parts.fit(n, data, self.cfg.seed, progress) for n in self._retriever_names()}

    def _pairs(self, retrievers: dict, context: FeatureContext, customers: CustomerBatch
               ) -> tuple[Candidates, np.ndarray]:
        candidates = propose(retrievers, customers, self.cfg.candidates)
        return candidates, context.features(customers, candidates)

    def window_pairs(self, data: RecData, start: pd.Timestamp, end: pd.Timestamp, progress: Progress | None = None
                     ) -> tuple[np.ndarray, Candidates, np.ndarray, np.ndarray, CandidateRecall] | None:
        """Every (customer, candidate) pair of window [start, end) of ``data``'s purchases: the window's customers (at
        most ``max_window_customers``, sorted), their candidates and features from the purchases before ``start``
        alone, the labels (0 not bought in the window, 1 bought, 2 bought and never bought before it) and the
        candidate recall. None when nothing was bought in the window or nothing before it."""
        window = data.purchases[(data.purchases["timestamp"] >= start) & (data.purchases["timestamp"] < end)]
        before = data.before(start)
        if not len(window) or not len(before.purchases):
            return None
        rows = window["product_id"].astype(str).map(data.product_row)
        bought = pd.DataFrame({"c": window["customer_id"].astype(str).to_numpy(), "p": rows.to_numpy()}).dropna()
        bought = bought.astype({"p": np.int64}).drop_duplicates().sort_values(["c", "p"])
        ids = np.unique(bought["c"].to_numpy())
        if len(ids) > self.cfg.max_window_customers:
            rng = np.random.default_rng([self.cfg.seed, int(start.value // 10**9)])
            ids = np.sort(rng.choice(ids, self.cfg.max_window_customers, replace=False))
        truth_of = {c: g["p"].to_numpy() for c, g in bought[bought["c"].isin(ids)].groupby("c")}
        retrievers = self._retrievers(before, progress)
        context = FeatureContext.build(before, retrievers["segment_popularity"])
        feats, labels, cands = [], [], []
        unsold = before.popularity() == 0
        truth = [truth_of[c] for c in ids.tolist()]
        step = self._batch(before.n_products)
        for lo in range(0, len(ids), step):
            batch = known_customers(before, ids[lo:lo + step].tolist())
            c, x = self._pairs(retrievers, context, batch)
            y = np.zeros(len(c), np.float32)
            for i in range(len(batch)):
                a, b = c.stops[i], c.stops[i + 1]
                y[a:b] = np.isin(c.product[a:b], truth[lo + i])
            y[(y > 0) & unsold[c.product]] = 2.0
            feats.append(x)
            labels.append(y)
            cands.append(c)
        candidates = _concat(cands)
        return ids, candidates, np.concatenate(feats), np.concatenate(labels), candidate_recall(candidates, truth,
                                                                                               unsold)

    def _window(self, data: RecData, start: pd.Timestamp, end: pd.Timestamp, progress: Progress | None
                ) -> Window | None:
        """The training groups of window [start, end): :meth:`window_pairs` less the customers who bought none of
        their candidates (a group with no purchase teaches nothing)."""
        pairs = self.window_pairs(data, start, end, progress)
        if pairs is None:
            return None
        _, candidates, x, y, recall = pairs
        sizes = np.diff(candidates.stops)
        owner = candidates.customer
        useful = np.bincount(owner, y, minlength=len(sizes)) > 0
        keep = useful[owner]
        return Window(start, end, x[keep], y[keep], sizes[useful], recall)

    # ------------------------------------------------------------ training

    def windows(self, data: RecData) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The label windows [start, end), oldest first; the last ends at the cutoff (the validation window)."""
        n = self.cfg.train_windows + 1
        first = data.purchases["timestamp"].min()
        span = (data.cutoff - first) / pd.Timedelta(days=1) if len(data.purchases) else 0.0
        days = min(self.cfg.window_days, span / (n + 1)) if span > 0 else self.cfg.window_days
        length = pd.Timedelta(days=max(days, 1.0))
        return [(data.cutoff - (n - i) * length, data.cutoff - (n - i - 1) * length) for i in range(n)]

    def fit(self, data: RecData, progress: Progress | None = None) -> "RankerRecommender":
        import lightgbm as lgb  # imported when a ranker is trained: the registry and the service import this lazily

        t0 = time.perf_counter()
        spans = self.windows(data)
        windows = []
        for i, (start, end) in enumerate(spans):
            if progress:
                progress("ranker: label windows", i, len(spans))
            w = self._window(data, start, end, progress)
            windows.append(w)
        if progress:
            progress("ranker: label windows", len(spans), len(spans))
        valid = windows[-1] if windows and windows[-1] is not None and len(windows[-1].groups) else None
        train = [w for w in windows[:-1] if w is not None and len(w.groups)]
        report = {"windows": [{"start": str(s.date()), "end": str(e.date()),
                               "customers_with_a_bought_candidate": int(len(w.groups)) if w else 0,
                               "pairs": int(len(w.labels)) if w else 0,
                               "candidate_recall": w.recall.to_dict() if w else None}
                              for (s, e), w in zip(spans, windows)],
                  "features": list(feature_names(self.cfg.candidates.sizes()))}
        self.booster_ = None
        if train or valid:
            self.booster_ = self._train(lgb, train, valid, report)
        self.report_ = report
        self.retrievers_ = self._retrievers(data, progress)
        self.context_ = FeatureContext.build(data, self.retrievers_["segment_popularity"])
        self.data_ = data
        self.prior_ = popularity_prior(data.popularity())
        self.train_s_ = time.perf_counter() - t0
        report["train_s"] = self.train_s_
        return self

    def _params(self, leaves: int, rate: float, min_data: int) -> dict:
        return {"objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": leaves,
                "learning_rate": rate, "min_data_in_leaf": min_data, "feature_fraction": 0.8, "bagging_fraction": 0.8,
                "bagging_freq": 1, "lambdarank_truncation_level": 20,
                "label_gain": [0.0, 1.0, float(self.cfg.cold_gain)], "seed": self.cfg.seed, "deterministic": True,
                "force_row_wise": True, "num_threads": 0, "verbosity": -1}

    def _train(self, lgb, train: list[Window], valid: Window | None, report: dict):
        """Early-stopped on ``valid`` for each setting of the grid; the best setting retrained on every window."""
        names = report["features"]
        every = train + ([valid] if valid is not None else [])
        dataset = lambda ws: lgb.Dataset(np.concatenate([w.features for w in ws]),  # noqa: E731
                                         np.concatenate([w.labels for w in ws]),
                                         group=np.concatenate([w.groups for w in ws]), feature_name=names,
                                         free_raw_data=False)
        grid, best = [], None
        if train and valid is not None:
            fit_on, check = dataset(train), dataset([valid])
            for leaves, rate, min_data in self.cfg.grid:
                booster = lgb.train(self._params(leaves, rate, min_data), fit_on, self.cfg.rounds, valid_sets=[check],
                                    callbacks=[lgb.early_stopping(self.cfg.patience, verbose=False)])
                score = float(booster.best_score["valid_0"]["ndcg@10"])
                grid.append({"num_leaves": leaves, "learning_rate": rate, "min_data_in_leaf": min_data,
                             "rounds": int(booster.best_iteration), "validation_ndcg_at_10": score})
                if best is None or score > best[0]:
                    best = (score, (leaves, rate, min_data), int(booster.best_iteration))
        if best is None:  # one window only: nothing to stop early on; the default setting, a fixed number of rounds
            best = (None, self.cfg.grid[0], 100)
        report["grid"] = grid
        report["chosen"] = {"num_leaves": best[1][0], "learning_rate": best[1][1], "min_data_in_leaf": best[1][2],
                            "rounds": max(best[2], 1), "validation_ndcg_at_10": best[0]}
        report["trained_on_pairs"] = int(sum(len(w.labels) for w in every))
        return lgb.train(self._params(*best[1]), dataset(every), max(best[2], 1))

    # ------------------------------------------------------------ scoring

    def ranked(self, customers: CustomerBatch) -> tuple[Candidates, np.ndarray, np.ndarray]:
        """The customers' candidates, their features (m, f) and the ranker's score of each (m,) float32."""
        candidates, x = self._pairs(self.retrievers_, self.context_, customers)
        if self.booster_ is not None:
            scores = self.booster_.predict(x).astype(np.float32) if len(x) else np.zeros(0, np.float32)
        else:
            with np.errstate(invalid="ignore"):
                scores = np.nansum(1.0 / (FUSION_K + candidates.ranks), axis=1).astype(np.float32)
        return candidates, x, scores

    def _batch(self, n_products: int) -> int:
        """Customers proposed for at once: ``cfg.batch``, fewer where every source's full scores of them would pass
        :data:`~core.recs.contract.SCORE_ENTRIES` (64 MB)."""
        sources = max(len(self.cfg.candidates.sizes()), 1)
        return max(1, min(self.cfg.batch, SCORE_ENTRIES // max(n_products * sources, 1)))

    def _full(self, customers: CustomerBatch) -> np.ndarray:
        out = np.empty((len(customers), self.data_.n_products), np.float32)
        batch = self._batch(self.data_.n_products)
        for lo in range(0, len(customers), batch):
            part = customers.subset(range(lo, min(lo + batch, len(customers))))
            candidates, _, scores = self.ranked(part)
            for i in range(len(part)):
                a, b = candidates.stops[i], candidates.stops[i + 1]
                floor = float(scores[a:b].min()) if b > a else 0.0
                row = out[lo + i]
                row[:] = floor - 1.0 + 0.5 * self.prior_  # below every candidate, in popularity order
                row[candidates.product[a:b]] = scores[a:b]
        return out

    def score(self, customer_ids: Sequence[str]) -> np.ndarray:
        return self._full(known_customers(self.data_, list(customer_ids)))

    def score_histories(self, histories, customer_ids=None) -> np.ndarray:
        return self._full(liked_customers(histories, customer_ids))

    # ------------------------------------------------------------ reasons

    def _as_customers(self, history: np.ndarray, customer_id: str | None) -> CustomerBatch:
        """The customer the page asks about: known (their own purchases) when ``history`` is their training
        history, else a liked list."""
        history = np.asarray(history, dtype=np.int64)
        if customer_id is not None and np.array_equal(self.data_.history(customer_id), history):
            return known_customers(self.data_, [customer_id])
        return liked_customers([history], [customer_id])

    def contributions(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None
                      ) -> tuple[list[list[str]], np.ndarray]:
        """For each of ``rows``: the sources that proposed it (empty: not a candidate) and (len(rows), f) float32
        each feature's contribution to its score (LightGBM's ``pred_contrib``; zeros without a booster or for a
        product that is not a candidate)."""
        customers = self._as_customers(history, customer_id)
        candidates, x, _ = self.ranked(customers)
        rows = np.asarray(rows, dtype=np.int64)
        at = {int(p): j for j, p in enumerate(candidates.product)}
        where = np.array([at.get(int(r), -1) for r in rows], dtype=np.int64)
        names = list(feature_names(candidates.sources))
        contrib = np.zeros((len(rows), len(names)), np.float32)
        found = where >= 0
        if self.booster_ is not None and found.any():
            contrib[found] = self.booster_.predict(x[where[found]], pred_contrib=True)[:, :-1]  # last: the bias
        proposed = candidates.proposed()
        sources = [[s for s, on in zip(candidates.sources, proposed[j]) if on] if j >= 0 else []
                   for j in where.tolist()]
        return sources, contrib

    def reasons_for(self, history: np.ndarray, rows: np.ndarray, customer_id: str | None = None,
                    lifts: int = 2) -> list[str]:
        """A sentence per product of ``rows``: which retrievers proposed it and the ``lifts`` features that lifted
        its score most (LightGBM's own per-prediction contributions)."""
        sources, contrib = self.contributions(history, rows, customer_id)
        meanings = list(feature_names(self.cfg.candidates.sizes()).values())
        out = []
        for by, c in zip(sources, contrib):
            if not by:
                out.append("not among its candidates")
                continue
            top = [j for j in np.argsort(-c)[:lifts] if c[j] > 0]
            lifted = "; lifted most by " + ", ".join(f"{meanings[j]} (+{c[j]:.2f})" for j in top) if top else ""
            out.append("proposed by " + ", ".join(SOURCE_LABELS.get(s, s) for s in by) + lifted)
        return out

    # ------------------------------------------------------------ saved state

    def state_arrays(self) -> dict[str, np.ndarray]:
        text = self.booster_.model_to_string() if self.booster_ is not None else ""
        return {"booster": np.frombuffer(text.encode(), dtype=np.uint8), "report": np.array(json.dumps(self.report_)),
                "train_s": np.float64(self.train_s_)}

    def load_state(self, data: RecData, arrays: dict[str, np.ndarray]) -> "RankerRecommender":
        import lightgbm as lgb

        text = np.asarray(arrays["booster"], dtype=np.uint8).tobytes().decode()
        self.booster_ = lgb.Booster(model_str=text) if text else None
        names = list(feature_names(self.cfg.candidates.sizes()))
        if self.booster_ is not None and self.booster_.feature_name() != names:
            raise ValueError(f"the stored ranker was trained on other features ({len(self.booster_.feature_name())}) "
                             f"than this code computes ({len(names)}): clear it from the cache to retrain")
        self.report_ = json.loads(str(arrays["report"]))
        self.train_s_ = float(arrays["train_s"])
        self.retrievers_ = self._retrievers(data, None)
        self.context_ = FeatureContext.build(data, self.retrievers_["segment_popularity"])
        self.data_ = data
        self.prior_ = popularity_prior(data.popularity())
        return self


def _concat(parts: list[Candidates]) -> Candidates:
    """Batches' candidates as one, customers numbered on."""
    offsets = np.cumsum([0] + [len(c.stops) - 1 for c in parts])
    stops = [np.zeros(1, np.int64)]
    total = 0
    for c in parts:
        stops.append(c.stops[1:] + total)
        total += len(c)
    return Candidates(parts[0].sources, np.concatenate([c.customer + o for c, o in zip(parts, offsets)]),
                      np.concatenate([c.product for c in parts]), np.concatenate([c.scores for c in parts]),
                      np.concatenate([c.ranks for c in parts]), np.concatenate(stops))
