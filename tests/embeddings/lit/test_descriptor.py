"""The texture descriptor's layout, by hand."""
from __future__ import annotations

import numpy as np

from core.embeddings.lit.descriptor import DESCRIPTOR_VERSION, feature_names, texture_cfg, texture_descriptor


def test_feature_names_and_the_descriptor_are_mean_then_gram_per_block():
    assert feature_names() == ["pooled", "mean4", "gram4"]
    assert feature_names((2, 4)) == ["pooled", "mean2", "gram2", "mean4", "gram4"]
    descriptors = {"mean2": np.array([[1.0], [10.0]]), "gram2": np.array([[2.0], [20.0]]),
                   "mean4": np.array([[3.0, 4.0], [30.0, 40.0]]),
                   "gram4": np.array([[5.0, 6.0, 7.0], [50.0, 60.0, 70.0]])}
    got = texture_descriptor(descriptors, (2, 4))
    assert got.dtype == np.float32
    assert got.tolist() == [[1, 2, 3, 4, 5, 6, 7], [10, 20, 30, 40, 50, 60, 70]]
    assert texture_descriptor(descriptors, (4,)).tolist() == [[3, 4, 5, 6, 7], [30, 40, 50, 60, 70]]
    cfg = texture_cfg((2, 4))
    assert cfg["blocks"] == [2, 4] and cfg["descriptor_version"] == DESCRIPTOR_VERSION
    assert texture_cfg() != cfg  # other blocks: other stored rows
