"""The Cold start page's questions of the purchases."""
from __future__ import annotations

import pandas as pd

from core.recs.queries import purchase_counts


def test_purchase_counts_before_and_after_the_cutoff_by_hand():
    purchases = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "c", "c", "d"],
        "timestamp": pd.to_datetime(["2020-01-05", "2020-01-20", "2020-02-10", "2020-02-15", "2020-01-01",
                                     "2020-03-05", "2020-01-02"])})  # c's second is at or after the end
    counts = purchase_counts(purchases, "2020-02-01", "2020-03-01", customer_ids=["z"])
    # most after first, then most before, then by id; z bought nothing
    assert counts.index.name == "customer_id"
    assert counts.index.tolist() == ["a", "b", "c", "d", "z"]
    assert counts["before"].tolist() == [2, 0, 1, 1, 0]
    assert counts["after"].tolist() == [1, 1, 0, 0, 0]
    assert counts.dtypes.tolist() == ["int64", "int64"]
