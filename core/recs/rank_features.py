"""The ranking stage's features of (customer, candidate product) pairs, every one computed from the purchases before
the cutoff of the data they are built on (:class:`FeatureContext`), so a window's features never see its purchases.

Each feature has a one-line meaning in :func:`feature_names`' table (the Cold start page shows it as the reason a
recommendation was lifted). Missing values are NaN (LightGBM routes them on its own): a never-bought product has no
price paid, a customer with no history no shares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.embeddings.backbone import l2_normalise
from core.recs.baselines.popularity import SegmentPopularity
from core.recs.candidates import Candidates, CustomerBatch
from core.recs.contract import RecData

MATCH_ATTRIBUTES = ("product_type", "colour", "pattern", "section")  # roles matched against the customer's history
SALES_WINDOWS = (7, 28, 91)  # days: a product's purchase counts over each, and over all time
LAST_N = 5  # the customer's latest purchases that content similarity is measured to
SEGMENT_DAYS = 91  # the window of the segment's product-type shares

# name -> meaning, for features that are not per source (those are "<source>_score" and "<source>_rank")
_FIXED: dict[str, str] = {
    "customer_purchases": "how many purchases the customer made before",
    "customer_days_since_last": "days since the customer's latest purchase",
    "customer_mean_price": "the average price the customer paid",
    "customer_distinct_types": "how many product types the customer has bought",
    **{f"product_sales_{d}d": f"purchases of the product in the last {d} days" for d in SALES_WINDOWS},
    "product_sales_all": "purchases of the product ever",
    "product_never_bought": "nobody has bought the product yet",
    "product_price": "the average price paid for the product",
    "group_price": "the average price paid for the product's colour group",
    "product_days_since_first_sale": "days since the product's first purchase",
    "product_days_since_last_sale": "days since the product's latest purchase",
    "product_has_photo": "the product has a photo",
    "content_max_last": f"photo and text closest to one of the customer's last {LAST_N} purchases",
    "content_mean_last": f"photo and text close to the customer's last {LAST_N} purchases on average",
    **{f"same_{a}_share": f"share of the customer's purchases with the product's {a.replace('_', ' ')}"
       for a in MATCH_ATTRIBUTES},
    "price_ratio": "the product's price relative to what the customer usually pays",
    "times_bought": "how many times the customer bought this product",
    "days_since_bought": "days since the customer last bought this product",
    "segment_type_share": f"share of the customer's age band's purchases (last {SEGMENT_DAYS} days) of the "
                          "product's type",
}
_SOURCE_MEANINGS = {"score": "{label}: score", "rank": "{label}: the product's place in its list"}
SOURCE_LABELS = {"two_tower": "two-tower model", "graphsage": "GraphSAGE model", "content": "content similarity",
                 "colour_variants": "colour variants", "repurchase": "repurchase", "recent_popularity":
                 "recent bestsellers", "segment_popularity": "age band's bestsellers", "new_arrivals": "new arrivals",
                 "two_tower_unsold": "two-tower model among never-bought products",
                 "graphsage_unsold": "GraphSAGE model among never-bought products",
                 "content_unsold": "content similarity among never-bought products"}


def feature_names(sources: Sequence[str]) -> dict[str, str]:
    """Every feature of candidates from ``sources`` by name, in the columns' order, with its meaning."""
    out = {}
    for s in sources:
        for part, meaning in _SOURCE_MEANINGS.items():
            out[f"{s}_{part}"] = meaning.format(label=SOURCE_LABELS.get(s, s))
    return {**out, **_FIXED}


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    """(n,) int64 codes of a product attribute (-1 missing or empty) and the number of values."""
    text = values.fillna("").astype(str).str.strip()
    codes, uniques = pd.factorize(text.where(text != "", None))
    return codes.astype(np.int64), len(uniques)


