"""Evaluation metrics on hand-made data with known answers."""
import json

import numpy as np
import pytest

from core.embeddings.groupsplit import SPLITS
from core.embeddings.quality import (frequent_classes, held_out_split, label_agreement, label_agreement_at_k,
                                     neighbours, retrieval_recall, split_by_group, zero_shot)
from tests.vectors import ANGLES, GROUPS, NEAREST_2, PATTERNS, TYPES, circle, synthetic, unit


def test_split_keeps_groups_together_and_is_seeded():
    groups = np.repeat(np.arange(200), 3).astype(str)  # 200 products with 3 colour variants each
    held = split_by_group(groups, 0.1, seed=0)
    assert held.sum() == 60
    np.testing.assert_array_equal(held, held_out_split(groups, (0.9, 0.0, 0.1), seed=0) == "test")
    for g in np.unique(groups):
        assert len(set(held[groups == g])) == 1
    np.testing.assert_array_equal(held, split_by_group(groups, 0.1, seed=0))
    assert not np.array_equal(held, split_by_group(groups, 0.1, seed=1))


def test_retrieval_recall_counts_the_true_match_rank():
    gallery = np.eye(4, dtype=np.float32)
    assert retrieval_recall(gallery, gallery, ks=(1,)) == {1: 1.0}
    shuffled = gallery[[1, 0, 2, 3]]  # queries 0 and 1 point at each other's match
    assert retrieval_recall(shuffled, gallery, ks=(1, 2)) == {1: 0.5, 2: 1.0}
    far = gallery[[3, 2, 1, 0]] * np.array([[1], [1], [1], [1]], dtype=np.float32)
    assert retrieval_recall(far, gallery, ks=(1,)) == {1: 0.0}


def test_zero_shot_accuracy_and_majority_rate():
    classes = ["striped", "checked"]
    prompts = np.eye(2, dtype=np.float32)
    images = np.array([[1, 0], [1, 0.1], [0, 1], [0.9, 0.2]], dtype=np.float32)
    labels = np.array(["striped", "striped", "checked", "checked"])
    got = zero_shot(images, labels, prompts, classes)
    assert got.accuracy == 0.75 and got.majority_rate == 0.5 and got.balanced_accuracy == 0.75
    labels = np.array(["striped", "striped", "striped", "checked"])  # imbalanced: always "striped" scores 0.75
    always = np.array([[1, 0]] * 4, dtype=np.float32)
    got = zero_shot(always, labels, prompts, classes)
    assert (got.accuracy, got.majority_rate, got.balanced_accuracy) == (0.75, 0.75, 0.5)


def test_label_agreement_on_two_tight_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal([5, 0], 0.1, size=(20, 2))
    b = rng.normal([0, 5], 0.1, size=(20, 2))
    labels = np.array(["a"] * 20 + ["b"] * 20)
    assert label_agreement_at_k(np.vstack([a, b]), labels, k=10) == 1.0
    mixed = rng.permutation(labels)
    assert label_agreement_at_k(np.vstack([a, b]), mixed, k=10) < 0.8


def test_frequent_classes_drops_rare_and_empty_labels():
    values = np.array(["Solid"] * 60 + ["Stripe"] * 50 + ["Dot"] * 3 + [""] * 70)
    assert frequent_classes(values, 50) == ["Solid", "Stripe"]


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


def test_label_agreement_micro_macro_chance_by_hand():
    got = label_agreement(NEAREST_2, PATTERNS, k=2, min_class=2)
    # Shares of the 2 neighbours with the own pattern: 1/2, 1/2, 0, 0, 0, 0, 1/2, 1/2.
    assert got["micro"] == pytest.approx(0.25)
    assert got["per_class"] == pytest.approx({"Stripe": 1 / 3, "Solid": 0.25, "Check": 0.0})
    assert got["macro"] == pytest.approx((1 / 3 + 1 / 4) / 2)  # Check has 1 product < min_class
    assert got["chance"] == pytest.approx((3 ** 2 + 4 ** 2 + 1 ** 2) / 8 ** 2)
    assert got["macro_chance"] == pytest.approx((3 / 8 + 4 / 8) / 2)
    assert got["lift"] == pytest.approx(0.25 / (26 / 64))
    # Product types: 1 for the five tops whose neighbours are tops, 1/2 for 5, 0 for the dresses.
    types = label_agreement(NEAREST_2, TYPES, k=2, min_class=1)
    assert types["micro"] == pytest.approx(5.5 / 8) and types["chance"] == pytest.approx(40 / 64)
    # Only the first k columns count; a missing neighbour (-1) is not a miss.
    padded = np.array([[1, -1, 0], [0, -1, 1]])
    assert label_agreement(padded, np.array(["a", "a"]), k=2, min_class=1)["micro"] == 1.0


