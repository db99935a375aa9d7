"""Recommendation evaluation: metrics against hand-computed values and PyG, the split, slices, the
sampled metric, bootstrap intervals, exclusion, and the whole evaluation on a hand-built catalogue."""
from __future__ import annotations

import json
from math import log2

import numpy as np
import pandas as pd
import pytest
import torch
from torch_geometric.metrics import LinkPredCoverage, LinkPredHitRatio, LinkPredMAP, LinkPredNDCG, LinkPredRecall

from core import recommend
from core.cache import ArtefactCache
from core.catalog import Catalog
from core.pipeline import Embeddings
from core.receval import (EvalConfig, SplitConfig, _rank, bootstrap_ci, cached_evaluation, coverage, evaluate,
                          evaluate_model, ranking_metrics, sample_negatives, sampled_ranks, sampled_recall,
                          temporal_split, validation_split)
from core.recommend import Recommender, rec_data

IDCG3 = 1 + 1 / log2(3) + 1 / log2(4)  # ideal DCG of three relevant products


# ---------------------------------------------------------------- metrics by hand

def test_ranking_metrics_match_hand_computed_values():
    top = np.tile(np.arange(12), (5, 1))  # every customer is shown products 0..11, best first
    truth = [np.array([1, 4, 15]),  # hits at ranks 2 and 5
             np.array([11, 19, 18]),  # a hit at rank 12 only: outside the top 10, inside MAP's 12
             np.array([0, 13, 14]),  # a hit at rank 1
             np.arange(15),  # more bought than listed: every one of the 12 is a hit
             np.array([5, 5])]  # bought twice, counted once; hit at rank 6
    m = ranking_metrics(top, truth, k=10, map_k=12)
    np.testing.assert_allclose(m["recall"], [2 / 3, 0, 1 / 3, 10 / 15, 1])
    np.testing.assert_allclose(m["hit"], [1, 0, 1, 1, 1])
    np.testing.assert_allclose(m["ndcg"], [(1 / log2(3) + 1 / log2(6)) / IDCG3, 0, 1 / IDCG3, 1, 1 / log2(7)],
                               rtol=1e-6)
    # AP@12 = sum of P@i at the hits / min(|bought|, 12)
    np.testing.assert_allclose(m["ap"], [(1 / 2 + 2 / 5) / 3, (1 / 12) / 3, 1 / 3, 12 / 12, (1 / 6) / 1], rtol=1e-6)


def test_ranking_metrics_of_no_customers_and_of_empty_truth():
    assert all(len(v) == 0 for v in ranking_metrics(np.zeros((0, 12), np.int64), []).values())
    m = ranking_metrics(np.tile(np.arange(12), (2, 1)), [np.array([3]), np.array([], dtype=np.int64)])
    assert [m[name].tolist() for name in ("recall", "hit")] == [[1.0, 0.0], [1.0, 0.0]]


def test_coverage_counts_distinct_products_in_the_top_k():
    top = np.array([[0, 1, 2, 9], [0, 1, 3, 8]])
    assert coverage(top, n_products=10, k=3) == pytest.approx(4 / 10)  # {0, 1, 2, 3}; ranks 4 not counted


def test_per_customer_metrics_agree_with_pyg_aggregates():
    rng = np.random.default_rng(0)
    n_products, q = 50, 40
    top = np.stack([rng.permutation(n_products)[:12] for _ in range(q)])
    truth = [rng.choice(n_products, int(rng.integers(1, 15)), replace=False) for _ in range(q)]
    m = ranking_metrics(top, truth)
    index = torch.tensor(np.stack([np.repeat(np.arange(q), [len(t) for t in truth]), np.concatenate(truth)]))
    pred = torch.from_numpy(top)
    for name, metric in (("recall", LinkPredRecall(10)), ("ndcg", LinkPredNDCG(10)), ("ap", LinkPredMAP(12)),
                         ("hit", LinkPredHitRatio(10))):
        metric.update(pred, index)
        assert m[name].mean() == pytest.approx(float(metric.compute()), rel=1e-6), name
    assert 0 < m["recall"].mean() < 1 and 0 < m["ap"].mean() < 1  # a random ranking: neither trivial case
    pyg_coverage = LinkPredCoverage(10, n_products)
    pyg_coverage.update(pred, index)
    assert coverage(top, n_products) == pytest.approx(float(pyg_coverage.compute()))
    assert coverage(top, n_products) == pytest.approx(len(np.unique(top[:, :10])) / n_products)


