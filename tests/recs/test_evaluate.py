"""Recommendation evaluation: exclusion, slices, seeds, paired differences and the whole evaluation on a
hand-built catalogue (the metrics themselves: test_metrics.py; the typed report: test_report.py)."""
from __future__ import annotations

import json
from math import log2

import numpy as np
import pandas as pd
import pytest

from core.recs import registry
from core.cache import ArtefactCache
from core.data.catalog import Catalog
from core.embeddings.pipeline import Embeddings
from core.recs.evaluate import (CustomerMetrics, EvalConfig, cached_evaluation, coverage_ceiling, evaluate,
    evaluate_model, rank_customers)
from core.recs.split import temporal_split
from core.recs.paired import PairedReport, paired_keys
from core.recs.report import EvalReport
from tests.recs.test_split import purchase_frame as _frame
from core.recs.contract import POPULAR, Recommender, rec_data, scoring_batch
from core.recs.newcustomer import NewCustomerFallback
from core.recs.registry import create_recommender

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


class Noisy(Oracle):
    """A seeded model: the oracle with seeds 0 and 2; with seed 1 it knows nothing (every product scores
    0, so lists run by row, p00 first)."""
    name = "noisy"
    id_only = False
    fits = 0

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, data, progress=None):
        Noisy.fits += 1
        return super().fit(data, progress)

    def score_histories(self, histories, customer_ids=None):
        scores = super().score_histories(histories, customer_ids)
        return np.zeros_like(scores) if self.seed == 1 else scores


@pytest.fixture
def tiny_models(monkeypatch):
    Oracle.purchases = _catalog().purchases
    Loyal.fits = Noisy.fits = 0
    known = {"loyal": lambda seed: Loyal(), "oracle": lambda seed: Oracle(), "noisy": Noisy}
    real = registry.create_recommender  # segment popularity serves new customers a model does not
    monkeypatch.setattr(registry, "create_recommender",
                        lambda name, seed=0, params=None, cache=None: known[name](seed) if name in known else
                        real(name, seed, params, cache))
    monkeypatch.setattr(registry, "SEEDED", registry.SEEDED + ("noisy",))


