"""Ranking metrics against hand-computed values and PyG, the sampled metric and bootstrap intervals."""
from __future__ import annotations

from math import log2

import numpy as np
import pytest
import torch
from torch_geometric.metrics import LinkPredCoverage, LinkPredHitRatio, LinkPredMAP, LinkPredNDCG, LinkPredRecall

from core.recs.metrics import bootstrap_ci, coverage, ranking_metrics, sample_negatives, sampled_ranks, sampled_recall

IDCG3 = 1 + 1 / log2(3) + 1 / log2(4)  # ideal DCG of three relevant products


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