# ---------------------------------------------------------------- split and slices

def _frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "product_id": [r[1] for r in rows],
                         "timestamp": pd.to_datetime([r[2] for r in rows], format="ISO8601"), "price": 1.0})


def test_temporal_split_never_leaks_and_validation_lies_before_the_cutoff():
    purchases = _frame([("a", "p0", "2019-12-31 23:59"), ("a", "p1", "2020-03-31 23:59:59"),
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
    split = temporal_split(_frame(earlier + later), "2020-04-01", "2020-07-01")
    assert split.customer_slices().to_dict() == {"five": "sparse", "new": "new", "sparse": "sparse", "warm": "warm"}
    assert split.counts() == {
        "train_purchases": 14, "test_purchases": 7, "test_customers": 4,
        "new_customers": 1, "sparse_customers": 2, "warm_customers": 1,
        "cold_item_purchases": 3, "warm_item_purchases": 4,
        "cold_item_customers": 3, "warm_item_customers": 3,  # cold: new, sparse, five; warm: new, sparse, warm
        "repurchases": 3}


# ---------------------------------------------------------------- sampled metric and bootstrap

def test_sampled_negatives_are_distinct_unbought_and_seeded():
    bought = [np.array([0, 5, 7]), np.arange(8)]
    owner = np.array([0, 0, 1])
    neg = sample_negatives(20, bought, owner, n=10, seed=3)
    assert neg.shape == (3, 10)
    for row in neg[:2]:
        assert len(set(row.tolist())) == 10 and not set(row.tolist()) & {0, 5, 7} and row.max() < 20
    assert len(set(neg[2].tolist())) == 10 and set(neg[2].tolist()) <= set(range(8, 20))
    assert np.array_equal(neg, sample_negatives(20, bought, owner, n=10, seed=3))
    small = sample_negatives(10, bought, owner, n=5)  # customer 1 has only products 8 and 9 left
    assert sorted(small[2][small[2] >= 0].tolist()) == [8, 9] and (small[2] == -1).sum() == 3


def test_sampled_recall_is_one_for_a_perfect_model_and_zero_when_the_target_is_last():
    n_products = 300
    target = np.array([4, 150, 299])
    bought = [np.array([t]) for t in target]
    negatives = sample_negatives(n_products, bought, np.arange(3), n=99, seed=0)
    query = np.arange(3)
    perfect = np.zeros((3, n_products), np.float32)
    perfect[query, target] = 1.0
    assert sampled_recall(perfect, query, target, negatives, k=10) == 1.0
    last = np.ones((3, n_products), np.float32)
    last[query, target] = -5.0
    assert sampled_recall(last, query, target, negatives, k=10) == 0.0
    assert sampled_ranks(last, query, target, negatives).tolist() == [99, 99, 99]
    # ties break by product row, as top_k does: with all scores equal, rank = negatives on lower rows
    flat = np.zeros((3, n_products), np.float32)
    assert sampled_ranks(flat, query, target, negatives).tolist() == (negatives < target[:, None]).sum(1).tolist()


def test_bootstrap_interval_contains_the_mean_and_narrows_with_more_customers():
    few = np.tile([0.0, 1.0, 0.5, 0.25], 5)  # 20 customers, mean 0.4375
    many = np.tile([0.0, 1.0, 0.5, 0.25], 500)
    lo_few, hi_few = bootstrap_ci(few, n=500, seed=1)
    lo_many, hi_many = bootstrap_ci(many, n=500, seed=1)
    assert lo_few < few.mean() < hi_few and lo_many < many.mean() < hi_many
    assert hi_many - lo_many < (hi_few - lo_few) / 5  # 100x the customers: about a tenth of the width
    assert bootstrap_ci(few, n=500, seed=1) == (lo_few, hi_few)
    assert bootstrap_ci(np.full(30, 0.2)) == pytest.approx((0.2, 0.2))
    assert np.isnan(bootstrap_ci(np.empty(0))).all()


# ---------------------------------------------------------------- a hand-built catalogue

N = 30
PRODUCTS = [f"p{i:02d}" for i in range(N)]


def _catalog() -> Catalog:
    """30 products; four customers, with the validation window [2020-01-01, 2020-04-01) and the test
    window [2020-04-01, 2020-07-01):

    - rep: p10..p19 in December, p00 in February (validation), p01 in May (test); warm at the test
    - new: nothing before; p00 (a warm item) and p29 (cold) in May; p05 at 2020-07-01 (after the end)
    - warm: p20..p25 in March (6 purchases); p03 (cold) in June
    - sparse: p26 in November, p27 in February; p26 again in June (a repurchase)
    """
    rows = [("rep", f"p{10 + i}", f"2019-12-{i + 1:02d}") for i in range(10)]
    rows += [("rep", "p00", "2020-02-01"), ("rep", "p01", "2020-05-01"),
             ("new", "p29", "2020-05-02"), ("new", "p00", "2020-05-03"), ("new", "p05", "2020-07-01"),
             ("sparse", "p26", "2019-11-01"), ("sparse", "p27", "2020-02-15"), ("sparse", "p26", "2020-06-15"),
             ("warm", "p03", "2020-06-01")]
    rows += [("warm", f"p{20 + i}", f"2020-03-0{i + 1}") for i in range(6)]
    purchases = _frame(rows).sort_values("timestamp", kind="stable").reset_index(drop=True)
    products = pd.DataFrame({"title": PRODUCTS, "group_id": PRODUCTS,
                             "colour": ["black", "white"] * (N // 2)}, index=pd.Index(PRODUCTS, name="product_id"))
    customers = pd.DataFrame({"age": ["30", "40", "50", "60"]},
                             index=pd.Index(["new", "rep", "sparse", "warm"], name="customer_id"))
    return Catalog("tiny", "test", products, customers, purchases)


def _embeddings() -> Embeddings:
    v = np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return Embeddings(np.array(PRODUCTS), v, v.copy(), np.ones(N, bool))


class Loyal(Recommender):
    """A customer's own earlier purchases first (score 2, tied, so by row), then products by row."""
    name = "loyal"
    fits = 0

    def fit(self, data, progress=None):
        Loyal.fits += 1
        self.data_ = data
        return self

    def score_histories(self, histories, customer_ids=None):
        scores = np.tile(1.0 - np.arange(self.data_.n_products, dtype=np.float32) / 100, (len(histories), 1))
        for i, h in enumerate(histories):
            scores[i, h] = 2.0
        return scores


class Oracle(Recommender):
    """Knows the future: scores what the customer buys in the 91 days from its data's cutoff (the
    validation or the test window)."""
    name = "oracle"
    id_only = True
    purchases: pd.DataFrame = None

    def fit(self, data, progress=None):
        self.data_ = data
        self.train_s_ = 0.5
        return self

    def score_histories(self, histories, customer_ids=None):
        t = Oracle.purchases["timestamp"]
        later = Oracle.purchases[(t >= self.data_.cutoff) & (t < self.data_.cutoff + pd.Timedelta(days=91))]
        scores = np.zeros((len(customer_ids), self.data_.n_products), np.float32)
        for i, c in enumerate(customer_ids):
            scores[i, later.loc[later["customer_id"] == c, "product_id"].map(self.data_.product_row)] = 1.0
        return scores


@pytest.fixture
def tiny_models(monkeypatch):
    Oracle.purchases = _catalog().purchases
    Loyal.fits = 0
    known = {"loyal": Loyal, "oracle": Oracle}
    monkeypatch.setattr(recommend, "create_recommender", lambda name, seed=0: known[name]())


def test_exclusion_removes_earlier_purchases_from_the_lists(tiny_models):
    catalog, cfg = _catalog(), EvalConfig()
    split = temporal_split(catalog.purchases, "2020-04-01", "2020-07-01")
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, _embeddings())
    ranked = _rank(Loyal().fit(data), data, split.test, cfg)
    assert ranked.customers.tolist() == ["new", "rep", "sparse", "warm"]
    rows = data.product_row
    earlier = {"new": [], "rep": ["p00"] + [f"p{i}" for i in range(10, 20)], "sparse": ["p26", "p27"],
               "warm": [f"p{i}" for i in range(20, 26)]}
    for c, top_ex, top_in in zip(ranked.customers, ranked.top_excluding, ranked.top_including):
        bought = {rows[p] for p in earlier[c]}
        assert not bought & set(top_ex.tolist())
        assert set(top_in[:len(bought)].tolist()) == bought  # including: loyal lists the history first
    assert ranked.top_including[1, :10].tolist() == [rows["p00"]] + list(range(10, 19))  # rep's history first
    assert ranked.top_excluding[1, :10].tolist() == list(range(1, 10)) + [20]


def test_evaluate_end_to_end_with_exact_values_and_a_cache_hit(tiny_models, tmp_path):
    catalog, emb, cache = _catalog(), _embeddings(), ArtefactCache(tmp_path / "cache")
    cfg = EvalConfig(n_bootstrap=200)
    assert cached_evaluation(catalog, emb, ["oracle", "loyal"], cfg, cache) is None
    stages = []
    result = evaluate(catalog, emb, ["oracle", "loyal"], cfg, cache, lambda *a: stages.append(a))
    json.dumps(result, allow_nan=False)  # strict JSON: an empty metric is null, never NaN
    assert ("evaluating recommenders", 2, 2) in stages

    split = result["split"]
    assert (split["cutoff"], split["end"]) == ("2020-04-01", "2020-07-01")
    assert split["validation"]["cutoff"] == "2020-01-01" and split["validation"]["end"] == "2020-04-01"
    assert {k: split[k] for k in ("train_purchases", "test_purchases", "test_customers", "new_customers",
                                  "sparse_customers", "warm_customers", "cold_item_purchases",
                                  "warm_item_purchases", "repurchases")} == {
        "train_purchases": 19, "test_purchases": 5, "test_customers": 4, "new_customers": 1,
        "sparse_customers": 1, "warm_customers": 2, "cold_item_purchases": 3, "warm_item_purchases": 2,
        "repurchases": 1}

    keys = {"recall_at_10", "ndcg_at_10", "map_at_12", "hit_rate_at_10", "coverage_at_10", "sampled_recall_at_10",
            "recall_at_10_new_customers", "recall_at_10_sparse_customers", "recall_at_10_warm_customers",
            "recall_at_10_cold_items", "recall_at_10_warm_items", "train_s", "recall_at_10_ci_low",
            "recall_at_10_ci_high", "recall_at_10_cold_items_ci_low", "recall_at_10_cold_items_ci_high",
            "exclude_bought", "id_only", "recall_at_10_excluding", "recall_at_10_including",
            "validation_recall_at_10_excluding", "validation_recall_at_10_including", "model_train_s"}
    oracle, loyal = result["models"]["oracle"], result["models"]["loyal"]
    assert keys <= set(oracle) and keys <= set(loyal)
    for name in ("recall_at_10", "ndcg_at_10", "map_at_12", "hit_rate_at_10", "sampled_recall_at_10",
                 "recall_at_10_new_customers", "recall_at_10_cold_items", "recall_at_10_warm_items"):
        assert oracle[name] == pytest.approx(1.0), name
    assert oracle["id_only"] is True and oracle["model_train_s"] == 0.5 and oracle["exclude_bought"] is False

    # loyal (see _catalog): on validation only excluding finds rep's p00, so it excludes on the test too
    assert loyal["validation_recall_at_10_excluding"] == pytest.approx(1 / 3)
    assert loyal["validation_recall_at_10_including"] == 0.0
    assert loyal["exclude_bought"] is True and loyal["id_only"] is False and loyal["model_train_s"] is None
    # top 10 excluding earlier purchases: rep p01..p09,p20 (hit p01 at 1); new p00..p09 (p00 at 1, not p29);
    # warm p00..p09 (p03 at 4); sparse p00..p09 (misses its repurchase p26)
    expected = {
        "recall_at_10": (1 + 0.5 + 1 + 0) / 4,
        "hit_rate_at_10": 3 / 4,
        "ndcg_at_10": (1 + 1 / (1 + 1 / log2(3)) + 1 / log2(5) + 0) / 4,
        "map_at_12": (1 + 1 / 2 + 1 / 4 + 0) / 4,
        "coverage_at_10": 11 / 30,  # p00..p09 and p20
        "recall_at_10_new_customers": 0.5, "recall_at_10_sparse_customers": 0.0,
        "recall_at_10_warm_customers": 1.0,
        "recall_at_10_cold_items": (1 + 0 + 1) / 3,  # rep p01, new p29, warm p03
        "recall_at_10_warm_items": (1 + 0) / 2,  # new p00, sparse p26
        # including: rep's history fills its list (0), warm's p03 still makes it (1), sparse's p26 does (1)
        "recall_at_10_including": (0 + 0.5 + 1 + 1) / 4, "recall_at_10_excluding": (1 + 0.5 + 1 + 0) / 4,
        # 1 + 99 candidates, but a customer has fewer unbought products, so all are negatives: hits for
        # rep p01, new p00 and warm p03 (3 better products); new p29 and sparse's excluded p26 rank last
        "sampled_recall_at_10": 3 / 5,
    }
    for name, value in expected.items():
        assert loyal[name] == pytest.approx(value), name
    assert loyal["recall_at_10_ci_low"] <= loyal["recall_at_10"] <= loyal["recall_at_10_ci_high"]
    assert loyal["recall_at_10_ci_low"] < loyal["recall_at_10_ci_high"]
    assert 0 <= loyal["recall_at_10_cold_items_ci_low"] <= 2 / 3 <= loyal["recall_at_10_cold_items_ci_high"] <= 1

    fits = Loyal.fits
    assert fits == 2  # once on the validation split, once on the training split
    again = evaluate(catalog, emb, ["loyal", "oracle"], cfg, cache)  # any order: the same artefact
    assert again == result and Loyal.fits == fits
    assert cached_evaluation(catalog, emb, ["oracle", "loyal"], cfg, cache) == result
    assert cached_evaluation(catalog, emb, ["oracle", "loyal"], EvalConfig(n_bootstrap=100), cache) is None


def test_fixed_exclusion_skips_validation(tiny_models):
    catalog, emb = _catalog(), _embeddings()
    result = evaluate(catalog, emb, ["loyal"], EvalConfig(exclude_bought="no", n_bootstrap=50))
    loyal = result["models"]["loyal"]
    assert loyal["exclude_bought"] is False and Loyal.fits == 1
    assert loyal["validation_recall_at_10_excluding"] is None
    assert loyal["recall_at_10"] == pytest.approx(loyal["recall_at_10_including"]) == pytest.approx(0.625)
    assert loyal["sampled_recall_at_10"] == pytest.approx(4 / 5)  # sparse's p26 is now first of its list
    with pytest.raises(ValueError):
        evaluate(catalog, emb, ["loyal"], EvalConfig(exclude_bought="maybe"))


def test_evaluate_model_on_an_empty_test_window(tiny_models):
    catalog = _catalog()
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, "2021-01-01", _embeddings())
    empty = catalog.purchases.iloc[:0]
    out = evaluate_model(Loyal().fit(data), data, empty, EvalConfig(), exclude_bought=True)
    assert out["recall_at_10"] is None and out["recall_at_10_ci_low"] is None and out["coverage_at_10"] is None


def test_scoring_in_batches_gives_the_same_numbers(tiny_models, monkeypatch):
    from core import receval
    catalog, cfg = _catalog(), EvalConfig(n_bootstrap=50)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, "2020-04-01", _embeddings())
    test = temporal_split(catalog.purchases, "2020-04-01", "2020-07-01").test
    whole = evaluate_model(Loyal().fit(data), data, test, cfg, exclude_bought=True)
    monkeypatch.setattr(receval, "BATCH", 3)  # 4 test customers: batches of 3 and 1
    assert evaluate_model(Loyal().fit(data), data, test, cfg, exclude_bought=True) == whole
    assert whole["sampled_recall_at_10"] == pytest.approx(3 / 5)
