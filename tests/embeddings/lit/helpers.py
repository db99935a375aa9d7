"""Drawn photos with known stripes or checks, and helpers shared by the offline-lit tests."""
import numpy as np
from PIL import Image

PHOTO_KINDS = ("hstripes", "vstripes", "checks", "solid", "blank")


def draw_photo(kind: str, colour=(200, 30, 40), size=(160, 240)) -> Image.Image:
    """A garment-like block with known stripes or checks on a white photo (``blank``: white only)."""
    from PIL import ImageDraw
    img = Image.new("RGB", size, (255, 255, 255))
    if kind == "blank":
        return img
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 30, 40, size[0] - 30, size[1] - 30
    draw.rectangle((x0, y0, x1, y1), fill=(250, 250, 250) if kind != "solid" else colour)
    for i, x in enumerate(range(x0, x1, 8)):
        for j, y in enumerate(range(y0, y1, 8)):
            on = {"hstripes": j % 2 == 0, "vstripes": i % 2 == 0, "checks": (i + j) % 2 == 0}.get(kind, False)
            if on:
                draw.rectangle((x, y, x + 7, y + 7), fill=colour)
    return img


def assert_same_outputs(got, want, rel: float = 1e-4) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=0, atol=rel * max(float(np.abs(w).max()), 1e-6))


class CountingTower:
    """A feature runner that counts the photos it is given."""

    def __init__(self, tower):
        self.tower, self.photos = tower, 0
        self.names, self.widths, self.runtime, self.reason = tower.names, tower.widths, tower.runtime, tower.reason

    def __call__(self, x):
        self.photos += len(x)
        return self.tower(x)
