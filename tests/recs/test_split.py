"""The temporal split (core.recs.split): no leak across the cutoff, the validation window before it, slices."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.embeddings.pipeline import Embeddings
from core.recs.contract import rec_data
from core.recs.split import SplitConfig, customer_slice, sample_customers, temporal_split, validation_split


def purchase_frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """Purchases of (customer, product, ISO time) rows."""
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "product_id": [r[1] for r in rows],
                         "timestamp": pd.to_datetime([r[2] for r in rows], format="ISO8601"), "price": 1.0})


def test_temporal_split_never_leaks_and_validation_lies_before_the_cutoff():
    purchases = purchase_frame([("a", "p0", "2019-12-31 23:59"), ("a", "p1", "2020-03-31 23:59:59"),
                        ("a", "p2", "2020-04-01 00:00"),  # at the cutoff: test
                        ("b", "p3", "2020-06-30 23:59"), ("b", "p4", "2020-07-01 00:00"),  # at the end: neither
                        ("b", "p5", "2020-01-01 00:00")])
    split = temporal_split(purchases, "2020-04-01", "2020-07-01")
    assert sorted(split.train["product_id"]) == ["p0", "p1", "p5"]
    assert sorted(split.test["product_id"]) == ["p2", "p3"]
    assert (split.train["timestamp"] < split.cutoff).all()
    assert ((split.test["timestamp"] >= split.cutoff) & (split.test["timestamp"] < split.end)).all()

    ids = np.array([f"p{i}" for i in range(6)])
    emb = Embeddings(ids, np.eye(6, dtype=np.float32), np.eye(6, dtype=np.float32), np.ones(6, bool))
    data = rec_data(pd.DataFrame(index=pd.Index(ids, name="product_id")), pd.DataFrame(index=pd.Index(["a", "b"])),
                    purchases, split.cutoff, emb)
    assert sorted(data.purchases["product_id"]) == ["p0", "p1", "p5"]
    assert (data.purchases["timestamp"] < split.cutoff).all() and (data.days_ago > 0).all()

    val = validation_split(purchases, SplitConfig())  # as long as the test window: 91 days
    assert (val.cutoff, val.end) == (pd.Timestamp("2020-01-01"), pd.Timestamp("2020-04-01"))
    assert sorted(val.test["product_id"]) == ["p1", "p5"] and list(val.train["product_id"]) == ["p0"]
    assert (val.test["timestamp"] < split.cutoff).all()
    short = validation_split(purchases, SplitConfig(validation_days=30))
    assert (short.cutoff, short.end) == (pd.Timestamp("2020-03-02"), pd.Timestamp("2020-04-01"))
    with pytest.raises(ValueError):
        temporal_split(purchases, "2020-07-01", "2020-04-01")


def test_slices_and_counts_on_a_hand_built_table():
    earlier = [("sparse", "p2", "2020-01-02"), ("sparse", "p3", "2020-01-03")]
    earlier += [("five", f"p{i}", f"2020-02-0{i}") for i in range(1, 6)]  # exactly 5 earlier: still sparse
    earlier += [("warm", f"p{i}", f"2020-03-0{i}") for i in range(2, 8)]  # 6 earlier: warm
    earlier += [("gone", "p9", "2020-01-01")]  # bought nothing in the test window: not a test customer
    later = [("new", "p1", "2020-05-01"),  # p1 was bought before (by five): a warm item
             ("new", "p20", "2020-05-02"),  # nobody bought p20 before: cold
             ("sparse", "p2", "2020-05-03"),  # a repurchase
             ("sparse", "p21", "2020-05-04"),  # cold
             ("warm", "p3", "2020-05-05"), ("warm", "p3", "2020-05-06"),  # a repurchase, twice
             ("five", "p20", "2020-06-01")]  # cold
    split = temporal_split(purchase_frame(earlier + later), "2020-04-01", "2020-07-01")
    assert split.customer_slices().to_dict() == {"five": "sparse", "new": "new", "sparse": "sparse", "warm": "warm"}
    assert split.counts() == {
        "train_purchases": 14, "test_purchases": 7, "test_customers": 4, "window_customers": 4,
        "new_customers": 1, "sparse_customers": 2, "warm_customers": 1,
        "cold_item_purchases": 3, "warm_item_purchases": 4,
        "cold_item_customers": 3, "warm_item_customers": 3,  # cold: new, sparse, five; warm: new, sparse, warm
        "repurchases": 3}


def test_a_window_past_max_customers_is_measured_on_a_seeded_sample_of_them():
    rows = [(f"c{i}", f"p{i % 7}", f"2020-05-{1 + i % 28:02d}") for i in range(40)]
    rows += [(f"c{i}", "p9", "2020-06-29") for i in range(0, 40, 3)]  # some customers buy twice in the window
    split = temporal_split(purchase_frame(rows), "2020-04-01", "2020-07-01")
    assert sample_customers(split, 0) is split and sample_customers(split, 40) is split  # all of them: as it is
    sampled = sample_customers(split, 10, seed=3)
    kept = sampled.test_customers()
    assert len(kept) == 10 and set(kept) <= set(split.test_customers())
    # every purchase of a kept customer in the window, and nobody else's
    want = split.test[split.test["customer_id"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(sampled.test, want)
    assert sampled.counts()["test_customers"] == 10 and sampled.counts()["window_customers"] == 40
    assert sample_customers(split, 10, seed=3).test_customers().tolist() == kept.tolist()  # seeded
    assert sample_customers(split, 10, seed=4).test_customers().tolist() != kept.tolist()


def test_customer_slices_by_earlier_purchases():
    assert customer_slice(np.array([0, 1, 5, 6, 40])).tolist() == ["new", "sparse", "sparse", "warm", "warm"]
