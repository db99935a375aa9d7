"""The demo check (core.recs.demo) on a tiny hand-built catalogue with known answers, and two-tower's reasons."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from core.recs.demo import (DemoConfig, added_product_rank, draw_pairs, jaccard, nearest_bought,
                       new_customer_lists, places_products, product_attributes, share_matching, taste_fit,
                       taste_groups, taste_overlap)
from core.recs.contract import CUSTOMER_VECTORS, NO_REASON, PRODUCT_VECTOR, RecData, Recommender, top_k

TYPES, COLOURS, PER_GROUP, N_PLAIN = 4, 4, 4, 12
CFG = DemoConfig(n_pairs=40, n_customers=30, n_added=10, n_near=2, max_buyers=5, rank_under=3)


def tiny_data() -> RecData:
    """4 types x 4 colours x 4 products (rows 0..63), then 12 products of unknown type and colour (64..75);
    customers u0..u9 bought products of rows 0..31 only, so rows 32..75 were never bought."""
    product_type = [f"t{t}" for t in range(TYPES) for _ in range(COLOURS * PER_GROUP)] + [""] * N_PLAIN
    colour = [f"c{c}" for _ in range(TYPES) for c in range(COLOURS) for _ in range(PER_GROUP)] + [""] * N_PLAIN
    n = len(product_type)
    ids = [f"p{i:03d}" for i in range(n)]
    products = pd.DataFrame({"title": ids, "description": "", "image_path": "", "sentence": ids,
                             "group_id": [f"g{i // 2}" for i in range(n)], "product_type": product_type,
                             "colour": colour, "pattern": "solid"}, index=pd.Index(ids, name="product_id"))
    rng = np.random.default_rng(0)
    buyers = [f"u{i}" for i in range(10)]
    purchases = pd.DataFrame({"customer_id": np.repeat(buyers, 4),
                              "product_id": [ids[r] for r in rng.integers(0, 32, size=40)],
                              "timestamp": pd.Timestamp("2020-03-01") + pd.to_timedelta(np.arange(40), "h"),
                              "price": 1.0})
    vectors = rng.standard_normal((2, n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=2, keepdims=True)
    customers = pd.DataFrame(index=pd.Index(buyers, name="customer_id"))
    return RecData(products, customers, purchases, pd.Timestamp("2020-04-01"), vectors[0], vectors[1],
                   np.ones(n, dtype=bool))


class Fixed(Recommender):
    """Everyone gets the same scores: the unknown-type products first (never liked in a taste draw)."""
    name = "fixed"

    def __init__(self, n: int):
        self.scores = np.arange(n, dtype=np.float32)  # row 75 best

    def score_histories(self, histories, customer_ids=None):
        return np.tile(self.scores, (len(histories), 1))


class SameTaste(Recommender):
    """2 for the liked products' (type, colour), 1 for their type or their colour, else 0."""
    name = "same_taste"

    def __init__(self, data: RecData):
        self.type = data.products["product_type"].to_numpy(str)
        self.colour = data.products["colour"].to_numpy(str)

    def score_histories(self, histories, customer_ids=None):
        out = []
        for h in histories:
            t, c = self.type == self.type[h[0]], self.colour == self.colour[h[0]]
            out.append((t & c) * 2.0 + (t ^ c) * 1.0)
        return np.asarray(out, dtype=np.float32)


def test_taste_groups_keep_known_groups_with_enough_products():
    keys, members = taste_groups(np.array(["a", "a", "a", "b", "b", ""]), np.array(["x", "x", "x", "x", "x", "x"]),
                                 min_size=3)
    assert keys.tolist() == [["a", "x"]]
    assert [m.tolist() for m in members] == [[0, 1, 2]]


def test_pairs_differ_in_both_type_and_colour():
    keys = np.array([["t0", "c0"], ["t0", "c1"], ["t1", "c0"], ["t1", "c1"], ["t2", "c2"]])
    a, b = draw_pairs(keys, 200, np.random.default_rng(0))
    assert len(a) == len(b) == 200
    assert ((keys[a, 0] != keys[b, 0]) & (keys[a, 1] != keys[b, 1])).all()
    with pytest.raises(ValueError):
        draw_pairs(keys[:2], 5, np.random.default_rng(0))  # t0 c0 and t0 c1 share a type


def test_jaccard_and_share_matching_by_hand():
    a = np.array([[0, 1, 2, 3], [4, 5, -1, -1]])
    b = np.array([[2, 3, 4, 5], [4, 5, -1, -1]])
    assert jaccard(a, b).tolist() == [2 / 6, 1.0]
    types, colours = np.array(["t", "t", "u", "u"]), np.array(["x", "y", "x", "y"])
    lists = np.array([[0, 1, 2, 3], [3, -1, -1, -1]])
    # customer 0 liked (t, y): rows 0, 1 share the type, 1 and 3 the colour; customer 1 liked (t, x): row 3 neither
    assert share_matching(lists, types, colours, np.array(["t", "t"]), np.array(["y", "x"])).tolist() == [0.75, 0.0]


def test_the_same_list_for_everyone_overlaps_fully():
    data = tiny_data()
    types, colours = data.products["product_type"].to_numpy(str), data.products["colour"].to_numpy(str)
    assert taste_overlap(Fixed(data.n_products), types, colours, CFG) == 1.0
    assert taste_fit(Fixed(data.n_products), types, colours, CFG) == 0.0  # unknown type and colour: no match


