"""Baseline recommenders on hand-built RecData whose right answers are known."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from core import baselines
from core.embed import l2_normalise
from core.pipeline import Embeddings
from core.recommend import BASELINES, RecData, create_recommender, rec_data, top_k

CUTOFF = pd.Timestamp("2020-04-01")
ID_ONLY = ("itemknn", "als", "lightgcn")
FAST_LIGHTGCN = baselines.LightGCNConfig(epochs=40, batch_size=64, lr=0.02)  # tiny graphs: more steps per epoch


def make_data(n_products: int, purchases: list[tuple[str, int, float]], groups: list[str] | None = None,
              vectors: np.ndarray | None = None, customers: tuple[str, ...] = ()) -> RecData:
    """RecData of products p0.. (``groups`` their group_id; ``vectors`` their photo and sentence
    embedding, random unit rows by default) and purchases (customer, product row, days before CUTOFF)."""
    ids = [f"p{i}" for i in range(n_products)]
    products = pd.DataFrame({"title": ids, "group_id": groups or ids}, index=pd.Index(ids, name="product_id"))
    frame = pd.DataFrame({
        "customer_id": pd.Series([c for c, _, _ in purchases], dtype=object),
        "product_id": pd.Series([ids[p] for _, p, _ in purchases], dtype=object),
        "timestamp": pd.to_datetime([CUTOFF - pd.Timedelta(days=d) for _, _, d in purchases]),
        "price": np.full(len(purchases), 0.01)})
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    known = sorted(set(customers) | set(frame["customer_id"]))
    if vectors is None:
        vectors = l2_normalise(np.random.default_rng(0).normal(size=(n_products, 8)))
    return RecData(products, pd.DataFrame(index=pd.Index(known, name="customer_id")), frame, CUTOFF,
                   vectors, vectors, np.ones(n_products, dtype=bool))


def model(name: str, seed: int = 0):
    return baselines.LightGCN(FAST_LIGHTGCN) if name == "lightgcn" else baselines.create(name, seed=seed)


def best(scores: np.ndarray, exclude=()) -> list[int]:
    """Product rows of one score row, best first (``exclude`` left out)."""
    return top_k(scores[None], scores.shape[0], [np.asarray(exclude, dtype=np.int64)])[0][0].tolist()


@pytest.fixture(scope="module")
def blocks() -> RecData:
    """Two blocks: customers a0..a9 buy 4 of products 0..9, b0..b9 4 of 10..19; 20..23 never sold."""
    rng = np.random.default_rng(1)
    purchases = [(f"{side}{c}", int(p) + offset, float(rng.uniform(1, 300)))
                 for side, offset in (("a", 0), ("b", 10)) for c in range(10)
                 for p in rng.choice(10, size=4, replace=False)]
    return make_data(24, purchases)


@pytest.fixture(scope="module")
def fitted_blocks(blocks) -> dict:
    return {name: model(name).fit(blocks) for name in BASELINES}


def test_create_knows_every_baseline():
    for name in BASELINES:
        assert create_recommender(name).name == name
    assert {n for n in BASELINES if baselines.create(n).id_only} == set(ID_ONLY)
    with pytest.raises(ValueError, match="unknown baseline"):
        baselines.create("nope")


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


def test_colour_variants_rank_siblings_first():
    groups = ["A", "A", "A", "B", "B", "C"]
    # c0 bought p3 (group B) long ago and p0 (group A) lately; others made p5 the best seller
    data = make_data(6, [("c0", 3, 300), ("c0", 0, 2)] + [(f"o{i}", 5, 10) for i in range(4)], groups=groups)
    variants = model("colour_variants").fit(data)
    ranked = best(variants.score(["c0"])[0], exclude=[0, 3])
    assert set(ranked[:2]) == {1, 2} and ranked[2:4] == [4, 5]
    assert best(variants.score_histories([[3]])[0], exclude=[3])[:2] == [4, 5]  # a liked list
    assert best(variants.score(["new"])[0])[0] == 5


def test_itemknn_recommends_the_co_bought_item():
    purchases = [(f"c{i}", p, 20) for i in range(3) for p in (0, 1)]  # p0 and p1 bought together
    purchases += [(f"d{i}", p, 20) for i in range(2) for p in (2, 3)] + [(f"e{i}", 4, 5) for i in range(6)]
    data = make_data(6, purchases + [("x", 0, 1)])
    knn = model("itemknn").fit(data)
    assert best(knn.score(["x"])[0], exclude=[0])[0] == 1
    assert best(knn.score_histories([[2]])[0], exclude=[2])[0] == 3
    assert best(knn.score(["nobody"])[0])[0] == 4  # new customer: the best seller


def test_content_ranks_the_matching_product_first():
    vectors = l2_normalise(np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1.0]]))
    # x bought p2 a year ago and p0 yesterday: the recent purchase sets the taste
    data = make_data(5, [("x", 2, 365), ("x", 0, 1)] + [(f"o{i}", 4, 5) for i in range(3)], vectors=vectors)
    content = model("content").fit(data)
    assert best(content.score(["x"])[0], exclude=[0, 2])[0] == 1
    assert best(content.score_histories([[2]])[0], exclude=[2])[0] == 3  # a liked list, never-bought p3
    assert best(content.score(["new"])[0])[0] == 4


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
    fallback = blocks.popularity(28) + counts / (counts.max() + 1) if name == "recent_popularity" else counts
    popular = np.argmax(fallback)
    assert best(new[0])[0] == popular
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


def test_lightgcn_state_round_trips(blocks, fitted_blocks):
    trained = fitted_blocks["lightgcn"]
    loaded = baselines.LightGCN(FAST_LIGHTGCN).load_state(blocks, trained.state_arrays())
    np.testing.assert_array_equal(loaded.score(["a0", "new"]), trained.score(["a0", "new"]))
    assert loaded.cache_config() == trained.cache_config()


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
