"""The Texture failures page's confusion heatmaps, headless: whole percents in type large enough to read."""
from __future__ import annotations

import base64

import numpy as np
import plotly.io
import pytest

from tests.app import test_pages
from tests.app.test_pages import texture_page, with_report

app_env, texture_env = test_pages.app_env, test_pages.texture_env  # a 500-product synthetic catalogue
pytestmark = pytest.mark.app


def array(value) -> np.ndarray:
    """A plotly array as sent to the browser: a list, or a typed array (dtype, base64 bytes, shape)."""
    if isinstance(value, dict):
        shape = [int(n) for n in str(value.get("shape", "-1")).split(",")]
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).reshape(shape).astype(float)
    return np.asarray(value, dtype=float)


def test_heatmap_cells_are_whole_percents_in_legible_type(texture_env):
    at = with_report(texture_page())
    (chart,) = [c for c in at.get("plotly_chart") if c.key == "texture_confusion"]
    (trace,) = plotly.io.from_json(chart.proto.spec).data
    assert trace.textfont.size >= 13 and trace.texttemplate == "%{text}"
    z, text = array(trace.z), np.asarray(trace.text)
    assert z.shape == text.shape and len(z) >= 2
    assert np.allclose(z.sum(axis=1), 100, atol=0.5)  # each row: a product's label, in percent
    # "42", never "0.42"; nothing under 1 %
    assert all(t == (f"{v:.0f}" if v >= 0.5 else "") for v, t in zip(z.ravel(), text.ravel()))
