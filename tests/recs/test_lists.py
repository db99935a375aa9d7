"""recommend's lists in batches: in the order asked whatever order a cluster's workers finish them in."""
from __future__ import annotations

import numpy as np

from core.recs.lists import _in_order


def test_batches_come_back_in_order_whatever_order_they_finish_in():
    def batch(positions):
        at = np.asarray(positions)
        return at, {"rows": at * 10}

    finished = [batch([6, 7]), batch([2, 3]), batch([]), batch([8, 9, 0, 1]), batch([4, 5])]  # a block of two
    got = list(_in_order(iter(finished)))
    assert np.concatenate([at for at, _ in got]).tolist() == list(range(10))
    assert np.concatenate([out["rows"] for _, out in got]).tolist() == [p * 10 for p in range(10)]
