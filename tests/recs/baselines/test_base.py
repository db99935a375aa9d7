"""The score helpers every baseline shares (core.recs.baselines.base)."""
from __future__ import annotations

import numpy as np

from core.recs.baselines.base import ordered_scores
from tests.recs.baselines.toydata import best


def test_ordered_scores_follow_the_keys_lexicographically():
    # key 1 decides; key 2 breaks its ties (a difference far below float32 resolution at 1e6); then row
    scores = ordered_scores(np.array([1e6, 1e6, 5.0, 1e6, 5.0]), np.array([1.0, 1.0 + 1e-9, 0, 0, 0]))
    assert best(scores) == [1, 0, 3, 2, 4]
    assert scores.dtype == np.float32 and 0 < scores.min() and scores.max() == 1.0
