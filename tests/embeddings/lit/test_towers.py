"""The texture tower's garment mask and moments, by hand (no weights needed)."""
from __future__ import annotations

import torch

from core.embeddings.lit.towers import garment_weights, masked_moments


def test_garment_weights_are_the_share_of_garment_pixels_per_cell():
    x = torch.ones(1, 3, 2, 4)  # white: background
    x[0, 1, 0, 0] = 0.0  # one channel well below the threshold: garment
    x[0, :, :, 2:] = -1.0  # the right cell: all garment
    assert garment_weights(x, 2).tolist() == [[[[0.25, 1.0]]]]


def test_masked_moments_by_hand():
    maps = torch.tensor([[[[1.0, 3.0, 100.0]], [[2.0, 4.0, 100.0]]]])  # (1, 2, 1, 3)
    weights = torch.tensor([[[[1.0, 1.0, 0.0]]]])  # the third position is background
    mean, gram = masked_moments(maps, weights)
    assert mean.tolist() == [[2.0, 3.0]]
    # Gram upper triangle (00, 01, 11): (1*1 + 3*3) / 2, (1*2 + 3*4) / 2, (2*2 + 4*4) / 2
    assert gram.tolist() == [[5.0, 7.0, 10.0]]
    mean, gram = masked_moments(maps, torch.zeros_like(weights))  # no garment at all: zeros
    assert mean.tolist() == [[0.0, 0.0]] and gram.tolist() == [[0.0, 0.0, 0.0]]
