"""Popularity baselines: all-time, recent, and recent within the customer's segment (age band, say)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.recs.baselines.base import Baseline, ordered_scores


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
