"""A map with too many points to draw one by one, as an image: each pixel coloured by the group of the points
that fall in it, its opacity by how many fall there (datashader's aggregation, on the server).

A browser draws a Vega-Lite scatter of some tens of thousands of points; a million is minutes or never. The image
is a few hundred kB whatever the number of points, and a box selection is a range query on the coordinates here.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MIN_ALPHA = 70  # the opacity (of 255) of a pixel holding one point: single points stay visible
NONE = -1  # a point in no group (noise): drawn under the groups, in ``none_colour``


def _rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def density_image(x: np.ndarray, y: np.ndarray, groups: np.ndarray, colours: list[str], width: int, height: int,
                  extent: tuple[float, float, float, float] | None = None, none_colour: str = "#c8c8c8"
                  ) -> np.ndarray:
    """(height, width, 4) uint8 RGBA of the points ``(x, y)`` (n,) in ``extent`` (x0, x1, y0, y1; default their
    bounds), row 0 at the top (largest y). A pixel takes the colour ``colours[g]`` of the largest group id ``g``
    among its points (``groups`` (n,) int, :data:`NONE` for none), so any group shows over noise, and an opacity
    from :data:`MIN_ALPHA` (one point) to 255 (the densest pixel) on a log scale of its count (255 everywhere when no
    pixel holds more than one); empty pixels are transparent."""
    import datashader as ds
    x0, x1, y0, y1 = extent if extent is not None else (float(np.min(x)), float(np.max(x)),
                                                          float(np.min(y)), float(np.max(y)))
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    frame = pd.DataFrame({"x": np.asarray(x, np.float32), "y": np.asarray(y, np.float32),
                          "group": np.asarray(groups, np.int32)})
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=(x0, x1), y_range=(y0, y1))
    agg = canvas.points(frame, "x", "y", ds.summary(count=ds.count(), group=ds.max("group")))
    count = agg["count"].to_numpy()[::-1]  # datashader's row 0 is the smallest y
    group = np.nan_to_num(agg["group"].to_numpy()[::-1], nan=NONE).astype(np.int64)
    palette = np.array([_rgb(c) for c in colours] + [_rgb(none_colour)], np.uint8)  # NONE indexes the last
    image = np.zeros((height, width, 4), np.uint8)
    image[..., :3] = palette[np.where(group >= 0, group, len(colours))]
    filled = count > 0
    if filled.any():
        densest = count.max()
        level = np.log(count[filled]) / np.log(densest) if densest > 1 else np.ones(int(filled.sum()))
        image[..., 3][filled] = (MIN_ALPHA + (255 - MIN_ALPHA) * level).astype(np.uint8)
    return image


def png_data_uri(image: np.ndarray) -> str:
    """``image`` (h, w, 4) uint8 RGBA as a ``data:image/png;base64,...`` URI: what a chart's image mark loads
    without a request to a server."""
    import base64
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image, "RGBA").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
