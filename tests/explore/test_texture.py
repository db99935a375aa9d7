"""The texture report's typed form and its judgements: stored and read back whole, best photo-side kind, verdict."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.explore.texture import FROM_TEXT, KIND_ABOUT, ORDER, KindDetails, TextureReport, best_photo_kind, in_order, \
    verdict

KINDS = ["photo", "sentence", "hybrid", "texture", "texture descriptor only", "photo + texture descriptor",
         "photo + pattern head"]


def table(agreement, types, sensitivity=None) -> pd.DataFrame:
    """A report table (a "kind" column) with label and type agreement@10 per kind of KINDS."""
    return pd.DataFrame({"kind": KINDS, "pattern_agreement_at_10": agreement, "type_agreement_at_10": types,
                         "pattern_sensitivity": sensitivity if sensitivity is not None else [0.5] * len(KINDS)})


def report(frame: pd.DataFrame) -> TextureReport:
    details = KindDetails({"Stripe": 0.5, "Solid": float("nan")},
                          pd.DataFrame([[0.75, 0.25]], index=["Stripe"], columns=["Stripe", "(other)"]),
                          pd.DataFrame([[0.5, 0.5]], index=["Stripe"], columns=["Stripe", "(other)"]),
                          pd.DataFrame(), pd.DataFrame({"product_id": ["p1"], "neighbour_id": ["p2"],
                                                        "similarity": [0.9]}))
    return TextureReport("pattern", 10, KINDS, {"photo": 0.5, "texture": 0.3, "head": 0.2},
                         {"train": 60, "validation": 20, "test": 20}, frame,
                         pd.DataFrame({"photo": [0.5], "chosen": [True]}), pd.DataFrame({"photo_weight": [0.4]}),
                         pd.DataFrame({"kind": ["photo"], "pattern": [np.nan]}),
                         {"same_description": pd.DataFrame({"label_a": ["Solid"], "pairs": [3]})},
                         {kind: details for kind in KINDS})


def _old_bench_best_photo_kind(frame: pd.DataFrame, tolerance: float = 0.02) -> str:
    """core.bench.benchmarks.best_photo_kind before core.explore.texture held the choice."""
    photo_kinds = ("photo", "texture", "texture descriptor only", "photo + texture descriptor", "photo + pattern head")
    frame = frame.set_index("kind")
    photo = frame.loc[[k for k in photo_kinds if k in frame.index]]
    ok = photo[photo["type_agreement_at_10"] >= frame.at["photo", "type_agreement_at_10"] - tolerance]
    return str(ok["pattern_agreement_at_10"].idxmax())


def test_report_round_trips_through_the_json_array_it_always_had():
    original = report(table([0.3, 0.9, 0.8, 0.5, 0.4, 0.45, np.nan], [0.8] * 7))
    arrays = original.to_arrays()
    assert list(arrays) == ["report"] and arrays["report"].shape == ()
    data = json.loads(str(arrays["report"]))
    assert list(data) == ["label", "k", "kinds", "weights", "split", "table", "selection", "hybrid", "purity",
                          "label_overlap", "details"]
    assert list(data["details"]["photo"]) == ["per_class", "confusion", "null", "probe_confusion", "confusions"]
    back = TextureReport.from_arrays(arrays)
    assert (back.label, back.k, back.kinds, back.weights, back.split) == \
        (original.label, original.k, original.kinds, original.weights, original.split)
    pd.testing.assert_frame_equal(back.table, original.table)
    assert np.isnan(back.purity.at[0, "pattern"])  # JSON null is a number again
    got = back.details["texture"]
    assert got.per_class["Stripe"] == 0.5 and np.isnan(got.per_class["Solid"])
    pd.testing.assert_frame_equal(got.confusion, original.details["texture"].confusion)
    assert got.confusions["product_id"].tolist() == ["p1"] and got.probe_confusion.empty


@pytest.mark.parametrize("agreement, types", [
    ([0.3, 0.9, 0.8, 0.5, 0.4, 0.45, 0.35], [0.8] * 7),  # texture, the text kinds left out
    ([0.3, 0.9, 0.8, 0.5, 0.4, 0.6, 0.35], [0.8, 0.9, 0.9, 0.8, 0.7, 0.79, 0.8]),  # within 2 points of type
    ([0.3, 0.9, 0.8, 0.5, 0.4, 0.6, 0.35], [0.8, 0.9, 0.9, 0.77, 0.8, 0.5, 0.8]),  # texture loses type: none
    ([0.5, 0.9, 0.8, 0.5, 0.4, 0.45, np.nan], [0.8] * 7),  # a tie goes to the photo, NaN skipped
])
def test_best_photo_kind_is_the_bench_choice(agreement, types):
    frame = table(agreement, types)
    assert best_photo_kind(frame) == _old_bench_best_photo_kind(frame)
    assert best_photo_kind(frame) not in FROM_TEXT


def test_best_photo_kind_without_a_photo_row_is_none():
    assert best_photo_kind(table([0.3] * 7, [0.8] * 7).iloc[1:]) is None


def test_verdict_in_points():
    v = verdict(report(table([0.30, 0.9, 0.8, 0.42, 0.35, 0.45, 0.2], [0.80, 0.9, 0.9, 0.785, 0.8, 0.7, 0.8],
                             [0.1, 0.9, 0.8, 0.3, 0.2, 0.2, 0.1])))
    assert v.agreement == (0.42, 0.30) and v.sensitivity == (0.3, 0.1) and v.type_agreement == (0.785, 0.80)
    assert v.gain_points == pytest.approx(12) and v.cost_points == pytest.approx(-1.5) and v.keeps_type
    assert v.best_kind == "texture" and v.best_agreement == 0.42  # "photo + texture descriptor" loses type
    worse = verdict(report(table([0.3] * 7, [0.8, 0.9, 0.9, 0.75, 0.8, 0.8, 0.8])))
    assert not worse.keeps_type and worse.best_kind == "photo"
    assert verdict(report(table([0.3] * 7, [0.8] * 7).iloc[:3])) is None  # no texture kind


def test_kinds_in_order_and_described():
    assert in_order(reversed(KINDS)) == [*ORDER, "photo + pattern head", "photo + texture descriptor",
                                         "texture descriptor only"]
    assert set(KIND_ABOUT) == set(KINDS)
