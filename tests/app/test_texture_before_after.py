"""The Texture failures page's Before / after section, headless: it opens on the product the texture-aware
embedding helps most, sorts by gain either way, and lists the products that got worse as such."""
from __future__ import annotations

import re

import pytest

from tests.app import test_pages
from tests.app.test_pages import TEXTURE, captions, run_page, wait_for_build

app_env, texture_env = test_pages.app_env, test_pages.texture_env  # a 500-product synthetic catalogue
pytestmark = pytest.mark.app


def gain_of(option: str) -> int:
    """The gain a product's label in the picker states: "+3 (2 → 5 of 8)", "got worse: −2 (5 → 3 of 8)",
    "unchanged (4 of 8)"."""
    if re.search(r"· unchanged \(\d+ of \d+\)", option):
        return 0
    before, after = map(int, re.search(r"\((\d+) → (\d+) of \d+\)", option).groups())
    assert ("got worse" in option) == (after < before), option
    return after - before


def before_after_page(**state):
    return wait_for_build(run_page(TEXTURE, texture_section="Before / after", **state), timeout=300)


def test_before_after_opens_on_the_largest_gain(texture_env):
    at = before_after_page()
    picker = at.selectbox(key="texture_product")
    gains = [gain_of(o) for o in picker.options]
    assert gains == sorted(gains, reverse=True) and gains[0] > 0
    assert picker.index == 0  # the product with the largest gain is the one shown
    first = picker.options[0]
    before, after = re.search(r"\((\d+) → (\d+) of 8\)", first).groups()
    assert any(f"**{before} of 8** before (photo) → **{after} of 8** after" in m.value for m in at.markdown)
    summary = next(m.value for m in at.markdown if m.value.startswith("Of the **8** nearest"))
    assert f"**{sum(g < 0 for g in gains):,}** fewer (got worse)" in summary


def test_before_after_sorts_by_loss_and_labels_those_that_got_worse(texture_env):
    at = before_after_page()
    at.radio(key="texture_order").set_value("worse").run()
    picker = at.selectbox(key="texture_product")
    gains = [gain_of(o) for o in picker.options]
    assert gains == sorted(gains) and gains[0] < 0 and picker.index == 0  # opens on the largest loss
    assert "got worse" in picker.options[0]
    worse = sum(g < 0 for g in gains)
    (expander,) = [e for e in at.expander if e.label.startswith("Got worse")]
    assert expander.label.startswith(f"Got worse: {worse:,} products")
    labelled = [c for c in captions(at) if ":red[got worse: −" in c]
    assert len(labelled) == min(worse, 12)
    assert [gain_of(c.replace(":red[", "· ").rstrip("]")) for c in labelled] == gains[:len(labelled)]

    at.radio(key="texture_order").set_value("gain").run()  # back: opens on the largest gain again
    picker = at.selectbox(key="texture_product")
    assert gain_of(picker.options[0]) == max(gains) and picker.index == 0


def test_before_after_gains_follow_the_number_of_neighbours(texture_env):
    at = before_after_page()
    at.slider(key="texture_k").set_value(12).run()
    options = at.selectbox(key="texture_product").options
    assert all(re.search(r"of 12\)", o) for o in options)
    assert len(test_pages.product_captions(at)[1:13]) == 12
