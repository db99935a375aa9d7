"""Views of a photo for offline-lit's image tower: the padded photo, its grayscale, a zoomed centre crop."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from core.embeddings.backbone import WHITE

IMAGE_SIZE = 224
# The canvas keeps the photo's shape: its shorter side is padded only up to a multiple of the tower's total
# stride (32), not to a square. A 2:3 shop photo then costs 160 x 224 pixels instead of 224 x 224: 1.44x the
# photos/s through the tower (H&M, 2 cores), with the garment at the same resolution. Square photos are unchanged.
CANVAS_MULTIPLE = 32
GARMENT_THRESHOLD = 0.9  # input scale [-1, 1]: a pixel is garment where some channel is below ~243/255
CENTRE_FRACTION = 0.5  # side of the centre crop, as a share of the garment's shorter side


def canvas_side(side: int) -> int:
    """A resized photo's side -> the canvas side holding it: rounded up to a multiple of CANVAS_MULTIPLE."""
    return max(CANVAS_MULTIPLE, -(-side // CANVAS_MULTIPLE) * CANVAS_MULTIPLE)


def canvas_of(width: int, height: int) -> tuple[int, int]:
    """A photo's (width, height) -> (width, height) of the canvas :class:`LitImagePreprocess` puts it on."""
    scale = IMAGE_SIZE / max(width, height, 1)
    return canvas_side(max(1, round(width * scale))), canvas_side(max(1, round(height * scale)))


def photo_canvas(path: str) -> tuple[int, int]:
    """The canvas of the photo at ``path``, from its header alone (nothing decoded); (0, 0) when it cannot be read."""
    try:
        with Image.open(path) as img:
            return canvas_of(*img.size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0, 0


class LitImagePreprocess:
    """PIL image -> (3, H, W): longest side to 224 (bicubic), centred on a white canvas whose other side is the
    photo's rounded up to a multiple of 32 (a 2:3 portrait gives (3, 224, 160), a square (3, 224, 224)), scaled
    to [-1, 1] as EfficientNet-Lite's TF training did ((x - 127) / 128)."""
    keeps_shape = True  # the canvas follows the photo's shape (canvas_of); False: always 224 x 224

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        scale = IMAGE_SIZE / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (canvas_side(img.size[0]), canvas_side(img.size[1])), WHITE)  # = canvas_of(w, h)
        canvas.paste(img, ((canvas.size[0] - img.size[0]) // 2, (canvas.size[1] - img.size[1]) // 2))
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
    keeps_shape = False

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
