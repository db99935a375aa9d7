"""Colour variants (core.recs.baselines.colour_variants)."""
from __future__ import annotations

from tests.recs.baselines.toydata import best, make_data, model


def test_colour_variants_rank_siblings_first():
    groups = ["A", "A", "A", "B", "B", "C"]
    # c0 bought p3 (group B) long ago and p0 (group A) lately; others made p5 the best seller
    data = make_data(6, [("c0", 3, 300), ("c0", 0, 2)] + [(f"o{i}", 5, 10) for i in range(4)], groups=groups)
    variants = model("colour_variants").fit(data)
    ranked = best(variants.score(["c0"])[0], exclude=[0, 3])
    assert set(ranked[:2]) == {1, 2} and ranked[2:4] == [4, 5]
    assert best(variants.score_histories([[3]])[0], exclude=[3])[:2] == [4, 5]  # a liked list
    assert best(variants.score(["new"])[0])[0] == 5
