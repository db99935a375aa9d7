"""Content similarity (core.recs.baselines.content)."""
from __future__ import annotations

import numpy as np

from core.embeddings.backbone import l2_normalise
from tests.recs.baselines.toydata import best, make_data, model


def test_content_ranks_the_matching_product_first():
    vectors = l2_normalise(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1.0]]))
    # x bought p2 a year ago and p0 yesterday: the recent purchase sets the taste
    data = make_data(5, [("x", 2, 365), ("x", 0, 1)] + [(f"o{i}", 4, 5) for i in range(3)], vectors=vectors)
    content = model("content").fit(data)
    assert best(content.score(["x"])[0], exclude=[0, 2])[0] == 1
    assert best(content.score_histories([[2]])[0], exclude=[2])[0] == 3  # a liked list, never-bought p3
    assert best(content.score(["new"])[0])[0] == 4