def test_exclusion_removes_earlier_purchases_from_the_lists(tiny_models):
    catalog, cfg = _catalog(), EvalConfig()
    split = temporal_split(catalog.purchases, "2020-04-01", "2020-07-01")
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, _embeddings())
    ranked = rank_customers(Loyal().fit(data), data, split.test, cfg)
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
    result = evaluate(catalog, emb, ["oracle", "loyal"], cfg, cache, lambda *a: stages.append(a)).to_dict()
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
            "validation_recall_at_10_excluding", "validation_recall_at_10_including", "model_train_s",
            "seeds", "recall_at_10_seed_min", "recall_at_10_seed_max", "recall_at_10_cold_items_seed_min",
            "recall_at_10_cold_items_seed_max", "params", "grid", "new_customer_path", "verdict",
            "validation_recall_at_10_new_customers"}
    oracle, loyal = result["models"]["oracle"], result["models"]["loyal"]
    # deterministic, untuned, and no baseline to compare with
    assert (loyal["seeds"], loyal["params"], loyal["grid"]) == ([], {}, [])
    assert loyal["recall_at_10_seed_min"] == loyal["recall_at_10_seed_max"] == loyal["recall_at_10"]
    assert result["paired"]["reference"] is None and result["paired"]["models"] == {}
    assert loyal["verdict"].startswith("not compared")
    assert result["coverage_ceiling"] == 1.0  # 4 customers x 10 products > 30 products

    # typed: the same numbers by name, and back to exactly this JSON, key for key and in order
    report = EvalReport.from_dict(json.loads(json.dumps(result)))
    assert json.dumps(report.to_dict()) == json.dumps(result)
    assert EvalReport.from_arrays(report.to_arrays()).to_dict() == result
    assert report.split.train_purchases == 19 and report.split.validation["cutoff"] == "2020-01-01"
    assert report.paired.reference is None and report.coverage_ceiling == 1.0
    typed = report.models["loyal"]
    assert (typed.seeds, typed.params, typed.new_customer_path) == ([], {}, "segment_popularity")
    assert typed.exclude_bought is True and typed.verdict == loyal["verdict"]
    assert typed.metric("recall_at_10") == loyal["recall_at_10"] and typed.metric("nothing") is None

    # the new-customer path: on validation, warm (new then) gets nothing right from the oracle-less loyal
    # (p00..p09) nor from segment popularity, and a tie does not beat it, so loyal's new customers get
    # segment popularity; the oracle's validation lists are perfect, so it keeps its own
    assert loyal["validation_recall_at_10_new_customers"] == 0.0
    assert result["new_customer_reference"]["validation_recall_at_10_new_customers"] == 0.0
    assert result["new_customer_reference"]["params"] == {"days": 28.0, "smoothing": 100.0}  # first of equals
    assert loyal["new_customer_path"] == "segment_popularity" and oracle["new_customer_path"] == "model"
    assert keys <= set(oracle) and keys <= set(loyal)
    for name in ("recall_at_10", "ndcg_at_10", "map_at_12", "hit_rate_at_10", "sampled_recall_at_10",
                 "recall_at_10_new_customers", "recall_at_10_cold_items", "recall_at_10_warm_items"):
        assert oracle[name] == pytest.approx(1.0), name
    assert oracle["id_only"] is True and oracle["model_train_s"] == 0.5 and oracle["exclude_bought"] is False

    # loyal (see _catalog): on validation only excluding finds rep's p00, so it excludes on the test too
    assert loyal["validation_recall_at_10_excluding"] == pytest.approx(1 / 3)
    assert loyal["validation_recall_at_10_including"] == 0.0
    assert loyal["exclude_bought"] is True and loyal["id_only"] is False and loyal["model_train_s"] is None
    # top 10 excluding earlier purchases: rep p01..p09,p20 (hit p01 at 1); warm p00..p09 (p03 at 4); sparse
    # p00..p09 (misses its repurchase p26); new, by segment popularity (its age band bought nothing, so
    # everyone's last 28 days: p23, p24, p25, then all-time counts, all 1, by row): p23, p24, p25, p00 (hit
    # at 4), p10..p15
    expected = {
        "recall_at_10": (1 + 0.5 + 1 + 0) / 4,
        "hit_rate_at_10": 3 / 4,
        "ndcg_at_10": (1 + (1 / log2(5)) / (1 + 1 / log2(3)) + 1 / log2(5) + 0) / 4,
        "map_at_12": (1 + (1 / 4) / 2 + 1 / 4 + 0) / 4,
        "coverage_at_10": 20 / 30,  # p00..p09, p20, p23..p25, p10..p15
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
    again = evaluate(catalog, emb, ["loyal", "oracle"], cfg, cache).to_dict()  # any order: the same artefact
    assert again == result and Loyal.fits == fits
    assert cached_evaluation(catalog, emb, ["oracle", "loyal"], cfg, cache).to_dict() == result
    assert cached_evaluation(catalog, emb, ["oracle", "loyal"], EvalConfig(n_bootstrap=100), cache) is None


def test_fixed_exclusion_is_not_chosen_on_validation(tiny_models):
    catalog, emb = _catalog(), _embeddings()
    result = evaluate(catalog, emb, ["loyal"], EvalConfig(exclude_bought="no", n_bootstrap=50)).to_dict()
    loyal = result["models"]["loyal"]
    # validation still runs (the new-customer path, tuning), but excluding's better validation recall is ignored
    assert loyal["validation_recall_at_10_excluding"] > loyal["validation_recall_at_10_including"]
    assert loyal["exclude_bought"] is False and Loyal.fits == 2
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
    import core.recs.contract as contract
    catalog, cfg = _catalog(), EvalConfig(n_bootstrap=50)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, "2020-04-01", _embeddings())
    test = temporal_split(catalog.purchases, "2020-04-01", "2020-07-01").test
    whole = evaluate_model(Loyal().fit(data), data, test, cfg, exclude_bought=True)
    monkeypatch.setattr(contract, "SCORE_ENTRIES", 3 * data.n_products)  # 4 test customers: batches of 3 and 1
    assert scoring_batch(data.n_products) == 3
    assert evaluate_model(Loyal().fit(data), data, test, cfg, exclude_bought=True) == whole
    assert whole["sampled_recall_at_10"] == pytest.approx(3 / 5)


