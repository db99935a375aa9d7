"""The two-block purchase data the learners are checked on, and every baseline fitted to it once."""
from __future__ import annotations

import numpy as np
import pytest

from core.recs.contract import RecData
from core.recs.registry import BASELINES
from tests.recs.baselines.toydata import make_data, model


@pytest.fixture(scope="package")
def blocks() -> RecData:
    """Two blocks: customers a0..a9 buy 4 of products 0..9, b0..b9 4 of 10..19; 20..23 never sold."""
    rng = np.random.default_rng(1)
    purchases = [(f"{side}{c}", int(p) + offset, float(rng.uniform(1, 300)))
                 for side, offset in (("a", 0), ("b", 10)) for c in range(10)
                 for p in rng.choice(10, size=4, replace=False)]
    return make_data(24, purchases)


@pytest.fixture(scope="package")
def fitted_blocks(blocks) -> dict:
    return {name: model(name).fit(blocks) for name in BASELINES}