@dataclass
class FeatureContext:
    """What the features read of the data before a cutoff: product statistics, attribute codes, content vectors
    and the age bands' product-type shares. Built by :meth:`build`."""
    sales: np.ndarray  # (len(SALES_WINDOWS) + 1, n_products) float32 purchase counts, the last row all time
    price: np.ndarray  # (n_products,) float32 mean price paid, NaN never bought
    group_price: np.ndarray  # (n_products,) float32 mean price paid for its group_id, NaN none bought
    first_sale: np.ndarray  # (n_products,) float32 days from the first purchase to the cutoff, NaN never bought
    last_sale: np.ndarray  # (n_products,) float32 likewise the latest purchase
    has_photo: np.ndarray  # (n_products,) float32
    codes: dict[str, np.ndarray]  # attribute -> (n_products,) int64 codes, -1 missing (attributes the shop has)
    n_values: dict[str, int]
    vectors: np.ndarray  # (n_products, d) float32 hybrid content, rows L2-normalised
    type_share: np.ndarray  # (n_segments + 1, n_types) float32 a segment's type shares; last row: everyone
    segments: SegmentPopularity  # the fitted age bands (customer -> segment)

    @classmethod
    def build(cls, data: RecData, segments: SegmentPopularity) -> "FeatureContext":
        """The context of ``data`` (its purchases before the cutoff only); ``segments`` fitted on the same data."""
        n = data.n_products
        sales = [data.popularity(d) for d in SALES_WINDOWS] + [data.popularity()]
        price = np.full(n, np.nan, np.float32)
        paid = data.purchases["price"].to_numpy(np.float64) if "price" in data.purchases else \
            np.full(len(data.items), np.nan)
        given = ~np.isnan(paid)
        total = np.bincount(data.items[given], paid[given], minlength=n)
        count = np.bincount(data.items[given], minlength=n)
        np.divide(total, count, out=price, where=count > 0, casting="unsafe")
        groups = data.products["group_id"] if "group_id" in data.products else pd.Series("", index=data.products.index)
        group, _ = _codes(groups)
        group = np.where(group >= 0, group, group.max(initial=-1) + 1 + np.arange(n))  # no group: its own
        g_total = np.bincount(group, total, minlength=group.max(initial=0) + 1)
        g_count = np.bincount(group, count, minlength=group.max(initial=0) + 1)
        group_price = np.where(g_count[group] > 0, g_total[group] / np.maximum(g_count[group], 1), np.nan)
        first = np.full(n, -np.inf)
        last = np.full(n, np.inf)
        np.maximum.at(first, data.items, data.days_ago.astype(np.float64))
        np.minimum.at(last, data.items, data.days_ago.astype(np.float64))
        codes, n_values = {}, {}
        for a in MATCH_ATTRIBUTES:
            if a in data.products:
                codes[a], n_values[a] = _codes(data.products[a])
        types = codes.get("product_type", np.full(n, -1, np.int64))
        n_types = n_values.get("product_type", 0)
        recent = data.days_ago <= SEGMENT_DAYS
        segment_of = segments.segment_[data.users[recent]]
        n_segments = int(segments.segment_.max(initial=-1)) + 1
        kinds = types[data.items[recent]]
        share = np.zeros((n_segments + 1, max(n_types, 1)), np.float64)
        typed = kinds >= 0
        np.add.at(share, (np.where(segment_of[typed] >= 0, segment_of[typed], n_segments), kinds[typed]), 1.0)
        share[n_segments] = share.sum(axis=0)  # everyone (segment-less customers' purchases included)
        share /= np.maximum(share.sum(axis=1, keepdims=True), 1.0)
        return cls(np.stack(sales).astype(np.float32), price, group_price.astype(np.float32),
                   np.where(np.isfinite(first), first, np.nan).astype(np.float32),
                   np.where(np.isfinite(last), last, np.nan).astype(np.float32),
                   np.asarray(data.has_image, np.float32), codes, n_values,
                   np.ascontiguousarray(l2_normalise(data.hybrid), dtype=np.float32), share.astype(np.float32),
                   segments)

    def features(self, customers: CustomerBatch, candidates: Candidates) -> np.ndarray:
        """(len(candidates), len(feature_names(candidates.sources))) float32, in :func:`feature_names`' order."""
        c, p = candidates.customer, candidates.product
        q = len(customers)
        lengths = np.array([len(h) for h in customers.histories], dtype=np.int64)
        owner = np.repeat(np.arange(q), lengths)
        items = np.concatenate([np.empty(0, np.int64)] + list(customers.histories)).astype(np.int64)
        ages = np.concatenate([np.empty(0, np.float32)] + list(customers.ages)).astype(np.float32)
        paid = np.concatenate([np.empty(0, np.float32)] + list(customers.prices)).astype(np.float32)
        has = lengths > 0
        nan_q = np.full(q, np.nan, np.float32)
        # the customer's own
        days_last = nan_q.copy()
        if has.any() and customers.known:  # a liked list is undated: its times are missing, not "now"
            days_last[has] = [a.min() for a in customers.ages if len(a)]
        mean_price = nan_q.copy()
        priced = ~np.isnan(paid)
        if priced.any():
            s = np.bincount(owner[priced], paid[priced], minlength=q)
            k = np.bincount(owner[priced], minlength=q)
            mean_price = np.where(k > 0, s / np.maximum(k, 1), np.nan).astype(np.float32)
        types = self.codes.get("product_type")
        distinct = np.array([len(np.unique(types[h][types[h] >= 0])) if types is not None else np.nan
                             for h in customers.histories], dtype=np.float32)
        col: dict[str, np.ndarray] = {}
        for j, s in enumerate(candidates.sources):
            col[f"{s}_score"], col[f"{s}_rank"] = candidates.scores[:, j], candidates.ranks[:, j]
        col |= {"customer_purchases": lengths[c].astype(np.float32), "customer_days_since_last": days_last[c],
                "customer_mean_price": mean_price[c], "customer_distinct_types": distinct[c]}
        for w, days in enumerate(SALES_WINDOWS):
            col[f"product_sales_{days}d"] = self.sales[w][p]
        price = self.price[p]
        col |= {"product_sales_all": self.sales[-1][p], "product_never_bought": (self.sales[-1][p] == 0).astype(
                    np.float32), "product_price": price, "group_price": self.group_price[p],
                "product_days_since_first_sale": self.first_sale[p], "product_days_since_last_sale": self.last_sale[p],
                "product_has_photo": self.has_photo[p]}
        col["content_max_last"], col["content_mean_last"] = self._content(customers, candidates)
        for a in MATCH_ATTRIBUTES:
            col[f"same_{a}_share"] = self._share(a, owner, items, lengths, c, p)
        known_price = np.where(np.isnan(price), self.group_price[p], price)
        theirs = mean_price[c]
        col["price_ratio"] = np.where(theirs > 0, known_price / np.where(theirs > 0, theirs, 1.0), np.nan)
        col["times_bought"], col["days_since_bought"] = self._own(owner, items, ages, c, p, q)
        if not customers.known:
            col["days_since_bought"] = np.full(len(p), np.nan, np.float32)
        col["segment_type_share"] = self._segment_type(customers, p, c)
        return np.stack([col[name] for name in feature_names(candidates.sources)], axis=1).astype(np.float32)

    def _content(self, customers: CustomerBatch, candidates: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """Max and mean cosine of each candidate to its customer's last :data:`LAST_N` purchases."""
        best = np.full(len(candidates), np.nan, np.float32)
        mean = best.copy()
        for i, h in enumerate(customers.histories):
            lo, hi = candidates.stops[i], candidates.stops[i + 1]
            if not len(h) or hi == lo:
                continue
            sims = self.vectors[candidates.product[lo:hi]] @ self.vectors[h[-LAST_N:]].T
            best[lo:hi], mean[lo:hi] = sims.max(axis=1), sims.mean(axis=1)
        return best, mean

    def _share(self, attribute: str, owner: np.ndarray, items: np.ndarray, lengths: np.ndarray, c: np.ndarray,
               p: np.ndarray) -> np.ndarray:
        """Share of each pair's customer's purchases with the pair product's value of ``attribute`` (NaN: the
        shop has no such attribute, the product has no value, or the customer no history)."""
        if attribute not in self.codes:
            return np.full(len(p), np.nan, np.float32)
        codes, n_values = self.codes[attribute], self.n_values[attribute]
        counts = np.zeros((len(lengths), n_values + 1), np.float32)  # the last column: missing values
        mine = codes[items]
        np.add.at(counts, (owner, np.where(mine >= 0, mine, n_values)), 1.0)
        value = codes[p]
        share = counts[c, np.where(value >= 0, value, n_values)] / np.maximum(lengths[c], 1)
        return np.where((value >= 0) & (lengths[c] > 0), share, np.nan).astype(np.float32)

    def _own(self, owner: np.ndarray, items: np.ndarray, ages: np.ndarray, c: np.ndarray, p: np.ndarray, q: int
             ) -> tuple[np.ndarray, np.ndarray]:
        """How many times each pair's customer bought the pair's product, and days since they last did (NaN)."""
        n = len(self.price)
        keys = owner * n + items
        times = np.zeros(len(p), np.float32)
        since = np.full(len(p), np.nan, np.float32)
        if len(keys):
            frame = pd.DataFrame({"k": keys, "a": ages}).groupby("k")["a"].agg(["size", "min"])
            known = frame.index.to_numpy()
            wanted = c * n + p
            at = np.clip(np.searchsorted(known, wanted), 0, len(known) - 1)
            hit = known[at] == wanted
            times[hit] = frame["size"].to_numpy()[at[hit]]
            since[hit] = frame["min"].to_numpy()[at[hit]]
        return times, since

    def _segment_type(self, customers: CustomerBatch, p: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Share of the pair's customer's segment's recent purchases that are of the product's type."""
        types = self.codes.get("product_type")
        if types is None:
            return np.full(len(p), np.nan, np.float32)
        everyone = len(self.type_share) - 1
        segment = self.segments.segments(customers.ids)
        row = np.where(segment >= 0, segment, everyone)[c]
        kind = types[p]
        return np.where(kind >= 0, self.type_share[row, np.maximum(kind, 0)], np.nan).astype(np.float32)
