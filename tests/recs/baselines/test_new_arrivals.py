"""New arrivals (core.recs.baselines.new_arrivals)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.recs.baselines.new_arrivals import NewArrivals, launch_date_column
from tests.recs.baselines.toydata import best, make_data


def test_new_arrivals_by_first_purchase_and_by_launch_date():
    # first purchases: p1 5 days ago, p2 50, p0 100 (bought again yesterday); p3 and p4 the same day
    # (p4 twice); p5 never bought
    purchases = [("a", 0, 100), ("b", 0, 1), ("a", 1, 5), ("c", 2, 50), ("d", 3, 30), ("e", 4, 30), ("f", 4, 20)]
    data = make_data(6, purchases)
    m = NewArrivals().fit(data)
    assert m.launch_column_ is None
    assert best(m.score(["a"])[0]) == [1, 4, 3, 2, 0, 5]
    np.testing.assert_array_equal(m.score_histories([[0]])[0], m.score(["nobody"])[0])
    # with a launch date the purchases do not matter; p2 launches after the cutoff, p4 has no date
    launch = ["2020-01-01", "2020-03-30", "2020-06-01", "2019-05-01", "", "2020-03-01"]
    dated = make_data(6, purchases, product_columns={"launch": launch, "code": ["0101", "2", "3", "4", "5", "6"]})
    m = NewArrivals().fit(dated)
    assert m.launch_column_ == "launch"
    assert best(m.score(["a"])[0])[:4] == [1, 5, 0, 3] and set(best(m.score(["a"])[0])[4:]) == {2, 4}


def test_launch_date_column_needs_dates_not_numbers():
    frame = pd.DataFrame({"code": ["20200101", "20200202"], "size": ["1", "2"],
                          "first_sold": ["2020-01-01", "2020/02/03"]})
    assert launch_date_column(frame) == "first_sold"
    assert launch_date_column(frame[["code", "size"]]) is None