# ---------------------------------------------------------------- seeds, paired differences, verdicts

def test_seeded_models_are_averaged_over_seeds_per_customer(tiny_models):
    catalog, emb = _catalog(), _embeddings()
    result = evaluate(catalog, emb, ["noisy", "loyal", "popularity"], EvalConfig(n_bootstrap=50, seeds=(0, 1, 2))).to_dict()
    noisy = result["models"]["noisy"]
    assert noisy["seeds"] == [0, 1, 2] and Noisy.fits == 6  # three on validation, three on the test
    assert result["models"]["loyal"]["seeds"] == [] and Loyal.fits == 2  # deterministic: once each
    # seed 1 lists p00..p09 (after earlier purchases, either way): rep p01 and warm p03 hit, new half
    # (p00), sparse misses p26; seeds 0 and 2 know everything
    assert noisy["recall_at_10_seed_min"] == pytest.approx(0.625) and noisy["recall_at_10_seed_max"] == 1.0
    assert noisy["recall_at_10"] == pytest.approx((1 + 0.625 + 1) / 3)
    assert noisy["recall_at_10_new_customers"] == pytest.approx((1 + 0.5 + 1) / 3)
    # cold items (rep p01, new p29, warm p03): seed 1 finds 2 of 3
    assert noisy["recall_at_10_cold_items_seed_min"] == pytest.approx(2 / 3)
    assert noisy["recall_at_10_cold_items_seed_max"] == 1.0
    assert noisy["recall_at_10_cold_items"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    # validation new customers (warm): 1, 0, 1 over the seeds beats segment popularity's 0
    assert noisy["validation_recall_at_10_new_customers"] == pytest.approx(2 / 3)
    assert noisy["new_customer_path"] == "model"
    # the paired difference uses the seed-averaged per-customer values
    diff = result["paired"]["models"]["noisy"]["recall_at_10"]["diff"]
    assert diff == pytest.approx(noisy["recall_at_10"] - result["models"]["popularity"]["recall_at_10"])
    one = evaluate(catalog, emb, ["noisy"], EvalConfig(n_bootstrap=50, seeds=(1,))).to_dict()["models"]["noisy"]
    assert one["seeds"] == [1] and one["recall_at_10"] == pytest.approx(0.625)


def test_the_best_baseline_is_chosen_on_validation_and_every_model_is_paired_with_it(tiny_models):
    catalog, emb = _catalog(), _embeddings()
    models = ["oracle", "popularity", "segment_popularity", "new_arrivals"]
    result = evaluate(catalog, emb, models, EvalConfig(n_bootstrap=100)).to_dict()
    val = {n: max(result["models"][n]["validation_recall_at_10_excluding"],
                  result["models"][n]["validation_recall_at_10_including"]) for n in models[1:]}
    paired = result["paired"]
    assert paired["reference"] == max(val, key=val.get) and paired["metric"] == "recall_at_10"
    assert set(paired["models"]) == set(models) - {paired["reference"]}
    assert set(paired["models"]["oracle"]) == set(paired_keys())
    for name, diffs in paired["models"].items():
        m, ref = result["models"][name], result["models"][paired["reference"]]
        d = diffs["recall_at_10"]
        assert d["diff"] == pytest.approx(m["recall_at_10"] - ref["recall_at_10"]) and d["n"] == 4
        assert d["low"] <= d["diff"] <= d["high"]
        assert diffs["recall_at_10_cold_items"]["n"] == 3  # the customers who bought a cold product
    grid = result["models"]["segment_popularity"]["grid"]
    assert len(grid) == 6 and result["models"]["segment_popularity"]["params"] in [g["params"] for g in grid]
    assert result["models"]["popularity"]["grid"] == [] and result["models"]["oracle"]["new_customer_path"] == "model"
    assert all(isinstance(result["models"][n]["verdict"], str) for n in models)
    assert PairedReport.from_dict(json.loads(json.dumps(paired))).to_dict() == paired


def test_coverage_ceiling():
    assert coverage_ceiling(506, 24717) == pytest.approx(5060 / 24717)
    assert coverage_ceiling(10, 50) == 1.0 and coverage_ceiling(0, 50) == 0.0


def test_customer_metrics_average_per_customer():
    slices = np.array(["new", "warm"])
    one = CustomerMetrics(slices, np.array([1.0, 0.0]), np.zeros(2), np.zeros(2), np.zeros(2),
                          np.array([1.0, np.nan]), np.array([np.nan, 0.0]), np.empty(0), np.array([0.1, 0.0]), 0.2)
    two = CustomerMetrics(slices, np.array([0.0, 0.5]), np.ones(2), np.ones(2), np.ones(2),
                          np.array([0.0, np.nan]), np.array([np.nan, 1.0]), np.empty(0), np.array([0.3, 1.0]), 0.4)
    mean = CustomerMetrics.average([one, two])
    np.testing.assert_allclose(mean.never_bought, [0.2, 0.5])
    np.testing.assert_allclose(mean.recall, [0.5, 0.25])
    np.testing.assert_allclose(mean.cold_recall, [0.5, np.nan])
    assert mean.coverage == pytest.approx(0.3)
    np.testing.assert_allclose(mean.slice_recall("new"), [0.5, np.nan])


# ---------------------------------------------------------------- the new-customer path

def test_new_customer_fallback_serves_only_customers_without_history():
    catalog = _catalog()
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, "2020-04-01", _embeddings())
    model = create_recommender("content").fit(data)
    segment = create_recommender("segment_popularity").fit(data)
    both = NewCustomerFallback(model, segment)
    scores = both.score(["rep", "new", "ghost"])
    np.testing.assert_array_equal(scores[0], model.score(["rep"])[0])
    np.testing.assert_array_equal(scores[1:], segment.score(["new", "ghost"]))
    liked = both.score_histories([[3], []], [None, "new"])
    np.testing.assert_array_equal(liked[0], model.score_histories([[3]])[0])
    np.testing.assert_array_equal(liked[1], segment.score(["new"])[0])
    assert not np.array_equal(liked[1], model.score_histories([[]], ["new"])[0])  # content's would differ
    # everything else is the model's
    assert both.name == "content" and both.data_ is data and both.cfg is model.cfg
    np.testing.assert_array_equal(both.item_vectors(), model.item_vectors())
    rows = np.array([4, 5])
    assert both.explain(np.array([], np.int64), rows).tolist() == [POPULAR, POPULAR]
    np.testing.assert_array_equal(both.explain(np.array([3, 7]), rows), model.explain(np.array([3, 7]), rows))
    top, _ = both.recommend(["new"], 3)
    np.testing.assert_array_equal(top, segment.recommend(["new"], 3)[0])


