"""GraphSAGE model helpers on examples worked out by hand."""
from __future__ import annotations

import torch

from core.recs.sage_model import mean_content, standardiser


def test_standardiser_leaves_constant_columns_unscaled():
    mean, std = standardiser(torch.tensor([[1.0, 5.0], [3.0, 5.0]]))
    assert mean.tolist() == [2.0, 5.0] and std.tolist() == [1.0, 1.0]  # population std 1; constant column -> 1
    mean, std = standardiser(torch.tensor([[4.0, 6.0]]))  # one row: no spread to measure
    assert mean.tolist() == [4.0, 6.0] and std.tolist() == [1.0, 1.0]


def test_mean_content_averages_each_customers_products():
    content = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0]])
    bought = torch.tensor([[0, 1, 2], [0, 0, 1]])  # product -> customer: c0 bought p0 and p1, c1 bought p2
    assert mean_content(content, bought, 3).tolist() == [[2.0, 1.0], [5.0, 4.0], [0.0, 0.0]]


def test_kept_inputs_are_the_standardised_inputs_until_the_features_or_the_buffers_change():
    from core.recs.sage_model import SageConfig, SageModel
    model = SageModel(3, 4, SageConfig(residual=False))
    x_c, x_p = torch.rand(5, 3), torch.rand(7, 4)
    model.standardise_with(x_c, x_p)
    expected = (x_p - x_p.mean(0)) / x_p.std(0, unbiased=False)
    with model.keeping_inputs():
        first = model.standardised("p", x_p)
        assert torch.allclose(first, expected) and model.standardised("p", x_p) is first  # kept, not recomputed
        assert model.standardised("p", x_p.clone()) is not first  # another tensor, even with equal values
        x_p.add_(1.0)  # the features changed in place
        assert torch.allclose(model.standardised("p", x_p), expected + 1.0 / x_p.std(0, unbiased=False))
        model.std_p.mul_(2.0)  # the buffers changed (as load_state_dict does)
        assert torch.allclose(model.standardised("p", x_p), (expected + 1.0 / x_p.std(0, unbiased=False)) / 2.0)
        h_c, h_p = model.inputs(x_c, x_p)
    assert model.standardised("p", x_p) is not model.standardised("p", x_p)  # outside: nothing is kept
    assert torch.equal(model.inputs(x_c, x_p)[1], h_p) and torch.equal(model.inputs(x_c, x_p)[0], h_c)
