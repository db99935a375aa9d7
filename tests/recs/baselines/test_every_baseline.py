"""What every baseline does the same way (core.recs.baselines.base.Baseline), and creating them by name."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from core.embeddings.backbone import l2_normalise
from core.embeddings.pipeline import Embeddings
from core.recs import baselines
from core.recs.contract import rec_data, top_k
from core.recs.registry import BASELINES, create_recommender
from tests.recs.baselines.toydata import FAST_LIGHTGCN, ID_ONLY, best, make_data, model


def test_create_knows_every_baseline():
    for name in BASELINES:
        assert create_recommender(name).name == name
    assert {n for n in BASELINES if baselines.create(n).id_only} == set(ID_ONLY)
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.create("nope")


@pytest.mark.parametrize("name", ["als", "lightgcn", "itemknn"])
def test_learners_recover_the_blocks(name, blocks, fitted_blocks):
    m = fitted_blocks[name]
    ids = [f"{s}{c}" for s in "ab" for c in range(10)]
    rows, _ = top_k(m.score(ids), 3, [blocks.history(c) for c in ids])
    own = [(r < 10) == (c[0] == "a") for r_row, c in zip(rows, ids) for r in r_row]
    assert np.mean(own) >= 0.8
    liked, _ = top_k(m.score_histories([[0, 1, 2], [12, 13]]), 3, [[0, 1, 2], [12, 13]])
    assert (liked[0] < 10).mean() >= 2 / 3 and (liked[1] >= 10).mean() >= 2 / 3


@pytest.mark.parametrize("name", ID_ONLY)
def test_id_only_models_never_favour_unsold_products(name, blocks, fitted_blocks):
    unsold = np.arange(20, 24)
    histories = [blocks.history("a0"), [], [20, 21], [0, 22]]
    scores = fitted_blocks[name].score_histories(histories, ["a0", None, None, None])
    sold = np.setdiff1d(np.arange(24), unsold)
    assert (scores[:, unsold].max(axis=1) < scores[:, sold].min(axis=1)).all()
    np.testing.assert_array_equal(scores[1], scores[2])  # a liked list of unsold products is a new customer


@pytest.mark.parametrize("name", BASELINES)
def test_every_model_handles_new_and_unknown_customers(name, blocks, fitted_blocks):
    m = fitted_blocks[name]
    scores = m.score(["a0", "ghost"])
    assert scores.shape == (2, 24) and scores.dtype == np.float32 and np.isfinite(scores).all()
    new = m.score_histories([[], np.array([], dtype=np.int64)])
    assert new.shape == (2, 24) and new.dtype == np.float32
    np.testing.assert_array_equal(new[0], scores[1])
    counts = blocks.popularity()
    recent = blocks.popularity(28) + counts / (counts.max() + 1)
    if name == "new_arrivals":  # the product first bought last
        first = pd.Series(blocks.days_ago).groupby(blocks.items).max()
        assert best(new[0])[0] == first.idxmin()
    else:
        assert best(new[0])[0] == np.argmax(recent if name in ("recent_popularity", "segment_popularity") else counts)
    assert m.score_histories([]).shape == (0, 24)


@pytest.mark.parametrize("name", BASELINES)
def test_every_model_survives_no_training_purchases(name):
    data = make_data(4, [], customers=("c0",))
    m = model(name).fit(data)
    scores = np.concatenate([m.score(["c0", "ghost"]), m.score_histories([[1, 2]])])
    assert scores.shape == (3, 4) and scores.dtype == np.float32 and np.isfinite(scores).all()


@pytest.mark.parametrize("name", ["als", "lightgcn"])
def test_seeded_models_are_deterministic(name, blocks, fitted_blocks):
    ids = ["a0", "b3"]
    again = model(name).fit(blocks).score(ids)
    np.testing.assert_allclose(again, fitted_blocks[name].score(ids), atol=1e-5)
    other = baselines.ALS(baselines.AlsConfig(seed=1)) if name == "als" else \
        baselines.LightGCN(dataclasses.replace(FAST_LIGHTGCN, seed=1))
    other = other.fit(blocks).score(ids)
    assert not np.allclose(other, again, atol=1e-5)


def test_every_model_fits_the_synthetic_catalogue(synthetic_catalog):
    products, purchases = synthetic_catalog.products, synthetic_catalog.purchases
    rng = np.random.default_rng(0)
    unit = lambda: l2_normalise(rng.normal(size=(len(products), 16)))  # noqa: E731
    emb = Embeddings(products.index.to_numpy(str), unit(), unit(), np.ones(len(products), dtype=bool))
    cutoff = purchases["timestamp"].quantile(0.8)
    data = rec_data(products, synthetic_catalog.customers, purchases, cutoff, emb)
    ids = data.customer_ids[:5].tolist() + ["ghost"]
    for name in BASELINES:
        scores = model(name).fit(data).score(ids)
        assert scores.shape == (len(ids), len(products)) and np.isfinite(scores).all(), name


def test_create_applies_settings_and_every_grid_point_is_valid():
    assert baselines.create("itemknn", params={"k": 7}).cfg.k == 7
    assert baselines.create("als", seed=3, params={"factors": 8}).cfg == baselines.AlsConfig(factors=8, seed=3)
    assert create_recommender("lightgcn", 2, {"epochs": 1}).cfg.seed == 2
    with pytest.raises(ValueError, match="has no setting kk"):
        baselines.create("itemknn", params={"kk": 7})
    with pytest.raises(ValueError, match="has no settings"):
        baselines.create("popularity", params={"days": 7})
    for name, grid in baselines.GRIDS.items():
        assert name in BASELINES and 3 <= len(grid) <= 6, name
        assert baselines.create(name, params=grid[0]).cfg == baselines.create(name).cfg, name  # the default first
        for params in grid:
            assert baselines.create(name, params=params).name == name
