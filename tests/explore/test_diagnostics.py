"""Texture diagnostics on hand-made products whose neighbours, confusions and scores are worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.explore.diagnostics import (OTHER, cluster_purity, diagnose, diagnostics_table, label_overlap, linear_probe,
                                      neighbour_confusion, null_confusion, pair_auc, pattern_sensitivity, stratum_keys,
                                      texture_confusions)
from core.embeddings.quality import neighbours
from tests.vectors import ANGLES, COLOURS, GROUPS, NEAREST_2, PATTERNS, TYPES, circle, cos, synthetic, unit


def test_stratum_keys_join_type_and_colour():
    assert stratum_keys(np.array(["Top", "Dress"]), np.array(["Black", "Red"])).tolist() == \
        ["Top | Black", "Dress | Red"]


def test_neighbour_confusion_by_hand():
    got = neighbour_confusion(NEAREST_2, PATTERNS, ["Check", "Solid", "Stripe"], k=2)
    expected = pd.DataFrame([[0, 1, 0],  # Check (5): neighbours Solid, Solid
                             [3 / 8, 1 / 4, 3 / 8],  # Solid (2, 4, 6, 7)
                             [0, 2 / 3, 1 / 3]],  # Stripe (0, 1, 3)
                            index=["Check", "Solid", "Stripe"], columns=["Check", "Solid", "Stripe"])
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy())
    assert got.index.tolist() == expected.index.tolist() and got.columns.tolist() == expected.columns.tolist()
    np.testing.assert_allclose(got.sum(axis=1), 1.0)
    # Classes that leave a label out get an OTHER column, so rows still sum to 1.
    two = neighbour_confusion(NEAREST_2, PATTERNS, ["Solid", "Stripe"], k=2)
    assert two.columns.tolist() == ["Solid", "Stripe", OTHER]
    np.testing.assert_allclose(two.loc["Solid"].to_numpy(), [1 / 4, 3 / 8, 3 / 8])


def test_null_confusion_by_hand():
    strata = stratum_keys(TYPES, COLOURS)
    got = null_confusion(PATTERNS, strata, GROUPS, ["Check", "Solid", "Stripe"])
    # Other-group products in the own stratum: 0 -> {2 Solid, 3 Stripe}, 1 -> {4 Solid, 5 Check},
    # 2 -> {0, 3 Stripe}, 3 -> {0 Stripe, 2 Solid}, 4 -> {1 Stripe, 5 Check}, 5 -> {1 Stripe, 4 Solid};
    # 6 and 7 are alone in their strata and left out.
    expected = [[0, 1 / 2, 1 / 2],  # Check: 5
                [1 / 4, 0, 3 / 4],  # Solid: 2, 4
                [1 / 6, 1 / 2, 1 / 3]]  # Stripe: 0, 1, 3
    np.testing.assert_allclose(got.to_numpy(), expected)
    assert got.shape == neighbour_confusion(NEAREST_2, PATTERNS, ["Check", "Solid", "Stripe"], k=2).shape


def test_null_confusion_leaves_out_the_own_group_within_a_stratum():
    groups, labels, strata = np.array(["a", "a", "b", "c"]), np.array(["X", "Y", "X", "Y"]), np.array(["s"] * 4)
    got = null_confusion(labels, strata, groups, ["X", "Y"])
    # 0 and 1 see {2 X, 3 Y}; 2 sees {0 X, 1 Y, 3 Y}; 3 sees {0 X, 1 Y, 2 X}.
    np.testing.assert_allclose(got.to_numpy(), [[5 / 12, 7 / 12], [7 / 12, 5 / 12]])


def test_texture_confusions_pick_same_type_and_colour_with_another_pattern():
    rows, sims = neighbours(circle(ANGLES), GROUPS, k=2)
    got = texture_confusions(rows, sims, PATTERNS, TYPES, COLOURS)
    # Nearest: 0 -> 2 and 3 -> 2 (black tops, Stripe vs Solid), 5 -> 4 (white tops, Check vs Solid).
    # 7 -> 5 is a dress next to a top; 1 -> 2, 2 -> 1, 4 -> 3 and 6 -> 5 differ in colour.
    assert got["row"].tolist() == [3, 0, 5]  # gaps 20, 25, 30 degrees: most similar first
    assert got["neighbour"].tolist() == [2, 2, 4]
    assert got["pattern"].tolist() == ["Stripe", "Stripe", "Check"]
    assert got["neighbour_pattern"].tolist() == ["Solid", "Solid", "Solid"]
    assert got["type"].tolist() == ["Top"] * 3 and got["colour"].tolist() == ["Black", "Black", "White"]
    np.testing.assert_allclose(got["similarity"], [cos(20), cos(25), cos(30)], atol=1e-6)
    assert got.columns.tolist() == ["row", "neighbour", "pattern", "neighbour_pattern", "type", "colour",
                                    "similarity"]


def test_pattern_sensitivity_by_hand():
    got = pattern_sensitivity(NEAREST_2, PATTERNS, stratum_keys(TYPES, COLOURS), GROUPS)
    # Nearest neighbour in the own stratum for 0, 3 and 5, each with another pattern: m = 1. A random
    # other-group product of the stratum has another pattern with chance 1/2 (0), 1/2 (3), 1 (5).
    assert got["n"] == 3 and got["m"] == 1.0
    assert got["m0"] == pytest.approx(2 / 3)
    assert got["S"] == pytest.approx(1 - 1 / (2 / 3))  # -0.5: worse than a random neighbour

    rows = np.array([[2], [3], [3], [-1]])
    groups, labels, strata = np.array(["a", "a", "b", "c"]), np.array(["X", "Y", "X", "Y"]), np.array(["s"] * 4)
    got = pattern_sensitivity(rows, labels, strata, groups)
    # 2 -> 3 misses; m0 = mean(1/2, 1/2, 2/3) leaving out the own group.
    assert got["n"] == 3 and got["m"] == pytest.approx(1 / 3) and got["m0"] == pytest.approx(5 / 9)
    assert got["S"] == pytest.approx(0.4)
    assert np.isnan(pattern_sensitivity(np.array([[-1]]), np.array(["X"]), np.array(["s"]), np.array(["a"]))["S"])


def test_pattern_sensitivity_is_one_when_pattern_separates_and_near_zero_when_blind():
    x, patterns, groups, types, colours, _ = synthetic(300, pattern_weight=4.0)
    strata = stratum_keys(types, colours)
    rows, _ = neighbours(x, groups, 1)
    sharp = pattern_sensitivity(rows, patterns, strata, groups)
    assert sharp["n"] > 50 and sharp["S"] == 1.0

    x, *_ = synthetic(300, pattern_weight=0.0)
    rows, _ = neighbours(x, groups, 1)
    blind = pattern_sensitivity(rows, patterns, strata, groups)
    assert blind["n"] > 200 and abs(blind["S"]) < 0.15


def test_pair_auc_hand_counted_with_a_tie_and_own_group_left_out():
    e1, e2, e3 = np.eye(3, dtype=np.float32)
    vectors = np.stack([e1, e1, unit(e1 + e2), e2,  # stratum X
                        e1, e2, e1, e1,  # stratum Y; rows 4 and 7 are one group
                        e1, e3])  # stratum Z: one different-pattern pair, no same-pattern pair
    labels = np.array(["A", "A", "B", "B", "A", "A", "B", "A", "A", "B"])
    strata = np.array(["X"] * 4 + ["Y"] * 4 + ["Z"] * 2)
    groups = np.array(["x0", "x1", "x2", "x3", "y0", "y1", "y2", "y0", "z0", "z1"])
    # X: positives (0,1) = 1 and (2,3) = .71; negatives (0,2) = (1,2) = .71, (0,3) = (1,3) = 0.
    #    U = 4 + (1/2 + 1 + 1/2 + 1) = 7 of 2 x 4 = 8.
    # Y: positives (4,5) = (7,5) = 0 ((4,7) is one group); negatives (4,6) = (7,6) = 1, (5,6) = 0.
    #    U = 2 x (0 + 0 + 1/2) = 1 of 2 x 3 = 6.
    got = pair_auc(vectors, labels, strata, groups)
    assert got == {"auc": pytest.approx((7 + 1) / (8 + 6)), "pairs": 6 + 5, "strata": 2}


def test_pair_auc_is_one_when_pattern_separates_and_half_when_blind():
    x, patterns, groups, types, colours, _ = synthetic(300, pattern_weight=4.0)
    strata = stratum_keys(types, colours)
    assert pair_auc(x, patterns, strata, groups)["auc"] == 1.0
    blind, *_ = synthetic(300, pattern_weight=0.0)
    assert abs(pair_auc(blind, patterns, strata, groups)["auc"] - 0.5) < 0.05
    same = np.ones((300, 4), np.float32) / 2  # every product the same vector: every pair a tie
    assert pair_auc(same, patterns, strata, groups)["auc"] == 0.5
    # Subsampling large strata still gives an answer, from fewer pairs.
    small = pair_auc(x, patterns, strata, groups, max_per_stratum=10, seed=0)
    assert small["auc"] == 1.0 and small["pairs"] < pair_auc(x, patterns, strata, groups)["pairs"]


def test_linear_probe_reads_separable_classes_and_not_shuffled_ones():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 40)
    x = np.eye(16)[np.repeat([0, 1, 2], 40)] * 5 + rng.standard_normal((120, 16))
    groups = np.arange(120).astype(str)
    # A rare class is dropped, not scored.
    x = np.vstack([x, rng.standard_normal((3, 16))])
    labels, groups = np.concatenate([labels, ["rare"] * 3]), np.concatenate([groups, ["r0", "r1", "r2"]])
    got = linear_probe(x, labels, groups, folds=5, min_class=10)
    assert got["classes"] == ["a", "b", "c"] and got["balanced_accuracy"] >= 0.95
    assert got["confusion"].shape == (3, 3)
    np.testing.assert_allclose(got["confusion"].sum(axis=1), 1.0)
    shuffled = linear_probe(x, rng.permutation(labels), groups, folds=5, min_class=10)
    assert shuffled["balanced_accuracy"] < 0.5  # chance is 1/3


def test_linear_probe_folds_keep_groups_together():
    # Each group is 4 copies of one random point with its own label: a probe that saw a group in
    # training would recall its label; with folds by group it cannot beat chance by much.
    rng = np.random.default_rng(1)
    points = rng.standard_normal((60, 32))
    x = np.repeat(points, 4, axis=0) + 0.01 * rng.standard_normal((240, 32))
    labels = np.repeat(rng.choice(["a", "b", "c"], 60), 4)
    groups = np.repeat(np.arange(60), 4).astype(str)
    assert linear_probe(x, labels, groups, min_class=10)["balanced_accuracy"] < 0.6


def test_cluster_purity_by_hand():
    clusters = np.array([0, 0, 0, 1, 1, -1, -1])
    labels = np.array(["a", "a", "b", "b", "b", "a", "c"])
    assert cluster_purity(clusters, labels) == pytest.approx(4 / 5)  # 2 of cluster 0, 2 of cluster 1
    assert np.isnan(cluster_purity(np.array([-1, -1]), np.array(["a", "b"])))


def test_label_overlap_on_made_up_descriptions():
    labels = np.array(["Stripe", "All over pattern", "Dot", "Solid", "Solid", "Solid", "Dot"])
    types = np.array(["Top", "Dress", "Dress", "Top", "Blouse", "Top", "Top"])
    descriptions = np.array(["Striped top in jersey.",
                             "Dress in patterned chiffon with DOTS.",
                             "Dress in patterned chiffon with DOTS.",
                             "Top in soft marl jersey with a spotless finish.",  # "spotless" is not a spot
                             "Dress in patterned chiffon with DOTS.",  # same text, but a blouse
                             "", " "])  # no description: not counted in shares, never paired
    ids = np.array(["p0", "p1", "p2", "p3", "p4", "p5", "p6"])
    got = label_overlap(labels, descriptions, types, ids=ids)
    mentions = got["mentions"]
    assert mentions.index.tolist() == ["All over pattern", "Dot", "Solid", "Stripe"]
    assert got["described"].to_dict() == {"Solid": 2, "All over pattern": 1, "Dot": 1, "Stripe": 1}
    assert mentions.loc["Stripe", "Stripe"] == 1.0 and mentions.loc["Stripe"].sum() == 1.0
    assert mentions.loc["All over pattern", "Dot"] == 1.0  # "dots"
    assert mentions.loc["All over pattern", "All over pattern"] == 1.0  # "patterned"
    assert mentions.loc["Dot", "Dot"] == 1.0  # p2; p6 has no description
    assert mentions.loc["Solid", "Melange"] == 0.5  # p3's "marl"
    assert mentions.loc["Solid", "Dot"] == 0.5  # p4's "dots", not p3's "spotless"
    assert got["same_description"].to_dict("records") == [
        {"label_a": "All over pattern", "label_b": "Dot", "pairs": 1, "example_a": "p1", "example_b": "p2"}]
    # When p1 and p2 are colour variants of one product, their shared text is no evidence.
    groups = np.array(["a", "b", "b", "c", "d", "e", "f"])
    assert got["same_description"].columns.tolist() == ["label_a", "label_b", "pairs", "example_a", "example_b"]
    assert label_overlap(labels, descriptions, types, ids=ids, groups=groups)["same_description"].empty


def test_diagnose_tells_an_embedding_that_sees_pattern_from_one_that_does_not():
    a, patterns, groups, types, colours, directions = synthetic(300, pattern_weight=1.5)
    b, *_ = synthetic(300, pattern_weight=0.0)
    classes = ["Solid", "Stripe", "Check"]
    prompts = directions  # row j describes classes[j]
    results = {"sees_pattern": diagnose(a, patterns, groups, types, colours, k=10, min_class=10,
                                        prompt_vectors=prompts, classes=classes),
               "pattern_blind": diagnose(b, patterns, groups, types, colours, k=10, min_class=10)}
    ra, rb = results["sees_pattern"], results["pattern_blind"]
    assert ra["pattern_agreement_at_10"] > rb["pattern_agreement_at_10"] + 0.3
    assert ra["pattern_sensitivity"] > rb["pattern_sensitivity"] + 0.5
    assert ra["pair_auc"] > rb["pair_auc"] + 0.3
    assert ra["probe_balanced_accuracy"] > rb["probe_balanced_accuracy"] + 0.3
    assert ra["texture_confusion_rate"] < rb["texture_confusion_rate"]
    assert ra["zero_shot_corrected_balanced_accuracy"] > 0.8
    assert np.isnan(rb["zero_shot_balanced_accuracy"]) and np.isnan(rb["zero_shot_corrected_balanced_accuracy"])
    for r in (ra, rb):  # both see type: neighbours share it far above chance
        assert r["type_agreement_at_10"] > r["type_agreement_chance"] + 0.3
        assert r["pattern_agreement_lift"] == pytest.approx(r["pattern_agreement_at_10"]
                                                            / r["pattern_agreement_chance"])
        assert r["pattern_confusion"].shape == r["null_confusion"].shape == (3, 3)
        assert len(r["texture_confusions"]) == round(r["texture_confusion_rate"] * 300)

    table = diagnostics_table(results)
    assert table.index.tolist() == ["sees_pattern", "pattern_blind"] and table.index.name == "kind"
    for column in ("pattern_agreement_at_10", "pattern_agreement_macro_at_10", "pattern_agreement_chance",
                   "pattern_agreement_lift", "pattern_sensitivity", "pair_auc", "probe_balanced_accuracy",
                   "zero_shot_balanced_accuracy", "zero_shot_corrected_balanced_accuracy",
                   "type_agreement_at_10", "type_agreement_chance", "texture_confusion_rate"):
        assert column in table.columns
    assert "pattern_confusion" not in table.columns and "pattern_agreement_per_class" not in table.columns
