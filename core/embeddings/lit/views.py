"""Views of a photo for offline-lit's image tower: the padded photo, its grayscale, a zoomed centre crop."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from core.embeddings.backbone import WHITE

IMAGE_SIZE = 224
GARMENT_THRESHOLD = 0.9  # input scale [-1, 1]: a pixel is garment where some channel is below ~243/255
CENTRE_FRACTION = 0.5  # side of the centre crop, as a share of the garment's shorter side


class LitImagePreprocess:
    """PIL image -> (3, 224, 224): longest side to 224 (bicubic), padded onto white, scaled to [-1, 1]
    as EfficientNet-Lite's TF training did ((x - 127) / 128)."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        scale = IMAGE_SIZE / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), WHITE)
        canvas.paste(img, ((IMAGE_SIZE - img.size[0]) // 2, (IMAGE_SIZE - img.size[1]) // 2))
        # In numpy, not torch: the same float32 values, but torch's threaded kernels on one small photo took
        # 4.7 ms against numpy's 0.5 ms while the model ran on the same 2 cores (a third of a photo's CPU time).
        x = (np.asarray(canvas, dtype=np.float32) - np.float32(127.0)) / np.float32(128.0)
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


class GrayPreprocess(LitImagePreprocess):
    """The photo in grayscale (as three equal channels), so the texture descriptor cannot lean on colour."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return super().__call__(ImageOps.grayscale(img).convert("RGB"))


class CentrePreprocess(LitImagePreprocess):
    """A zoomed crop of the garment's centre: a square of CENTRE_FRACTION of the shorter side of the
    garment's bounding box (its non-white pixels), resized to 224 x 224, so fine patterns span more of the
    stride-8 grid. The whole photo when it has no garment pixels."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        pixels = np.asarray(img)
        ys, xs = np.nonzero(pixels.min(axis=2) < (GARMENT_THRESHOLD * 128 + 127))
        if len(xs):
            cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
            half = max(8.0, CENTRE_FRACTION * min(xs.max() - xs.min(), ys.max() - ys.min()) / 2)
            img = img.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        return super().__call__(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))


# Views of a photo the texture descriptor can be taken from; each view but "photo" is one more pass.
TEXTURE_VIEWS: dict[str, Callable[[], LitImagePreprocess]] = {
    "photo": LitImagePreprocess, "gray": GrayPreprocess, "centre": CentrePreprocess}


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    unknown = [v for v in views if v not in TEXTURE_VIEWS]
    if unknown or not views:
        raise ValueError(f"unknown texture view(s) {unknown or '(none given)'}; use some of {list(TEXTURE_VIEWS)}")
    return tuple(views)
