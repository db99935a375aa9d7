"""Item kNN (core.recs.baselines.itemknn)."""
from __future__ import annotations

from tests.recs.baselines.toydata import best, make_data, model


def test_itemknn_recommends_the_co_bought_item():
    purchases = [(f"c{i}", p, 20) for i in range(3) for p in (0, 1)]  # p0 and p1 bought together
    purchases += [(f"d{i}", p, 20) for i in range(2) for p in (2, 3)] + [(f"e{i}", 4, 5) for i in range(6)]
    data = make_data(6, purchases + [("x", 0, 1)])
    knn = model("itemknn").fit(data)
    assert best(knn.score(["x"])[0], exclude=[0])[0] == 1
    assert best(knn.score_histories([[2]])[0], exclude=[2])[0] == 3
    assert best(knn.score(["nobody"])[0])[0] == 4  # new customer: the best seller
