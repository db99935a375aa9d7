"""The two-tower model's parts on tiny examples worked out by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from core.recs.two_tower import logq_softmax_loss

# Two customers, two bought products, in 2-d; a third product as a random negative.
USER = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
ITEM = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
NEG = torch.tensor([[0.0, -1.0]])


def ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


def test_in_batch_loss_with_the_log_q_correction_by_hand():
    log_q = torch.log(torch.tensor([0.5, 0.1]))  # product 0 is bought five times as often
    got = logq_softmax_loss(USER, ITEM, log_q, temperature=0.5)
    # customer 0: <u0, i0> = 1, <u0, i1> = 0.6; customer 1: <u1, i0> = 0, <u1, i1> = 0.8; each / 0.5 - log q
    lq0, lq1 = math.log(0.5), math.log(0.1)
    want = (ce([1 / 0.5 - lq0, 0.6 / 0.5 - lq1], 0) + ce([0 / 0.5 - lq0, 0.8 / 0.5 - lq1], 1)) / 2
    assert got.item() == pytest.approx(want, abs=1e-6)
    # without the correction (equal q) the popular product is penalised more as customer 1's negative
    plain = logq_softmax_loss(USER, ITEM, torch.log(torch.tensor([0.5, 0.5])), temperature=0.5)
    want_plain = (ce([2.0, 1.2], 0) + ce([0.0, 1.6], 1)) / 2
    assert plain.item() == pytest.approx(want_plain, abs=1e-6)
    assert got.item() != pytest.approx(plain.item(), abs=1e-3)


def test_random_negatives_join_every_row_with_their_own_correction():
    log_q = torch.log(torch.tensor([0.5, 0.1]))
    neg_q = torch.log(torch.tensor([1 / 1000]))  # uniform over a 1,000-product catalogue
    got = logq_softmax_loss(USER, ITEM, log_q, 0.5, NEG, neg_q)
    lq0, lq1, ln = math.log(0.5), math.log(0.1), math.log(1 / 1000)
    want = (ce([2 - lq0, 1.2 - lq1, 0 - ln], 0) + ce([0 - lq0, 1.6 - lq1, -2 - ln], 1)) / 2
    assert got.item() == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match="negatives_log_q"):
        logq_softmax_loss(USER, ITEM, log_q, 0.5, NEG)


def test_accidental_hits_leave_the_softmax_and_gradients_flow():
    # both customers bought product 7: each row's other column is its own product again, not a negative
    user, item = USER.clone().requires_grad_(True), ITEM.clone().requires_grad_(True)
    log_q = torch.zeros(2)
    got = logq_softmax_loss(user, item, log_q, 1.0, item_ids=torch.tensor([7, 7]))
    assert got.item() == pytest.approx(0.0, abs=1e-6)  # one candidate left per row: probability 1
    unmasked = logq_softmax_loss(USER, ITEM, log_q, 1.0)
    assert unmasked.item() > 0.1
    mixed = logq_softmax_loss(user, item, log_q, 1.0, NEG, torch.zeros(1), torch.tensor([7, 7]),
                              torch.tensor([3]))
    mixed.backward()
    assert user.grad is not None and torch.isfinite(user.grad).all() and user.grad.abs().sum() > 0


def test_history_bags_hold_only_earlier_days_and_the_latest_few():
    import numpy as np

    from core.recs.two_tower import history_bags
    users = np.array([0, 1, 0, 0, 1])
    items = np.array([10, 20, 11, 12, 21])
    days = np.array([30.0, 25.0, 20.0, 20.0, 5.0])  # days before the cutoff; rows 2 and 3 the same day
    flat, age, starts, lengths = history_bags(users, items, days, max_history=50)
    assert lengths.tolist() == [0, 0, 1, 1, 1]
    bags = [flat[s:s + n].tolist() for s, n in zip(starts, lengths)]
    assert bags == [[], [], [10], [10], [20]]  # item 11 is not in item 12's bag: bought the same day
    assert age.tolist() == [10.0, 10.0, 20.0]
    _, _, _, none = history_bags(users, items, days, max_history=0)
    assert none.tolist() == [0] * 5


def test_bag_positions_concatenate_the_chosen_bags_in_order():
    from core.recs.two_tower import bag_positions
    flat = torch.tensor([7, 8, 9, 5, 6, 4])  # bags: [7, 8, 9], [], [5, 6], [4]
    starts, lengths = torch.tensor([0, 3, 3, 5]), torch.tensor([3, 0, 2, 1])
    for rows in ([2, 0, 3], [1, 1], [3, 2, 1, 0], []):
        rows = torch.tensor(rows, dtype=torch.long)
        expected = [x for r in rows.tolist() for x in flat[starts[r]:starts[r] + lengths[r]].tolist()]
        assert flat[bag_positions(starts[rows], lengths[rows])].tolist() == expected


@pytest.fixture(scope="module")
def tastes(tmp_path_factory):
    """Synthetic customers who buy mostly one hidden (pattern, colour); the content vectors are noise, so
    only the attributes tell products apart. A two-tower model fitted before the cutoff: (catalog, data,
    split, model)."""
    import numpy as np

    from core.embeddings.pipeline import Embeddings
    from core.recs.split import temporal_split
    from core.recs.contract import rec_data
    from core.data.synthetic import make_catalog
    from core.recs.two_tower import TwoTowerConfig, TwoTowerRecommender
    catalog = make_catalog(300, seed=1, image_dir=tmp_path_factory.mktemp("photos"))
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(catalog.products), 16)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    embeddings = Embeddings(catalog.products.index.to_numpy(str), noise, noise.copy(), np.ones(len(noise), dtype=bool))
    split = temporal_split(catalog.purchases, "2020-05-01", "2020-07-01")
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings)
    model = TwoTowerRecommender(TwoTowerConfig(epochs=20, batch_size=128, random_negatives=64)).fit(data)
    return catalog, data, split, model


def taste_of(products, rows) -> "pd.Series":
    return products.iloc[rows][["pattern", "colour"]].astype(str).agg(" ".join, axis=1)


def test_two_tower_recovers_simulated_tastes_better_than_popularity(tastes):
    """Measured on the later months, as the evaluation does."""
    from core.recs.evaluate import EvalConfig, evaluate_model
    from core.recs.split import SplitConfig
    from core.recs.registry import create_recommender
    catalog, data, split, model = tastes
    cfg = EvalConfig(split=SplitConfig(cutoff="2020-05-01", end="2020-07-01"), n_bootstrap=20)
    assert model.losses_[-1] < model.losses_[0]
    assert model.item_vectors().shape == (len(catalog.products), 16)  # residual towers: the content width
    got = evaluate_model(model, data, split.test, cfg, exclude_bought=True)
    popularity = evaluate_model(create_recommender("popularity").fit(data), data, split.test, cfg, True)
    assert got["recall_at_10"] > popularity["recall_at_10"] + 0.2
    assert got["recall_at_10_cold_items"] > 0.1  # products nobody bought before the cutoff are reached
    # a new customer (no id, so no attributes) from two liked products of one taste gets that taste back:
    # the customer's attributes are hidden for half the training examples, so purchases alone must do
    liked = data.history(data.customer_ids[0])[:2]
    top = model.recommend_histories([liked], 10)[0][0]
    assert taste_of(catalog.products, top).isin(set(taste_of(catalog.products, liked))).mean() >= 0.5


def test_the_faiss_lists_are_the_exact_ranking(tastes):
    import numpy as np

    from core.recs.contract import top_k
    _, data, _, model = tastes
    customers = data.customer_ids[:20].tolist()
    exclude = [data.history(c) for c in customers]
    rows, scores = model.recommend(customers, 10, exclude)
    want_rows, want_scores = top_k(model.score(customers), 10, exclude)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    assert (rows == want_rows).mean() > 0.95  # ties may come out in another order
    assert not any(np.isin(r, e).any() for r, e in zip(rows, exclude))


def test_a_product_added_without_retraining_reaches_the_customers_of_its_taste(tastes):
    import copy

    import numpy as np
    catalog, data, _, fitted = tastes
    model = copy.deepcopy(fitted)  # the fixture's model stays as trained
    products, customer = catalog.products, data.customer_ids[0]
    history = data.history(customer)
    taste = taste_of(products, history).value_counts().index[0]
    pattern, colour = taste.split(" ", 1)
    like = products.iloc[history[-1]]
    attributes = {c: str(like[c]) for c in model.spec_.product_vocab} | {"pattern": pattern, "colour": colour}
    vector = np.random.default_rng(5).normal(size=16).astype(np.float32)  # content says nothing: noise
    vector /= np.linalg.norm(vector)
    before = model.towers_.state_dict()["item.0.weight"].clone()
    row = model.add_product("NEW-1", vector, vector, attributes)
    assert row == len(products) and len(model.index_) == len(products) + 1
    assert model.towers_.state_dict()["item.0.weight"].equal(before)  # no training
    # across customers: those whose main taste it is rank it far above the others
    ids = data.customer_ids[[len(data.history(c)) > 0 for c in data.customer_ids]]
    scores = model.score(list(ids))
    ranks = (scores > scores[:, [row]]).sum(axis=1)
    theirs = np.array([taste_of(products, data.history(c)).value_counts().index[0] == taste for c in ids])
    assert theirs.sum() >= 3
    assert np.median(ranks[theirs]) < 20  # of 301 products
    assert np.median(ranks[~theirs]) > 5 * np.median(ranks[theirs])
    best = ids[theirs][np.argmin(ranks[theirs])]
    assert row in model.recommend([best], 10)[0][0]  # straight from the FAISS index
    with pytest.raises(ValueError, match="already in the index"):
        model.add_product("NEW-1", vector, vector, attributes)


def test_session_mode_reads_a_description_as_a_liked_product(tmp_path):
    """Here the sentence vectors carry the taste (pattern and colour directions plus noise), as a real
    backbone's do: a typed description's vector is the only signal of an anonymous customer, and the
    products of the taste it names come first."""
    import numpy as np

    from core.embeddings.pipeline import Embeddings
    from core.recs.contract import rec_data
    from core.data.synthetic import make_catalog
    from core.recs.two_tower import TwoTowerConfig, TwoTowerRecommender
    catalog = make_catalog(300, seed=1, image_dir=tmp_path / "photos")
    products = catalog.products
    rng = np.random.default_rng(0)
    patterns, colours = sorted(products["pattern"].unique()), sorted(products["colour"].unique())
    width = len(patterns) + len(colours) + 8

    def sentence(pattern: str, colour: str, noise: float) -> np.ndarray:
        v = np.zeros(width, np.float32)
        v[patterns.index(pattern)] = v[len(patterns) + colours.index(colour)] = 1.0
        v += noise * rng.normal(size=width).astype(np.float32)
        return v / np.linalg.norm(v)
    text = np.stack([sentence(p, c, 0.3) for p, c in zip(products["pattern"], products["colour"])])
    embeddings = Embeddings(products.index.to_numpy(str), text, text.copy(), np.ones(len(text), dtype=bool))
    data = rec_data(products, catalog.customers, catalog.purchases, "2020-05-01", embeddings)
    model = TwoTowerRecommender(TwoTowerConfig(epochs=10, batch_size=128, random_negatives=64)).fit(data)
    every = taste_of(products, np.arange(len(products)))
    for pattern, colour in (("stripe", "navy"), ("check", "black"), ("solid", "yellow")):
        rows, _ = model.search(model.session_vector(text=sentence(pattern, colour, 0.0))[None], 10)
        assert (every.iloc[rows[0]] == f"{pattern} {colour}").mean() >= 0.6, (pattern, colour)
    photo = model.session_vector(image=text[57])  # a photo alone stands in for the sentence too
    assert photo.shape == (width,) and np.isclose(np.linalg.norm(photo), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="photo or a sentence"):
        model.session_vector()


def test_commonest_breaks_ties_as_pandas_mode():
    import numpy as np

    from core.recs.two_tower import commonest
    for values in (["b", "a", "b", "a", "c"], ["z"], ["x", "y", "y"], ["2", "10", "10", "2"]):
        assert commonest(np.array(values, dtype=object)) == pd.Series(values).mode().iloc[0]


def test_a_new_customer_is_encoded_as_an_unknown_id_with_every_attribute_missing(tastes):
    """New customers skip the attribute lookup (all of theirs are missing): the same vector as an id the
    model has never seen, which goes through it."""
    import numpy as np
    model = tastes[3]
    history = [np.array([0, 3, 5]), np.zeros(0, np.int64)]
    ages = [np.zeros(3, np.float32), np.zeros(0, np.float32)]
    fast = model.encode_customers(history, ages)
    slow = model.encode_customers(history, ages, ["nobody-known", "nobody-either"])
    np.testing.assert_allclose(fast, slow, atol=1e-6)


def test_the_trained_towers_are_a_cache_artefact(tastes, tmp_path):
    import numpy as np

    from core.cache import ArtefactCache
    from core.recs.registry import fitted
    _, data, _, _ = tastes
    cache = ArtefactCache(tmp_path / "cache")
    first = fitted("two_tower", data, cache)
    second = fitted("two_tower", data, cache)  # loaded, not trained
    assert [e.kind for e in cache.entries()] == ["recommender-two_tower"]
    np.testing.assert_allclose(second.item_vectors(), first.item_vectors(), atol=1e-6)
    np.testing.assert_allclose(second.customer_vectors(), first.customer_vectors(), atol=1e-6)
    assert second.train_s_ == first.train_s_ and second.losses_ == first.losses_


def test_the_evaluation_ranks_through_the_faiss_index_as_through_every_score(tastes):
    """Alone, and with its customers without a history served by segment popularity, as the evaluation serves
    them when the model's own lists for them lose to it on the validation window."""
    from core.recs.newcustomer import NewCustomerFallback
    from core.recs.registry import create_recommender
    from tests.recs.test_evaluate import assert_index_ranks_as_scores
    _, data, split, model = tastes
    assert_index_ranks_as_scores(model, data, split.test)
    new = [c for c in split.test["customer_id"].unique() if not len(data.history(c))]
    assert new  # so the fallback serves some of them
    served = NewCustomerFallback(model, create_recommender("segment_popularity").fit(data))
    assert_index_ranks_as_scores(served, data, split.test)
    with pytest.raises(ValueError, match="segment_popularity"):
        served.query_vectors(new[:1])
