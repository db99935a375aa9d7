"""Approximate layouts against exact search: the recall measure."""
import numpy as np
import pytest


def test_ann_recall_by_hand():
    from core.bench.two_tower import ann_recall
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approximate = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])  # 2 of 4, then 4 of 4
    assert ann_recall(exact, approximate) == pytest.approx(0.75)
