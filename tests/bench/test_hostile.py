"""The hostile-client benchmark's parts: the grey photo, the memory of a process during an attack."""
from __future__ import annotations

import io
import os
import time

import numpy as np
from PIL import Image

from core.bench.hostile import grey_png, memory_during


def test_grey_png_is_a_flat_square():
    img = Image.open(io.BytesIO(grey_png(5)))
    assert (img.format, img.size, img.mode) == ("PNG", (5, 5), "RGB")
    assert set(img.getdata()) == {(128, 128, 128)}  # flat grey, every band
    grey = Image.open(io.BytesIO(grey_png(3, "L")))
    assert (grey.mode, set(grey.getdata())) == ("L", {128})


def test_memory_during_sees_the_peak_of_an_attack():
    def attack():
        block = np.ones(16 * 2 ** 20 // 8 * 8)  # 128 MB, every page touched
        time.sleep(0.2)
        return float(block[-1])

    result, memory = memory_during(os.getpid(), attack)
    assert result == 1.0
    assert memory["peak_growth_mb"] >= 100 and memory["rss_peak_mb"] >= memory["rss_before_mb"] + 100
    assert set(memory) == {"rss_before_mb", "rss_peak_mb", "rss_after_mb", "peak_growth_mb", "peak_from"}
