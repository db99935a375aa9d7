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