def test_zero_shot_prior_correction_removes_a_hub_prompt():
    classes = ["A", "B", "Hub"]
    prompts = np.eye(3, dtype=np.float32)  # the Hub prompt is the third axis, which every product leans on
    vectors = unit(np.array([[2, 0, 3], [3, 0, 2], [0, 2, 3], [0, 3, 2], [1, 1, 1]], dtype=np.float64))
    labels = np.array(["A", "A", "B", "B", "unlisted"])  # the last product has no prompt: left out
    # Without correction, (2,0,3) and (0,2,3) go to the Hub (.83 against .55): half right.
    plain = zero_shot(vectors, labels, prompts, classes, prior_correction=False)
    assert (plain.accuracy, plain.balanced_accuracy) == (0.5, 0.5)
    # Mean similarity over the four products: A and B .35, Hub .69. (2,0,3) now scores A .55 - .35 = .21
    # against Hub .83 - .69 = .14, and (3,0,2) A .49 against Hub -.14: all four right.
    corrected = zero_shot(vectors, labels, prompts, classes, prior_correction=True)
    assert (corrected.accuracy, corrected.balanced_accuracy) == (1.0, 1.0)



# ---- one home per measure: the merged functions give what the old copies gave

def _old_label_agreement_at_k(vectors, labels, k=10):
    """quality.label_agreement_at_k before it was expressed through label_agreement."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argpartition(-sims, k, axis=1)[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


def _old_quality_zero_shot(image, labels, class_embeddings, classes):
    """quality.zero_shot before the merge: (accuracy, majority rate, balanced accuracy), labels all in classes."""
    predicted = np.asarray(classes)[np.argmax(image @ class_embeddings.T, axis=1)]
    names, counts = np.unique(labels, return_counts=True)
    balanced = np.mean([np.mean(predicted[labels == c] == c) for c in names])
    return float(np.mean(predicted == labels)), float(counts.max() / len(labels)), float(balanced)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_agreement_at_k_gives_what_the_old_brute_force_gave(seed):
    vectors, patterns, _, types, _, _ = synthetic(200, pattern_weight=0.7, seed=seed)
    for labels in (patterns, types):
        assert label_agreement_at_k(vectors, labels, 10) == pytest.approx(_old_label_agreement_at_k(vectors, labels, 10))
    # unnormalised rows are normalised first, as before
    assert label_agreement_at_k(3 * vectors, patterns, 5) == pytest.approx(_old_label_agreement_at_k(3 * vectors,
                                                                                                     patterns, 5))


@pytest.mark.parametrize("seed", [0, 1])
def test_zero_shot_gives_what_both_old_copies_gave(seed):
    vectors, patterns, _, _, _, directions = synthetic(150, pattern_weight=0.5, seed=seed)
    classes = ["Solid", "Stripe", "Check"]
    got = zero_shot(vectors, patterns, directions, classes)
    assert (got.accuracy, got.majority_rate, got.balanced_accuracy) == \
        pytest.approx(_old_quality_zero_shot(vectors, patterns, directions, classes))
    # explore's copy left out labels without a prompt; evaluate_lit filtered them before calling
    extra = np.where(np.arange(len(patterns)) % 7 == 0, "Dot", patterns)
    keep = extra != "Dot"
    got = zero_shot(vectors, extra, directions, classes)
    assert (got.accuracy, got.majority_rate, got.balanced_accuracy) == \
        pytest.approx(_old_quality_zero_shot(vectors[keep], extra[keep], directions, classes))
    nothing = zero_shot(vectors, np.array(["Dot"] * len(vectors)), directions, classes)
    assert np.isnan([nothing.accuracy, nothing.majority_rate, nothing.balanced_accuracy]).all()


def test_split_by_group_is_the_test_part_of_held_out_split():
    groups = np.repeat([f"g{i}" for i in range(57)], 2)
    for holdout in (0.1, 0.2, 0.5):
        parts = held_out_split(groups, (1 - holdout, 0.0, holdout), seed=3)
        assert set(parts) <= set(SPLITS) - {"validation"}
        np.testing.assert_array_equal(split_by_group(groups, holdout, seed=3), parts == "test")


# ---- the offline-lit evaluation, typed

def _flat_evaluation(labels=("pattern", "type")) -> dict:
    """A flat evaluation as evaluate_lit builds it, key by key in its order, values made up."""
    out = {"n_train": 900, "n_test": 100, "holdout_by": "group_id", "caption_augmentation": True,
           "head_training_s": 12.5, "epochs": 30, "final_train_loss": 1.2345}
    for i, name in enumerate(("", "random_heads_")):
        for k in (1, 5, 10):
            out[f"{name}text_to_image_recall_at_{k}"] = 0.1 * k / (1 + i)
        for k in (1, 5, 10):
            out[f"{name}image_to_text_recall_at_{k}"] = 0.09 * k / (1 + i)
        for j, label in enumerate(labels):
            out[f"{name}zero_shot_{label}_accuracy"] = 0.6 - 0.2 * i - 0.1 * j
            out[f"{name}zero_shot_{label}_balanced_accuracy"] = 0.5 - 0.2 * i - 0.1 * j
            out[f"{label}_majority_rate"] = 0.4 + 0.1 * j
            out[f"{label}_chance_balanced_accuracy"] = round(1 / (4 + j), 4)
            out[f"{label}_classes"] = 4 + j
        if "pattern" in labels:
            out[f"{name}image_pattern_agreement_at_10"] = 0.7 - 0.3 * i
    if "pattern" in labels:
        out["raw_imagenet_pattern_agreement_at_10"] = 0.5
    return out


@pytest.mark.parametrize("labels", [("pattern", "type"), ("type",), ()])
def test_lit_evaluation_keeps_the_flat_dict_it_printed_and_stored(labels):
    from core.embeddings.quality import LitEvaluation
    flat = _flat_evaluation(labels)
    result = LitEvaluation.from_dict(flat)
    assert list(result.to_dict().items()) == list(flat.items())  # same keys, same order, same values
    arrays = result.to_arrays()
    assert list(arrays) == ["result"] and json.loads(str(arrays["result"])) == flat
    assert LitEvaluation.from_arrays(arrays) == result
    assert result.trained.text_to_image_recall[10] == pytest.approx(1.0)
    assert set(result.trained.zero_shot_accuracy) == set(labels) == set(result.labels)
    assert (result.trained.image_pattern_agreement_at_10 is None) == ("pattern" not in labels)


def test_evaluation_table_rows():
    from core.embeddings.quality import LitEvaluation, evaluation_table
    table = evaluation_table(LitEvaluation.from_dict(_flat_evaluation()))
    assert table["metric"].tolist() == [
        *(f"{d} recall@{k}" for d in ("text to image", "image to text") for k in (1, 5, 10)),
        "zero-shot pattern accuracy (4 classes)", "zero-shot pattern balanced accuracy",
        "zero-shot type accuracy (5 classes)", "zero-shot type balanced accuracy",
        "photo neighbours sharing the pattern (@10)"]
    row = table.set_index("metric").loc["zero-shot type accuracy (5 classes)"]
    assert row.tolist() == pytest.approx([0.5, 0.3, 0.5])
    assert table.set_index("metric").loc["photo neighbours sharing the pattern (@10)"].tolist() == \
        pytest.approx([0.7, 0.4, 0.5])


def test_some_groups_takes_whole_groups_of_the_rows_within_the_limit():
    from core.embeddings.groupsplit import some_groups
    groups = np.repeat(np.arange(100), 3).astype(str)  # 100 groups of 3 variants
    rows = np.arange(300) >= 60  # the first 20 groups are not in play
    kept = some_groups(groups, rows, 45, seed=1)
    assert kept.sum() == 45 and not kept[:60].any()
    assert all(kept[groups == g].all() or not kept[groups == g].any() for g in np.unique(groups))
    assert (some_groups(groups, rows, 45, seed=1) == kept).all()
    assert (some_groups(groups, rows, 45, seed=2) != kept).any()
    assert (some_groups(groups, rows, 240, seed=1) == rows).all() and (some_groups(groups, rows, 0) == rows).all()
    big = np.array(["a"] * 20 + ["b"] * 5)  # the group drawn first may be larger than the limit: it is kept
    assert all(some_groups(big, np.ones(25, bool), 10, seed).sum() in (5, 20) for seed in range(6))
