"""Reciprocal-rank fusion."""
from __future__ import annotations


def test_reciprocal_rank_fusion_by_hand():
    import numpy as np

    from core.recs.contract import Recommender
    from core.recs.fusion import RankFusion, reciprocal_ranks
    got = reciprocal_ranks(np.array([[3.0, 1.0, 2.0], [0.0, 0.0, 5.0]]), k=60)
    want = [[1 / 61, 1 / 63, 1 / 62], [1 / 62, 1 / 63, 1 / 61]]  # ties by product row
    np.testing.assert_allclose(got, want, rtol=1e-6)

    class Fixed(Recommender):
        def __init__(self, scores):
            self.scores = np.array([scores], dtype=np.float32)

        def score(self, customer_ids):
            return self.scores

    fused = RankFusion("blend", [Fixed([3.0, 2.0, 1.0]), Fixed([1.0, 3.0, 2.0])])
    # product 1 is 2nd and 1st, product 0 1st and 3rd: 1/62 + 1/61 > 1/61 + 1/63
    assert fused.recommend(["anyone"], 3)[0][0].tolist() == [1, 0, 2]
