"""Popularity, recent popularity and segment popularity (core.recs.baselines.popularity)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.recs.baselines.popularity import SegmentConfig, SegmentPopularity, attribute_bands, customer_attribute_kinds
from core.recs.contract import RecData
from tests.recs.baselines.toydata import best, make_data, model


def test_popularity_ranks_most_bought_first():
    data = make_data(5, [("c0", 2, 5), ("c1", 2, 5), ("c2", 2, 5), ("c0", 0, 5), ("c1", 0, 5), ("c2", 4, 5)])
    scores = model("popularity").fit(data).score(["c0", "new"])
    assert best(scores[0])[:3] == [2, 0, 4] and best(scores[1])[:3] == [2, 0, 4]


def test_recent_popularity_prefers_last_four_weeks():
    # p0 sold 5 times 200 days ago; p1 twice and p3 once in the last 4 weeks; p2 once 100 days ago
    data = make_data(5, [("c0", 0, 200)] * 5 + [("c1", 1, 10), ("c2", 1, 3), ("c3", 3, 27), ("c4", 2, 100)])
    assert best(model("popularity").fit(data).score(["x"])[0])[0] == 0
    recent = model("recent_popularity").fit(data)
    assert best(recent.score(["c0"])[0])[:4] == [1, 3, 0, 2]  # then all-time counts break ties
    assert best(recent.score_histories([[]])[0])[:4] == [1, 3, 0, 2]


def segment_data(smoothing_purchases: int = 0) -> RecData:
    """Ages 20, 22, 24 (young), 60, 62, 64 (old), "" (missing) and a categorical "club". In the last 4
    weeks the young bought p0 three times, the old p1 twice, two customers with no attributes p2 four
    times; a year ago the young bought p3 five times (outside every window tried)."""
    ages = {"y0": "20", "y1": "22", "y2": "24", "o0": "60", "o1": "62", "o2": "64", "anon": "", "anon2": ""}
    clubs = {"y0": "A", "y1": "A", "y2": "B", "o0": "B", "o1": "B", "o2": "B", "anon": "", "anon2": ""}
    table = pd.DataFrame({"age": ages, "club": clubs, "postal_code": {c: f"h{i}" for i, c in enumerate(ages)}})
    table.index.name = "customer_id"
    purchases = [("y0", 0, 3), ("y1", 0, 5), ("y2", 0, 7), ("o0", 1, 2), ("o1", 1, 9)]
    purchases += [("anon", 2, 1), ("anon2", 2, 2), ("anon", 2, 3), ("anon2", 2, 4)]
    purchases += [(c, 3, 365) for c in ("y0", "y1", "y2", "y0", "y1")]
    return make_data(5, purchases, attributes=table)


def segment(data: RecData, **settings) -> SegmentPopularity:
    return SegmentPopularity(SegmentConfig(**{"bands": 2, **settings})).fit(data)


def test_segment_attributes_are_detected_not_named():
    numeric, categorical = customer_attribute_kinds(segment_data().customers)
    assert (numeric, categorical) == (["age"], ["club"])  # postal_code skipped: a hashed id
    edges, codes = attribute_bands(pd.Series(["20", "22", "24", "60", "", "64"]), 2)
    assert codes.tolist() == [0, 0, 1, 1, -1, 1] and len(edges) == 1


def test_segment_popularity_ranks_what_the_segment_bought():
    data = segment_data()
    m = segment(data, smoothing=1.0)
    assert m.columns_ == ("age",)
    scores = m.score(["y0", "o2", "anon", "ghost"])
    assert best(scores[0])[:3] == [0, 2, 1]  # the young bought p0; the small smoothing brings p2 next
    assert best(scores[1])[:3] == [1, 2, 0]  # the old (o2 bought nothing itself) get what the old bought
    overall = [2, 0, 1, 3, 4]  # recent counts 4, 3, 2, then all-time (p3's five old purchases)
    assert best(scores[2]) == overall and best(scores[3]) == overall  # no attributes, unknown id
    np.testing.assert_array_equal(m.score_histories([[], [0, 1]])[0], scores[3])  # no id: overall
    # a history does not change the segment's list: every customer is scored by their segment
    np.testing.assert_array_equal(m.score_histories([[4]], ["y1"])[0], scores[0])


def test_segment_popularity_smoothing_and_window():
    data = segment_data()
    # shrunk hard toward everyone's recent purchases, the young's list is the overall one
    assert best(segment(data, smoothing=1e6).score(["y0"])[0]) == [2, 0, 1, 3, 4]
    # a window of 400 days counts the young's five old purchases of p3
    assert best(segment(data, smoothing=1.0, days=400.0).score(["y0"])[0])[0] == 3
    # crossing with "club": y2 (club B) shares its segment with nobody who bought, so p0 only via its share
    crossed = segment(data, smoothing=1.0, categorical="club")
    assert crossed.columns_ == ("age", "club")
    assert best(crossed.score(["y0"])[0])[0] == 0 and best(crossed.score(["y2"])[0])[0] == 0
    assert len(np.unique(crossed.segments(["y0", "y2", "o0"]))) == 3
    with pytest.raises(ValueError, match="no customer attribute 'shoe_size'"):
        segment(data, numeric="shoe_size")
