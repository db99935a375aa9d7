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