def test_as_evaluated_serves_a_model_with_its_chosen_settings_and_fallback():
    from core.recs.evaluate import as_evaluated
    from core.recs.newcustomer import NewCustomerFallback
    from core.recs.registry import fitted
    catalog = _catalog()
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, "2020-04-01", _embeddings())
    result = EvalReport.from_dict({
        "models": {"itemknn": {"params": {"k": 10}, "new_customer_path": "model"},
                   "content": {"params": {}, "new_customer_path": "segment_popularity"}},
        "new_customer_reference": {"model": "segment_popularity", "params": {"days": 56.0}}})
    knn = as_evaluated("itemknn", data, result)
    assert knn.cfg.k == 10 and not isinstance(knn, NewCustomerFallback)
    content = as_evaluated("content", data, result)
    assert isinstance(content, NewCustomerFallback) and content.fallback.cfg.days == 56.0
    stranger = content.score_histories([np.empty(0, dtype=np.int64)])
    np.testing.assert_allclose(stranger, content.fallback.score_histories([np.empty(0, dtype=np.int64)]))
    assert as_evaluated("itemknn", data, None).cfg.k == fitted("itemknn", data).cfg.k  # no result: defaults


class EveryScore(Recommender):
    """A fitted model's scores and nothing else: no capability, so the evaluation scores every product."""

    def __init__(self, model: Recommender):
        self.model, self.name, self.data_ = model, model.name, model.data_

    def score(self, customer_ids):
        return self.model.score(customer_ids)


