"""Paired comparisons (core.recs.paired): bootstrap differences of hand-made arrays and the verdicts they give."""
from __future__ import annotations

import numpy as np
import pytest

from core.recs.paired import (PairedDifference, PairedReport, paired_difference, paired_keys, paired_report,
                              slice_names, verdict)


def test_paired_difference_of_hand_made_arrays():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 200)
    shift = paired_difference(a + 0.25, a, n_bootstrap=300)
    assert shift.diff == pytest.approx(0.25) and shift.n == 200
    assert shift.low == pytest.approx(0.25) and shift.high == pytest.approx(0.25)  # a zero-width interval
    assert shift.better and not shift.worse
    same = paired_difference(a, a.copy(), n_bootstrap=300)
    assert (same.diff, same.low, same.high) == (0.0, 0.0, 0.0) and not same.better and not same.worse
    noise = paired_difference(a, a[::-1].copy(), n_bootstrap=300)  # the same values in another order
    assert noise.low < 0 < noise.high and noise.diff == pytest.approx(0.0, abs=1e-12)
    # customers outside a slice (NaN) are dropped from both sides
    sliced = paired_difference(np.array([1.0, np.nan, 0.5]), np.array([0.0, 0.0, 0.5]), n_bootstrap=50)
    assert (sliced.diff, sliced.n) == (pytest.approx(0.5), 2)
    assert paired_difference(np.array([np.nan]), np.array([np.nan])) == PairedDifference(None, None, None, 0)
    with pytest.raises(ValueError):
        paired_difference(np.zeros(3), np.zeros(4))
    assert PairedDifference.from_dict(shift.to_dict()) == shift


def _alternating(q: int, size: float) -> np.ndarray:
    return np.where(np.arange(q) % 2 == 0, size, -size)


def test_verdicts_read_the_paired_intervals():
    q = 40
    flat = lambda x: np.full(q, x)  # noqa: E731
    keys = paired_keys()  # overall, new, sparse, warm customers, cold items
    pop = dict.fromkeys(keys, flat(0.5))
    m = dict(zip(keys, (flat(0.7), 0.5 + _alternating(q, 0.1), 0.5 + _alternating(q, 0.1), flat(0.6), flat(0.8))))
    seg = dict(zip(keys, (flat(0.6), m[keys[1]] + 0.2, 0.5 - _alternating(q, 0.1), 0.6 + _alternating(q, 0.1),
                          flat(0.5))))
    report = paired_report({"m": m, "pop": pop, "seg": seg}, ["pop", "seg"], "seg", n_bootstrap=300)
    assert set(report.models) == {"m", "pop"} and set(report.against["m"]) == {"pop", "seg"}
    assert set(report.against["seg"]) == {"pop"}
    assert report.models["m"]["recall_at_10"].diff == pytest.approx(0.1)
    assert report.models["m"]["recall_at_10_new_customers"].diff == pytest.approx(-0.2)
    result = PairedReport.from_dict(report.to_dict())  # as stored
    assert verdict(result, "m") == ("better than every baseline overall and on new products; "
                                    "worse than seg for new customers; "
                                    "no clear difference from any baseline for sparse customers; "
                                    "no clear difference from seg but better than the other one for warm customers")
    # seg against pop alone: 0.1 better overall and on the sparse slice's no-clear mean 0; level on cold items
    assert verdict(result, "seg").startswith("better than every baseline overall")
    assert "no clear difference from any baseline on new products" in verdict(result, "seg")
    assert verdict(paired_report({"x": m}, [], None), "x").startswith("not compared")
    # beating some baselines and tying more: the shorter list is named
    five = {f"b{i}": dict.fromkeys(keys, flat(0.6) if i < 2 else 0.7 + _alternating(q, 0.1)) for i in range(5)}
    words = verdict(paired_report({"x": dict.fromkeys(keys, flat(0.7)), **five}, list(five), "b0", n_bootstrap=300),
                    "x")
    assert words == ("better than b0, b1 but no clear difference from the other 3 overall, on new products, "
                     "for new customers, for sparse customers and for warm customers")


def test_the_slices_are_the_paired_keys_in_words():
    assert list(slice_names()) == list(paired_keys()) and list(slice_names(5)) == list(paired_keys(5))
    assert slice_names()["recall_at_10_cold_items"] == "never-bought products"
