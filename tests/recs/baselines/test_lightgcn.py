"""LightGCN (core.recs.baselines.lightgcn): its trained state."""
from __future__ import annotations

import numpy as np

from core.recs.baselines.lightgcn import LightGCN
from tests.recs.baselines.toydata import FAST_LIGHTGCN


def test_lightgcn_state_round_trips(blocks, fitted_blocks):
    trained = fitted_blocks["lightgcn"]
    loaded = LightGCN(FAST_LIGHTGCN).load_state(blocks, trained.state_arrays())
    np.testing.assert_array_equal(loaded.score(["a0", "new"]), trained.score(["a0", "new"]))
    assert loaded.cache_config() == trained.cache_config()
