"""The two-tower model's parts on tiny examples worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from core.two_tower import logq_softmax_loss

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

    from core.two_tower import history_bags
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


def test_two_tower_recovers_simulated_tastes_better_than_popularity(tmp_path):
    """Synthetic customers buy mostly one hidden (pattern, colour); the item tower sees the attributes
    (the content vectors are noise). Measured on the later months, as the evaluation does."""
    import numpy as np

    from core.pipeline import Embeddings
    from core.receval import EvalConfig, SplitConfig, evaluate_model, temporal_split
    from core.recommend import create_recommender, rec_data
    from core.synthetic import make_catalog
    from core.two_tower import TwoTowerConfig, TwoTowerRecommender
    catalog = make_catalog(300, seed=1, image_dir=tmp_path / "photos")
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(len(catalog.products), 16)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    embeddings = Embeddings(catalog.products.index.to_numpy(str), noise, noise.copy(), np.ones(len(noise), dtype=bool))
    cfg = EvalConfig(split=SplitConfig(cutoff="2020-05-01", end="2020-07-01"), n_bootstrap=20)
    split = temporal_split(catalog.purchases, cfg.split.cutoff, cfg.split.end)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, split.cutoff, embeddings)
    model = TwoTowerRecommender(TwoTowerConfig(epochs=20, batch_size=128, random_negatives=64)).fit(data)
    assert model.losses_[-1] < model.losses_[0]
    assert model.item_vectors().shape == (len(catalog.products), 64)
    got = evaluate_model(model, data, split.test, cfg, exclude_bought=True)
    popularity = evaluate_model(create_recommender("popularity").fit(data), data, split.test, cfg, True)
    assert got["recall_at_10"] > popularity["recall_at_10"] + 0.2
    assert got["recall_at_10_cold_items"] > 0.1  # products nobody bought before the cutoff are reached
    # a new customer (no id, so no attributes) from two liked products of one taste gets that taste back:
    # the customer's attributes are hidden for half the training examples, so purchases alone must do
    liked = data.history(data.customer_ids[0])[:2]
    top = model.recommend_histories([liked], 10)[0][0]
    taste = catalog.products.iloc[liked][["pattern", "colour"]].astype(str).agg(" ".join, axis=1)
    shown = catalog.products.iloc[top][["pattern", "colour"]].astype(str).agg(" ".join, axis=1)
    assert shown.isin(set(taste)).mean() >= 0.5
