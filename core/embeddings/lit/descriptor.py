"""The texture descriptor of a photo: garment-masked mean and Gram matrix of EfficientNet-Lite0 block maps."""
from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch

from core.embeddings.lit.towers import IMAGE_TOWER_CFG, TEXTURE_BLOCKS, FeatureTower, image_tower
from core.embeddings.lit.views import GARMENT_THRESHOLD, IMAGE_SIZE

DESCRIPTOR_VERSION = 1  # bump when the texture descriptor changes meaning, so stored rows are recomputed


def feature_names(blocks: Sequence[int] = TEXTURE_BLOCKS) -> list[str]:
    """:class:`FeatureTower`'s outputs by name: ``pooled``, then ``mean<b>`` and ``gram<b>`` per block b."""
    return ["pooled", *(f"{kind}{b}" for b in blocks for kind in ("mean", "gram"))]


def texture_descriptor(descriptors: dict[str, np.ndarray], blocks: Sequence[int] = TEXTURE_BLOCKS) -> np.ndarray:
    """{``mean<b>``: (n, c), ``gram<b>``: (n, c (c+1)/2)} -> (n, D) float32: mean then Gram per block."""
    return np.concatenate([descriptors[f"{kind}{b}"] for b in blocks for kind in ("mean", "gram")],
                          axis=1).astype(np.float32, copy=False)


@functools.cache
def descriptor_dim(blocks: tuple[int, ...] = TEXTURE_BLOCKS) -> int:
    """D, the width of :func:`texture_descriptor` (from one small forward pass of the torch tower)."""
    with torch.inference_mode():
        out = FeatureTower(image_tower(), blocks)(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return sum(int(o.shape[1]) for o in out[1:])


def texture_cfg(blocks: Sequence[int] = TEXTURE_BLOCKS) -> dict:
    """What identifies stored texture descriptors: the tower, the blocks and the descriptor's definition."""
    return {**IMAGE_TOWER_CFG, "blocks": list(blocks), "garment_threshold": GARMENT_THRESHOLD,
            "descriptor": "garment-masked mean and Gram upper triangle", "descriptor_version": DESCRIPTOR_VERSION}