def assert_index_ranks_as_scores(model: Recommender, data, test: pd.DataFrame) -> None:
    """rank_customers of a model with customer vectors (lists from its index, only the sampled pairs scored)
    against the same model ranked from every product's score, as every other model is: the same lists up to the
    order of tied products, earlier purchases left out, the same sampled ranks; ``score`` never called."""
    import copy
    from core.recs.contract import CUSTOMER_VECTORS
    assert model.supports(CUSTOMER_VECTORS)
    cfg = EvalConfig()
    buyer = next(c for c in test["customer_id"].unique() if len(data.history(c)))
    repeat = test.iloc[[0]].assign(customer_id=buyer, product_id=data.product_ids[data.history(buyer)[0]])
    test = pd.concat([test, repeat], ignore_index=True)  # a product bought again in the window
    want = rank_customers(EveryScore(model), data, test, cfg, sampled=True)
    np.testing.assert_array_equal(rank_customers(model, data, test, cfg).top_including, want.top_including)  # default
    indexed = copy.copy(model)
    indexed.score = None  # never asked for a full row of scores, nor is a model it wraps
    if hasattr(model, "fallback"):
        indexed.model = copy.copy(model.model)
        indexed.model.score = None
    got = rank_customers(indexed, data, test, cfg, sampled=True, from_index=True)
    assert got.customers.tolist() == want.customers.tolist() and len(got.customers) >= 10
    scores = model.score(got.customers.tolist())
    for mine, theirs in ((got.top_including, want.top_including), (got.top_excluding, want.top_excluding)):
        assert mine.shape == theirs.shape == (len(got.customers), 12)
        np.testing.assert_allclose(np.take_along_axis(scores, mine, 1), np.take_along_axis(scores, theirs, 1),
                                   rtol=1e-5, atol=1e-5)
    assert not any(np.isin(top, e).any() for top, e in zip(got.top_excluding, got.earlier))
    assert any(np.isin(top, e).any() for top, e in zip(got.top_including, got.earlier))  # the lists differ
    again = np.concatenate([np.isin(t, e) for t, e in zip(got.truth, got.earlier)])
    assert again.sum() >= 1  # the repeat: ranked last among its negatives when earlier purchases are out
    assert (got.ranks_excluding[again] == (want.ranks_excluding[again])).all()
    for mine, theirs in ((got.ranks_including, want.ranks_including), (got.ranks_excluding, want.ranks_excluding)):
        assert (mine == theirs).mean() >= 0.99  # a near tie may round the other way


def test_a_stored_evaluation_is_not_served_once_a_models_training_changes(monkeypatch):
    """The evaluation's key holds each stored model's cache config: its settings and its training code's revision."""
    from core.recs import evaluate, sage
    before = evaluate._fit_configs(["graphsage", "content"])
    assert list(before) == ["graphsage"] and before["graphsage"]["revision"] == sage.REVISION
    monkeypatch.setattr(sage, "REVISION", sage.REVISION + 1)
    assert evaluate._fit_configs(["graphsage", "content"]) != before
    assert list(evaluate._fit_configs(["blend"])) == ["graphsage", "two_tower"]  # a blend's parts
