"""Evaluation metrics on hand-made data with known answers."""
import numpy as np

from core.embeddings.quality import frequent_classes, label_agreement_at_k, retrieval_recall, split_by_group, zero_shot


def test_split_keeps_groups_together_and_is_seeded():
    groups = np.repeat(np.arange(200), 3).astype(str)  # 200 products with 3 colour variants each
    held = split_by_group(groups, 0.1, seed=0)
    assert held.sum() == 60
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
    accuracy, majority, balanced = zero_shot(images, labels, prompts, classes)
    assert accuracy == 0.75 and majority == 0.5 and balanced == 0.75
    labels = np.array(["striped", "striped", "striped", "checked"])  # imbalanced: always "striped" scores 0.75
    always = np.array([[1, 0]] * 4, dtype=np.float32)
    assert zero_shot(always, labels, prompts, classes) == (0.75, 0.75, 0.5)


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
