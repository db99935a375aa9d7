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


def test_an_epoch_takes_at_most_max_steps_whole_graph_steps(monkeypatch):
    """Each step propagates over the whole graph: past max_steps * batch_size pairs the batch grows, so an epoch
    costs max_steps passes however many purchases there are."""
    import dataclasses

    import torch

    from core.recs.baselines.lightgcn import train_lightgcn
    steps = []
    step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 600), rng.integers(0, 60, 600)
    pairs = len(np.unique(np.stack([users, items], 1), axis=0))
    cfg = dataclasses.replace(FAST_LIGHTGCN, epochs=2, batch_size=16)
    train_lightgcn(users, items, 40, 60, dataclasses.replace(cfg, max_steps=10_000))
    assert len(steps) == 2 * -(-pairs // 16)  # under the cap: batches of 16
    steps.clear()
    train_lightgcn(users, items, 40, 60, dataclasses.replace(cfg, max_steps=5))
    assert len(steps) == 2 * 5  # capped: 5 larger batches an epoch
