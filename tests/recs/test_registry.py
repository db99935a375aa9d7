"""The recommender registry (core.recs.registry): names, creation, seeds, tuning grids, labels, cached fitting."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.cache import ArtefactCache
from core.recs import baselines
from core.recs.contract import SAVES_STATE
from core.recs.fusion import RankFusion
from core.recs.registry import (ABOUT, BASELINES, BLENDS, LABELS, MODELS, SEEDED, create_recommender, data_fingerprint,
                                fitted, in_order, is_seeded, label, list_recommenders, new_customer_list, tuning_grid)
from tests.recs.baselines.toydata import make_data


def test_the_default_models_and_the_blends():
    assert list_recommenders() == list(MODELS) and list_recommenders(blends=True) == list(MODELS) + ["blend"]
    assert MODELS[:2] == ("graphsage", "two_tower") and set(BASELINES) < set(MODELS)
    for name in list_recommenders(blends=True):
        assert create_recommender(name).name == name
    assert isinstance(create_recommender("blend"), RankFusion)
    assert [m.name for m in create_recommender("blend").models] == list(BLENDS["blend"])
    with pytest.raises(ValueError, match="unknown model 'nope'; one of graphsage, two_tower"):
        create_recommender("nope")
    with pytest.raises(ValueError, match="takes no settings"):
        create_recommender("graphsage", params={"epochs": 1})
    assert create_recommender("two_tower", seed=4).cfg.seed == 4


def test_seeded_registry_matches_the_configs():
    configs = {n: getattr(baselines.create(n), "cfg", None) for n in BASELINES}
    seeded = {n for n, cfg in configs.items()
              if cfg is not None and "seed" in {f.name for f in dataclasses.fields(cfg)}}
    assert seeded == set(SEEDED) & set(BASELINES) == {"als", "lightgcn"}
    assert is_seeded("graphsage") and is_seeded("blend") and not is_seeded("content")


def test_tuning_grids_are_the_baselines_and_the_learned_models_tune_themselves():
    assert tuning_grid("itemknn") == [dict(p) for p in baselines.GRIDS["itemknn"]] and len(tuning_grid("itemknn")) > 1
    assert tuning_grid("popularity") == [{}] and tuning_grid("graphsage") == [{}] and tuning_grid("blend") == [{}]


def test_every_model_has_a_label_and_a_line_in_the_registry_order():
    assert tuple(LABELS) == MODELS and set(ABOUT) == set(MODELS)
    assert label("als") == "ALS" and label("blend") == "blend"  # no label: its id
    assert in_order(["blend", "content", "als", "graphsage"]) == ["graphsage", "als", "content", "blend"]
    assert new_customer_list("two_tower", "model") == "its own list, from attributes"
    assert new_customer_list("two_tower", "segment_popularity") == "Popular with their segment (fallback)"
    assert new_customer_list("new_arrivals", "model") == "the newest products"
    assert new_customer_list("itemknn", None) == "all-time bestsellers"


def two_blocks() -> list[tuple[str, int, float]]:
    """Customers a0..a9 buy 4 of products 0..9, b0..b9 4 of 10..19 (as tests/recs/baselines' blocks)."""
    rng = np.random.default_rng(1)
    return [(f"{side}{c}", int(p) + offset, float(rng.uniform(1, 300)))
            for side, offset in (("a", 0), ("b", 10)) for c in range(10) for p in rng.choice(10, size=4, replace=False)]


@pytest.fixture(scope="module")
def blocks():
    return make_data(24, two_blocks())


def test_a_model_that_saves_its_state_is_fitted_once_then_loaded(blocks, tmp_path, monkeypatch):
    cache = ArtefactCache(tmp_path / "cache")
    assert create_recommender("lightgcn").supports(SAVES_STATE)
    first = fitted("lightgcn", blocks, cache, seed=0, params={"epochs": 2})
    monkeypatch.setattr(baselines.LightGCN, "fit", lambda *a, **k: pytest.fail("fitted again"))
    again = fitted("lightgcn", blocks, cache, seed=0, params={"epochs": 2})
    np.testing.assert_array_equal(again.score(["a0", "b3"]), first.score(["a0", "b3"]))
    assert len([e for e in cache.entries() if e.kind == "recommender-lightgcn"]) == 1
    # one that cannot save its state is simply fitted (in milliseconds), whatever the cache
    assert not create_recommender("popularity").supports(SAVES_STATE)
    assert fitted("popularity", blocks, cache).data_ is blocks
    blend = fitted("blend", blocks)
    assert isinstance(blend, RankFusion) and blend.data_ is blocks and blend.score(["a0"]).shape == (1, 24)


def test_the_data_fingerprint_follows_what_a_model_learns_from(blocks):
    assert data_fingerprint(make_data(24, two_blocks())) == data_fingerprint(blocks)
    assert data_fingerprint(make_data(24, two_blocks()[1:])) != data_fingerprint(blocks)
