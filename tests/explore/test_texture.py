"""Texture diagnostics on hand-made products whose neighbours, confusions and scores are worked out by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.explore.texture import (OTHER, cluster_purity, diagnose, diagnostics_table, label_overlap, linear_probe,
    neighbour_confusion, null_confusion, pair_auc, pattern_sensitivity, stratum_keys, texture_confusions, zero_shot)
from core.embeddings.quality import held_out_split, neighbours, pattern_agreement

# Eight products on the unit circle; with every angle gap under 180 degrees, the nearer angle is the
# more similar product. Products 0/1 and 6/7 are colour variants (one group each).
ANGLES = np.array([0, 10, 25, 45, 70, 100, 140, 150])
GROUPS = np.array(["g1", "g1", "g2", "g3", "g4", "g5", "g6", "g6"])
TYPES = np.array(["Top"] * 6 + ["Dress"] * 2)
COLOURS = np.array(["Black", "White", "Black", "Black", "White", "White", "Black", "White"])
PATTERNS = np.array(["Stripe", "Stripe", "Solid", "Stripe", "Solid", "Check", "Solid", "Solid"])
# Strata: Top|Black = {0, 2, 3}, Top|White = {1, 4, 5}, Dress|Black = {6}, Dress|White = {7}.
# Two nearest products outside the own group, by angle gap:
NEAREST_2 = np.array([[2, 3], [2, 3], [1, 3], [2, 4], [3, 5], [4, 6], [5, 4], [5, 4]])


def circle(angles: np.ndarray) -> np.ndarray:
    rad = np.deg2rad(angles)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def cos(degrees: float) -> float:
    return float(np.cos(np.deg2rad(degrees)))


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic(n: int = 300, pattern_weight: float = 1.5, seed: int = 0):
    """n products of 3 types x 4 colours x 3 patterns; a group is one type and pattern in 1-3 colours.
    Vectors = type + colour + ``pattern_weight`` x pattern direction + noise, unit rows (d = 32).
    Returns vectors, patterns, groups, types, colours and the unit pattern directions (3, d)."""
    rng = np.random.default_rng(seed)
    names = {"type": ["Top", "Dress", "Trousers"], "colour": ["Black", "White", "Red", "Blue"],
             "pattern": ["Solid", "Stripe", "Check"]}
    rows = []
    g = 0
    while len(rows) < n:
        t, p = rng.integers(3), rng.integers(3)
        for c in rng.choice(4, size=rng.integers(1, 4), replace=False):
            rows.append((t, c, p, f"g{g}"))
        g += 1
    t, c, p, groups = (np.array(x) for x in zip(*rows[:n]))
    d = 32
    direction = {k: unit(rng.standard_normal((len(v), d))) for k, v in names.items()}
    x = (2.0 * direction["type"][t] + 1.5 * direction["colour"][c] + pattern_weight * direction["pattern"][p]
         + 0.08 * rng.standard_normal((n, d)))
    return (unit(x), np.array(names["pattern"])[p], groups, np.array(names["type"])[t],
            np.array(names["colour"])[c], direction["pattern"])


def test_stratum_keys_join_type_and_colour():
    assert stratum_keys(np.array(["Top", "Dress"]), np.array(["Black", "Red"])).tolist() == \
        ["Top | Black", "Dress | Red"]


def test_held_out_split_keeps_groups_whole_and_is_seeded():
    groups = np.repeat([f"g{i}" for i in range(100)], 3)  # 100 products in 3 colours each
    split = held_out_split(groups, (0.6, 0.2, 0.2), seed=0)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    parts = {name: len(np.unique(groups[split == name])) for name in ("train", "validation", "test")}
    assert parts == {"train": 60, "validation": 20, "test": 20}
    np.testing.assert_array_equal(split, held_out_split(groups, seed=0))
    assert not np.array_equal(split, held_out_split(groups, seed=1))


def test_neighbours_leave_out_the_own_group_and_pad():
    rows, sims = neighbours(circle(ANGLES), GROUPS, k=2)
    np.testing.assert_array_equal(rows, NEAREST_2)
    assert rows.dtype == np.int64 and sims.dtype == np.float32
    gaps = np.abs(ANGLES[NEAREST_2] - ANGLES[:, None])
    np.testing.assert_allclose(sims, np.cos(np.deg2rad(gaps)), atol=1e-6)

    rows, sims = neighbours(circle(ANGLES), GROUPS, k=7)
    # Product 0 has 6 products outside its group: 2, 3, 4, 5, 6, 7 by angle, then padding.
    assert rows[0].tolist() == [2, 3, 4, 5, 6, 7, -1] and np.isnan(sims[0, -1])
    # Product 2 (a group of one) has all 7: gaps 15 (1), 20 (3), 25 (0), 45, 75, 115, 125.
    assert rows[2].tolist() == [1, 3, 0, 4, 5, 6, 7] and not np.isnan(sims[2]).any()
    assert not any(GROUPS[j] == GROUPS[i] for i in range(8) for j in rows[i] if j >= 0)


def test_neighbours_match_brute_force_with_large_groups():
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((200, 8)))
    groups = np.array([f"g{i}" for i in rng.integers(0, 30, 200)])  # ~7 rows per group
    rows, sims = neighbours(x, groups, k=5)
    s = x @ x.T
    s[groups[:, None] == groups[None, :]] = -np.inf
    expected = np.sort(s, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(sims, expected, atol=1e-5)
    assert (groups[rows] != groups[:, None]).all()


def test_pattern_agreement_micro_macro_chance_by_hand():
    got = pattern_agreement(NEAREST_2, PATTERNS, k=2, min_class=2)
    # Shares of the 2 neighbours with the own pattern: 1/2, 1/2, 0, 0, 0, 0, 1/2, 1/2.
    assert got["micro"] == pytest.approx(0.25)
    assert got["per_class"] == pytest.approx({"Stripe": 1 / 3, "Solid": 0.25, "Check": 0.0})
    assert got["macro"] == pytest.approx((1 / 3 + 1 / 4) / 2)  # Check has 1 product < min_class
    assert got["chance"] == pytest.approx((3 ** 2 + 4 ** 2 + 1 ** 2) / 8 ** 2)
    assert got["macro_chance"] == pytest.approx((3 / 8 + 4 / 8) / 2)
    assert got["lift"] == pytest.approx(0.25 / (26 / 64))
    # Product types: 1 for the five tops whose neighbours are tops, 1/2 for 5, 0 for the dresses.
    types = pattern_agreement(NEAREST_2, TYPES, k=2, min_class=1)
    assert types["micro"] == pytest.approx(5.5 / 8) and types["chance"] == pytest.approx(40 / 64)
    # Only the first k columns count; a missing neighbour (-1) is not a miss.
    padded = np.array([[1, -1, 0], [0, -1, 1]])
    assert pattern_agreement(padded, np.array(["a", "a"]), k=2, min_class=1)["micro"] == 1.0


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


def test_zero_shot_prior_correction_removes_a_hub_prompt():
    classes = ["A", "B", "Hub"]
    prompts = np.eye(3, dtype=np.float32)  # the Hub prompt is the third axis, which every product leans on
    vectors = unit(np.array([[2, 0, 3], [3, 0, 2], [0, 2, 3], [0, 3, 2], [1, 1, 1]], dtype=np.float64))
    labels = np.array(["A", "A", "B", "B", "unlisted"])  # the last product has no prompt: left out
    # Without correction, (2,0,3) and (0,2,3) go to the Hub (.83 against .55): half right.
    plain = zero_shot(vectors, prompts, labels, classes, prior_correction=False)
    assert plain == {"accuracy": 0.5, "balanced_accuracy": 0.5}
    # Mean similarity over the four products: A and B .35, Hub .69. (2,0,3) now scores A .55 - .35 = .21
    # against Hub .83 - .69 = .14, and (3,0,2) A .49 against Hub -.14: all four right.
    corrected = zero_shot(vectors, prompts, labels, classes, prior_correction=True)
    assert corrected == {"accuracy": 1.0, "balanced_accuracy": 1.0}


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


# ---- the texture-aware embedding

def _pattern_blind_photo(n: int = 600, seed: int = 0):
    """A photo embedding that sees type and colour but not pattern, and descriptors (n, 64) that carry the
    pattern (plus noise): the situation the texture kind is for."""
    photo, patterns, groups, types, colours, _ = synthetic(n, pattern_weight=0.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    codes = np.unique(patterns, return_inverse=True)[1]
    descriptors = rng.standard_normal((3, 64))[codes] + 0.7 * rng.standard_normal((n, 64))
    return photo, descriptors.astype(np.float32) ** 2, patterns, groups, types, colours


def test_fused_cosine_is_the_weighted_sum_of_block_cosines():
    from core.embeddings.texture import TextureConfig, TextureModel
    photo, descriptors, patterns, *_ = _pattern_blind_photo(200)
    cfg = TextureConfig(pca_dim=16, photo_weight=0.6, texture_weight=0.4, head_weight=0.0)
    model = TextureModel(cfg).fit(photo, descriptors)
    fused = model.transform(photo, descriptors)
    blocks = {k: unit(v) for k, v in model.blocks(photo, descriptors).items()}
    want = 0.6 * blocks["photo"] @ blocks["photo"].T + 0.4 * blocks["texture"] @ blocks["texture"].T
    np.testing.assert_allclose(fused @ fused.T, want, atol=1e-5)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)


def test_rows_without_a_photo_stay_zero_and_text_queries_rank_as_the_photo_space():
    from core.embeddings.texture import TextureConfig, TextureModel
    photo, descriptors, patterns, *_ = _pattern_blind_photo(200)
    descriptors[:5] = 0  # no photo
    model = TextureModel(TextureConfig(pca_dim=16)).fit(photo, descriptors, patterns)
    fused = model.transform(photo, descriptors)
    assert np.all(fused[:5] == 0) and np.allclose(np.linalg.norm(fused[5:], axis=1), 1, atol=1e-5)
    query = unit(np.random.default_rng(3).standard_normal(photo.shape[1]))
    by_fused = np.argsort(-(fused[5:] @ model.text_query(query)), kind="stable")
    by_photo = np.argsort(-(photo[5:] @ query), kind="stable")
    assert by_fused[:20].tolist() == by_photo[:20].tolist()


def test_selected_weights_repair_a_pattern_blind_photo_embedding_and_keep_type():
    from core.embeddings.texture import TextureConfig, select_weights
    photo, descriptors, patterns, groups, types, _ = _pattern_blind_photo(900)
    cfg, table = select_weights(photo, descriptors, patterns, groups, types, TextureConfig(pca_dim=16, min_class=5))
    base = table[(table["texture"] == 0) & (table["head"] == 0)].iloc[0]
    best = table[table["chosen"]].iloc[0]
    assert table["chosen"].sum() == 1
    assert cfg.texture_weight + cfg.head_weight > 0  # the photo alone is not chosen
    assert best["pattern_agreement"] >= base["pattern_agreement"] + 0.3  # blind photo: ~1/3 by chance
    assert best["type_agreement"] >= base["type_agreement"] - 0.02


def test_texture_state_round_trips_through_arrays(tmp_path):
    from core.embeddings.texture import TextureConfig, TextureModel, fit_texture_model
    photo, descriptors, patterns, groups, types, _ = _pattern_blind_photo(600)
    state = fit_texture_model(photo, descriptors, patterns, groups, types, TextureConfig(pca_dim=16, min_class=5))
    assert all(isinstance(v, np.ndarray) for v in state.values())
    model, table = TextureModel.from_state(state)
    assert table["chosen"].sum() == 1 and len(model.classes_) == 3
    again, _ = TextureModel.from_state({k: v.copy() for k, v in state.items()})
    np.testing.assert_allclose(model.transform(photo, descriptors), again.transform(photo, descriptors), atol=1e-6)
    # no pattern labels: no head, and the configured weights; the state still loads back from the cache
    from core.cache import ArtefactCache
    cache = ArtefactCache(tmp_path / "cache")
    unlabelled = fit_texture_model(photo, descriptors, None, groups, None, TextureConfig(pca_dim=16))
    cache.save("texture-model", "k", unlabelled, {})
    loaded = cache.load("texture-model", "k")
    assert loaded is not None and set(loaded) == set(unlabelled)
    plain, table = TextureModel.from_state(loaded)
    assert len(plain.classes_) == 0 and table.empty


def _garment_photo(pattern: str, rng: np.random.Generator, size=(150, 224)):
    """One silhouette and colour on white; the garment drawn at a random scale (as catalogue photos frame
    garments differently) with the pattern at a fixed period in pixels: 4-6 px stripes, checks, melange
    noise, or solid at the patterns' mean tone."""
    from PIL import Image

    from core.data.synthetic import garment_mask
    width, height = size
    scale = rng.uniform(0.35, 1.0)
    w, h = int(width * scale), int(height * scale)
    yy, xx = np.mgrid[:h, :w]
    period, phase = int(rng.integers(4, 7)), int(rng.integers(6))
    amount = {"solid": lambda: np.full((h, w), 0.5),
              "stripe": lambda: ((yy + phase) % period < period / 2).astype(float),
              "check": lambda: (((yy + phase) % period < period / 2).astype(float)
                                + ((xx + phase) % period < period / 2)) / 2.0,
              "melange": lambda: rng.random((h, w))}[pattern]()
    colour, light = np.array([200, 35, 45]) + rng.integers(-10, 11, 3), np.array([245, 220, 222])
    pixels = np.where(garment_mask("t-shirt", (w, h))[..., None], light + amount[..., None] * (colour - light), 255)
    canvas = Image.new("RGB", size, (255, 255, 255))
    canvas.paste(Image.fromarray(np.uint8(np.clip(pixels, 0, 255))), ((width - w) // 2, (height - h) // 2))
    return canvas


def test_texture_embedding_separates_patterns_of_one_garment_where_the_pooled_vector_does_not():
    import torch

    from core.embeddings.lit.towers import FeatureTower, image_tower
    from core.embeddings.lit.views import LitImagePreprocess
    from core.embeddings.texture import TextureConfig, TextureModel
    rng = np.random.default_rng(0)
    patterns = np.repeat(["solid", "stripe", "check", "melange"], 8)
    x = torch.stack([LitImagePreprocess()(_garment_photo(p, rng)) for p in patterns])
    with torch.inference_mode():
        pooled, *texture = (o.numpy() for o in FeatureTower(image_tower()).eval()(x))
    descriptors = np.concatenate(texture, axis=1)
    fused = TextureModel(TextureConfig(pca_dim=8, photo_weight=0.5, texture_weight=0.5, head_weight=0.0)
                         ).fit(pooled, descriptors).transform(pooled, descriptors)
    groups = np.arange(len(patterns)).astype(str)

    def agreement(vectors):
        rows, _ = neighbours(unit(vectors), groups, 3)
        return pattern_agreement(rows, patterns, 3, min_class=3)

    plain, aware = agreement(pooled), agreement(fused)
    # the pooled vector averages over the white background too, so the garment's size pulls it around
    assert aware["micro"] >= plain["micro"] + 0.08, (plain, aware)
    assert aware["per_class"]["stripe"] > plain["per_class"]["stripe"]
    assert aware["micro"] >= 0.8
