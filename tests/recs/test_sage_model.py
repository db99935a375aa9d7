"""GraphSAGE model helpers on examples worked out by hand."""
from __future__ import annotations

import torch

from core.recs.sage_model import SageConfig, mean_content, profile_weights, standardiser


def test_standardiser_leaves_constant_columns_unscaled():
    mean, std = standardiser(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    assert mean.tolist() == [2.0, 5.0] and std.tolist() == [1.0, 1.0]  # population std 1; constant column -> 1
    mean, std = standardiser(torch.tensor([[4.0, 6.0]]))  # one row: no spread to measure
    assert mean.tolist() == [4.0, 6.0] and std.tolist() == [1.0, 1.0]


def test_mean_content_averages_each_customers_products():
    content = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    bought = torch.tensor([[0, 1, 2], [0, 0, 1]])  # product -> customer: c0 bought p0 and p1, c1 bought p2
    assert mean_content(content, bought, 3).tolist() == [[2.0, 1.0], [5.0, 4.0], [0.0, 0.0]]
    # weighted: c0's p1 counts three times p0
    weighted = mean_content(content, bought, 3, torch.tensor([1.0, 3.0, 0.5]))
    assert weighted.tolist() == [[2.5, 1.5], [5.0, 4.0], [0.0, 0.0]]


def test_a_purchase_weighs_half_as_much_in_the_profile_every_half_life():
    weights = profile_weights(torch.tensor([0.0, 30.0, 60.0]), SageConfig(profile_half_life=30.0))
    assert torch.allclose(weights, torch.tensor([1.0, 0.5, 0.25]))
    assert profile_weights(torch.tensor([0.0, 30.0]), SageConfig(profile_half_life=0.0)) is None  # all alike
    # counted from each customer's latest purchase: the same profile, and purchases years old do not vanish
    old = profile_weights(torch.tensor([9000.0, 9030.0, 60.0]), SageConfig(profile_half_life=30.0),
                          torch.tensor([0, 0, 1]))
    assert torch.allclose(old, torch.tensor([1.0, 0.5, 1.0]))


def test_inputs_from_features_standardised_once_equal_the_inputs_from_raw_features():
    from core.recs.sage_model import SageModel
    model = SageModel(3, 4, SageConfig(residual=False, content_apart=False))
    x_c, x_p = torch.rand(5, 3) * 10, torch.rand(7, 4) - 3
    model.standardise_with(x_c, x_p)
    z_c, z_p = model.standardise(x_c, x_p)
    assert torch.allclose(z_p, (x_p - x_p.mean(0)) / x_p.std(0, unbiased=False))
    raw, once = model.inputs(x_c, x_p), model.inputs(z_c, z_p, standardised=True)
    assert torch.equal(raw[0], once[0]) and torch.equal(raw[1], once[1])  # the same bits, not just close
    rows_c, rows_p = torch.tensor([4, 0]), torch.tensor([6, 1, 1])  # a sampled step's rows
    sampled = model.standardise(x_c[rows_c], x_p[rows_p])
    assert torch.equal(sampled[0], z_c[rows_c]) and torch.equal(sampled[1], z_p[rows_p])
    assert not torch.equal(model.inputs(z_c, z_p)[1], once[1])  # standardised twice is something else
