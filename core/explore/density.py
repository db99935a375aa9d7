"""A map with too many points to draw one by one, as an image: each pixel in the colour of the commonest group among
its points, more opaque where more points fall (aggregated on the server, sent as one PNG).

A browser draws a Vega-Lite scatter of some tens of thousands of points; a million is minutes or never. The image
is a few hundred kB whatever the number of points, and a box selection is a range query on the coordinates.

Plain NumPy rather than datashader: the pixel's commonest group is what the map needs, and datashader's per-group
count (``count_cat``) holds a width x height x groups array (540 MB for 250 clusters on 900 x 600 pixels; 2.5 s for a
million points, measured), where a sort of the points' (pixel, group) keys takes 0.1 s for a million points.
"""
from __future__ import annotations

import numpy as np

MIN_ALPHA = 70  # the opacity (of 255) of a pixel holding one point: single points stay visible
NONE = -1  # a point in no group (noise): a pixel is drawn in ``none_colour`` only when it holds nothing else


def map_extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1): the points' bounds, each widened to at least 1 where all points share a coordinate."""
    bounds = []
    for v in (x, y):
        lo, hi = float(np.min(v)), float(np.max(v))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bounds += [lo, hi]
    return tuple(bounds)


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def density_image(x: np.ndarray, y: np.ndarray, groups: np.ndarray, colours: list[str], width: int, height: int,
                  extent: tuple[float, float, float, float] | None = None, none_colour: str = "#c8c8c8"
                  ) -> np.ndarray:
    """(height, width, 4) uint8 RGBA of the points ``(x, y)`` (n,) over ``extent`` (x0, x1, y0, y1; default
    :func:`map_extent`), row 0 at the top (largest y); points outside it are left out. A pixel takes the colour
    ``colours[g]`` of the commonest group ``g`` among its points (``groups`` (n,) int, :data:`NONE` for none; ties:
    the smaller id), in ``none_colour`` only when it holds no grouped point, and an opacity from :data:`MIN_ALPHA`
    (one point) to 255 (the pixel holding most points, grouped or not) on a log scale of its count (255 everywhere
    when no pixel holds more than one). Empty pixels are transparent."""
    x0, x1, y0, y1 = extent if extent is not None else map_extent(x, y)
    x, y, groups = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(groups, np.int64)
    col = np.floor((x - x0) / (x1 - x0) * width).astype(np.int64)
    row = np.floor((y1 - y) / (y1 - y0) * height).astype(np.int64)  # the top row holds the largest y
    col[x == x1], row[y == y0] = width - 1, height - 1  # the far edges belong to the last pixel
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    pixel, group = row[inside] * width + col[inside], groups[inside]
    count = np.bincount(pixel, minlength=width * height)
    image = np.zeros((height * width, 4), np.uint8)
    if not len(pixel):
        return image.reshape(height, width, 4)
    # the commonest group of each pixel: count each (pixel, group) pair, noise below any group
    keys, n = np.unique(pixel * (len(colours) + 1) + (group + 1), return_counts=True)  # group + 1: NONE -> 0
    key_pixel, key_group = keys // (len(colours) + 1), keys % (len(colours) + 1) - 1
    rank = np.where(key_group == NONE, 0, n)  # grouped points outvote noise however few
    order = np.lexsort((-key_group, rank, key_pixel))  # by pixel, then rank, then smaller id last
    last = np.r_[key_pixel[order][1:] != key_pixel[order][:-1], True]  # each pixel's last key: its winner
    winner_pixel, winner_group = key_pixel[order][last], key_group[order][last]
    palette = np.array([_rgb(c) for c in colours] + [_rgb(none_colour)], np.uint8)  # NONE indexes the last
    image[winner_pixel, :3] = palette[np.where(winner_group >= 0, winner_group, len(colours))]
    filled = count > 0
    densest = count.max()
    level = np.log(count[filled]) / np.log(densest) if densest > 1 else np.ones(int(filled.sum()))
    image[filled, 3] = (MIN_ALPHA + (255 - MIN_ALPHA) * level).astype(np.uint8)
    return image.reshape(height, width, 4)


def png_data_uri(image: np.ndarray) -> str:
    """``image`` (h, w, 4) uint8 RGBA as a ``data:image/png;base64,...`` URI: what a chart's image mark loads
    without a request to a server."""
    import base64
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image, "RGBA").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
