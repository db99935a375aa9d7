"""Baseline recommenders on hand-built RecData whose right answers are known."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from core.recs import baselines
from core.embeddings.backbone import l2_normalise
from core.embeddings.pipeline import Embeddings
from core.recs.contract import RecData, rec_data, top_k
from core.recs.registry import BASELINES, create_recommender

CUTOFF = pd.Timestamp("2020-04-01")
ID_ONLY = ("itemknn", "als", "lightgcn")
FAST_LIGHTGCN = baselines.LightGCNConfig(epochs=40, batch_size=64, lr=0.02)  # tiny graphs: more steps per epoch


def make_data(n_products: int, purchases: list[tuple[str, int, float]], groups: list[str] | None = None,
              vectors: np.ndarray | None = None, customers: tuple[str, ...] = (),
              attributes: pd.DataFrame | None = None, product_columns: dict[str, list[str]] | None = None
              ) -> RecData:
    """RecData of products p0.. (``groups`` their group_id; ``vectors`` their photo and sentence
    embedding, random unit rows by default; ``product_columns`` more attribute columns) and purchases
    (customer, product row, days before CUTOFF); ``attributes`` is the customers table when given."""
    ids = [f"p{i}" for i in range(n_products)]
    products = pd.DataFrame({"title": ids, "group_id": groups or ids, **(product_columns or {})},
                            index=pd.Index(ids, name="product_id"))
    frame = pd.DataFrame({
        "customer_id": pd.Series([c for c, _, _ in purchases], dtype=object),
        "product_id": pd.Series([ids[p] for _, p, _ in purchases], dtype=object),
        "timestamp": pd.to_datetime([CUTOFF - pd.Timedelta(days=d) for _, _, d in purchases]),
        "price": np.full(len(purchases), 0.01)})
    frame = frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
    known = sorted(set(customers) | set(frame["customer_id"]))
    if vectors is None:
        vectors = l2_normalise(np.random.default_rng(0).normal(size=(n_products, 8)))
    table = pd.DataFrame(index=pd.Index(known, name="customer_id")) if attributes is None else attributes
    return RecData(products, table, frame, CUTOFF, vectors, vectors, np.ones(n_products, dtype=bool))


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


# ---------------------------------------------------------------- ordering, segments, new arrivals, settings

def test_ordered_scores_follow_the_keys_lexicographically():
    # key 1 decides; key 2 breaks its ties (a difference far below float32 resolution at 1e6); then row
    scores = baselines.ordered_scores(np.array([1e6, 1e6, 5.0, 1e6, 5.0]), np.array([1.0, 1.0 + 1e-9, 0, 0, 0]))
    assert best(scores) == [1, 0, 3, 2, 4]
    assert scores.dtype == np.float32 and 0 < scores.min() and scores.max() == 1.0


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


def segment(data: RecData, **settings) -> baselines.SegmentPopularity:
    return baselines.SegmentPopularity(baselines.SegmentConfig(**{"bands": 2, **settings})).fit(data)


def test_segment_attributes_are_detected_not_named():
    numeric, categorical = baselines.customer_attribute_kinds(segment_data().customers)
    assert (numeric, categorical) == (["age"], ["club"])  # postal_code skipped: a hashed id
    edges, codes = baselines.attribute_bands(pd.Series(["20", "22", "24", "60", "", "64"]), 2)
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


def test_new_arrivals_by_first_purchase_and_by_launch_date():
    # first purchases: p1 5 days ago, p2 50, p0 100 (bought again yesterday); p3 and p4 the same day
    # (p4 twice); p5 never bought
    purchases = [("a", 0, 100), ("b", 0, 1), ("a", 1, 5), ("c", 2, 50), ("d", 3, 30), ("e", 4, 30), ("f", 4, 20)]
    data = make_data(6, purchases)
    m = baselines.NewArrivals().fit(data)
    assert m.launch_column_ is None
    assert best(m.score(["a"])[0]) == [1, 4, 3, 2, 0, 5]
    np.testing.assert_array_equal(m.score_histories([[0]])[0], m.score(["nobody"])[0])
    # with a launch date the purchases do not matter; p2 launches after the cutoff, p4 has no date
    launch = ["2020-01-01", "2020-03-30", "2020-06-01", "2019-05-01", "", "2020-03-01"]
    dated = make_data(6, purchases, product_columns={"launch": launch, "code": ["0101", "2", "3", "4", "5", "6"]})
    m = baselines.NewArrivals().fit(dated)
    assert m.launch_column_ == "launch"
    assert best(m.score(["a"])[0])[:4] == [1, 5, 0, 3] and set(best(m.score(["a"])[0])[4:]) == {2, 4}


def test_launch_date_column_needs_dates_not_numbers():
    frame = pd.DataFrame({"code": ["20200101", "20200202"], "size": ["1", "2"],
                          "first_sold": ["2020-01-01", "2020/02/03"]})
    assert baselines.launch_date_column(frame) == "first_sold"
    assert baselines.launch_date_column(frame[["code", "size"]]) is None


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