def test_a_model_of_the_liked_taste_fits_fully_and_overlaps_little():
    data = tiny_data()
    types, colours = data.products["product_type"].to_numpy(str), data.products["colour"].to_numpy(str)
    assert taste_fit(SameTaste(data), types, colours, CFG) == 1.0
    assert taste_overlap(SameTaste(data), types, colours, CFG) < 0.2


def test_liked_products_are_never_listed():
    data = tiny_data()
    liked = [np.array([75, 74, 73]), np.array([0, 1, 2])]
    lists = new_customer_lists(Fixed(data.n_products), liked, k=12)
    assert not set(lists[0]) & {73, 74, 75}
    assert lists[0][:3].tolist() == [72, 71, 70]
    assert lists[1].tolist() == list(range(75, 63, -1))


class Placed(Recommender):
    """Customers all point along the first axis; an added product gets ``strength`` times that axis, so it
    ranks first (strength > 1) or last (< -1) among the catalogue's products, whose first coordinate is in
    [0, 1). Records what product_vector was given."""
    name = "placed"
    capabilities = frozenset({CUSTOMER_VECTORS, PRODUCT_VECTOR})

    def __init__(self, data: RecData, strength: float):
        rng = np.random.default_rng(1)
        self.data_, self.strength, self.calls = data, strength, []
        self.items = rng.uniform(0, 1, (data.n_products, 3)).astype(np.float32)
        self.customers = np.tile(np.array([[1.0, 0.0, 0.0]], np.float32), (len(data.customer_ids), 1))

    def score_histories(self, histories, customer_ids=None):
        raise AssertionError("the added product is ranked for known customers only")

    def score(self, customer_ids):
        return self.customers[[self.data_.customer_row[c] for c in customer_ids]] @ self.items.T

    def customer_vectors(self):
        return self.customers

    def product_vector(self, image, text, attributes=None, has_image=True, hide_row=None):
        self.calls.append((hide_row, attributes, image, text))
        return np.array([self.strength, 0.0, 0.0], np.float32)


@pytest.mark.parametrize("strength, median", [(10.0, 0.0), (-10.0, 76 - 1)])  # last: below the 75 others
def test_an_added_product_ranks_where_its_vector_puts_it(strength, median):
    data = tiny_data()
    model = Placed(data, strength)
    assert places_products(model)
    assert not places_products(Fixed(data.n_products))
    out = added_product_rank(model, data, CFG)
    assert out["median_rank"] == median and out["share_under"] == (1.0 if median == 0 else 0.0)
    assert out["n_products"] == CFG.n_added and 1 <= out["mean_customers"] <= CFG.max_buyers
    never = set(np.flatnonzero(data.popularity() == 0).tolist())
    for hide_row, attributes, image, text in model.calls:
        assert hide_row in never  # a never-bought product, hidden from its own neighbourhood
        assert attributes == product_attributes(data.products, hide_row)
        assert set(attributes) == {"group_id", "product_type", "colour", "pattern"}
        assert np.array_equal(image, data.image[hide_row]) and np.array_equal(text, data.text[hide_row])


def test_nearest_bought_skips_the_product_and_the_unbought():
    hybrid = np.eye(4, dtype=np.float32)[[0, 0, 1, 0]]  # rows 0, 1, 3 identical
    near = nearest_bought(hybrid, 0, np.array([True, False, True, True]), 2)
    assert near.tolist() == [3, 2]


# ---------------------------------------------------------------- two-tower's reasons

def two_tower_with(vectors: np.ndarray, days_ago: np.ndarray | None = None):
    """A two-tower recommender with given item vectors and, if ``days_ago``, one known customer "u" who
    bought rows 0, 1, ... that many days before the cutoff."""
    from core.recs.two_tower import TwoTowerConfig, TwoTowerRecommender
    model = TwoTowerRecommender(TwoTowerConfig(half_life_days=30.0))
    model.item_vectors_ = np.asarray(vectors, np.float32)
    model.towers_ = SimpleNamespace(query=None)
    days = np.zeros(0, np.float32) if days_ago is None else np.asarray(days_ago, np.float32)
    model.data_ = SimpleNamespace(customer_row={"u": 0}, users=np.zeros(len(days), np.int64),
                                  items=np.arange(len(days)), days_ago=days)
    return model


def test_two_tower_names_the_liked_product_that_contributes_most():
    model = two_tower_with([[1, 0], [0, 1], [0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert model.explain(np.array([0, 1]), np.array([2, 3, 4])).tolist() == [0, 1, 0]
    assert model.explain(np.array([0, 1, 1]), np.array([4])).tolist() == [1]  # liked twice: weighs twice
    assert model.explain(np.array([], np.int64), np.array([2, 3])).tolist() == [NO_REASON, NO_REASON]


def test_two_tower_reasons_for_a_known_customer_weigh_by_recency():
    model = two_tower_with([[1, 0], [0, 1], [0.6, 0.4]], days_ago=[120.0, 0.0])  # row 0 four half-lives ago
    assert model.explain(np.array([0, 1]), np.array([2])).tolist() == [0]  # liked now: equal weights
    assert model.explain(np.array([0, 1]), np.array([2]), customer_id="u").tolist() == [1]


def test_top_k_of_the_fixed_scores_is_the_plain_products():  # the fixture's premise
    data = tiny_data()
    assert set(top_k(Fixed(data.n_products).score_histories([[]]), 12)[0][0]) == set(range(64, 76))
