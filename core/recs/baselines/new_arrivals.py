"""The new-arrivals baseline: the most recently introduced products first, by launch date or first purchase."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.recs.baselines.base import Baseline, ordered_scores


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
