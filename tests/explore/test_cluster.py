"""Clustering, DBSCAN's eps grid, agreement with labels and cluster names, on synthetic vectors with known groups."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.data.catalog import pattern_phrase
from core.explore.cluster import (NOISE, ClusterConfig, agreement, ctfidf_keywords, dbscan_labels, dbscan_runs,
                                  eps_grid, hdbscan_clusters, label_agreement, metadata_names, prompt_names, prompt_texts,
                                  telling_values)
from core.explore.projection import ProjectConfig, umap_project
from tests.vectors import blobs


def test_three_blobs_give_three_clusters():
    x, truth = blobs()
    reduced = umap_project(x, 5, 0.0, ProjectConfig(seed=0))
    assert reduced.shape == (300, 5) and reduced.dtype == np.float32
    got = hdbscan_clusters(reduced, ClusterConfig(min_cluster_size=20, min_samples=5))
    assert got.n_clusters == 3
    clustered = got.labels != NOISE
    assert clustered.mean() >= 0.9
    assert agreement(got.labels, truth)["ari_clustered"] == pytest.approx(1.0)
    assert (got.soft_labels != NOISE).all()  # soft membership places every point
    assert (got.soft_labels[clustered] == got.labels[clustered]).all()
    assert ((got.probabilities > 0) == clustered).all()
    hard = hdbscan_clusters(reduced, ClusterConfig(min_cluster_size=20, min_samples=5), soft=False)
    assert np.array_equal(hard.labels, got.labels) and np.array_equal(hard.probabilities, got.probabilities)
    assert np.array_equal(hard.soft_labels, got.labels) and not hard.soft_strength.any()  # no soft membership



def test_tiny_inputs_do_not_crash():
    assert umap_project(np.eye(3, dtype=np.float32), 2, 0.1).shape == (3, 2)
    got = hdbscan_clusters(np.zeros((2, 2), np.float32))
    assert got.n_clusters == 0 and (got.labels == NOISE).all()
    assert ClusterConfig().resolved(17_033).min_cluster_size == 34
    assert ClusterConfig().resolved(40) == ClusterConfig(5, 10)
    assert ClusterConfig(min_cluster_size=100, min_samples=50).resolved(8) == ClusterConfig(8, 7)



def test_dbscan_finds_blobs_only_at_the_right_eps():
    x, truth = blobs(spread=0.02)
    labels = dbscan_labels(x, eps=0.05, min_samples=5)
    assert labels.max() + 1 == 3 and agreement(labels, truth)["ari"] == pytest.approx(1.0)
    assert (dbscan_labels(x, eps=1e-6, min_samples=5) == NOISE).all()  # too small: all noise
    assert (dbscan_labels(x, eps=1.5, min_samples=5) == 0).all()  # too large: one cluster



def test_dbscan_runs_from_one_graph_equal_a_search_per_eps():
    from sklearn.cluster import DBSCAN
    rng = np.random.default_rng(3)
    x, _ = blobs(spread=0.05)
    scattered = rng.normal(size=(40, x.shape[1]))
    scattered /= np.linalg.norm(scattered, axis=1, keepdims=True)
    x = np.vstack([x, scattered.astype(np.float32), x[:4], x[:4]])  # noise, borders, and duplicates (distance 0)
    grid = [0.03, 0.002, 0.01, 0.3, 0.08]  # in no order: the runs come back in the grid's
    runs = dbscan_runs(x, grid, min_samples=5)
    for eps, labels in zip(grid, runs):
        alone = DBSCAN(eps=eps, min_samples=5, metric="cosine", algorithm="brute").fit(x).labels_
        assert np.array_equal(labels, alone), eps
    assert len({int(r.max()) for r in runs}) > 2  # the grid spans all-noise to merged: the runs really differ
    empty = dbscan_runs(x[:0], grid)
    assert len(empty) == len(grid) and all(len(r) == 0 for r in empty)


def test_eps_grid_is_the_k_distance_quantiles():
    scores = np.tile(np.linspace(0.9, 0.5, 20, dtype=np.float32), (100, 1))
    scores[:, 9] = np.linspace(0.9, 0.7, 100)  # 10th neighbour at distance 0.1 .. 0.3
    grid = eps_grid(scores, min_samples=10, quantiles=(0.0, 0.5, 1.0))
    assert grid == pytest.approx([0.1, 0.2, 0.3], abs=1e-3)
    assert eps_grid(np.zeros((0, 5)), 10) == []



def test_agreement_by_hand():
    truth = np.array(["a", "a", "b", "b"])
    assert agreement(np.array([0, 0, 1, 1]), truth) == {"ari": 1.0, "ari_clustered": 1.0, "purity": 1.0}
    got = agreement(np.array([0, 0, 0, 1]), truth)  # cluster 0 holds a, a, b: 3 of 4 in their majority
    assert got["purity"] == pytest.approx(0.75)
    assert agreement(np.full(4, NOISE), truth) == {"ari": 0.0, "ari_clustered": 0.0, "purity": 0.0}
    partial = agreement(np.array([0, NOISE, 1, NOISE]), truth)  # noise counts as one group in "ari"
    assert partial["ari_clustered"] == 1.0 and partial["ari"] < 1.0
    attrs = pd.DataFrame({"pattern": truth, "colour": ["", "", "", ""]})
    assert label_agreement(np.array([0, 0, 1, 1]), attrs) == {"ari_pattern": 1.0, "ari_clustered_pattern": 1.0,
                                                              "purity_pattern": 1.0}



def synthetic_attributes(synthetic_catalog):
    return synthetic_catalog.products[synthetic_catalog.attribute_columns].astype(str).reset_index(drop=True)



def test_metadata_names_mention_the_true_colour_and_pattern(synthetic_catalog):
    attrs = synthetic_attributes(synthetic_catalog)
    groups = attrs["colour"] + "|" + attrs["pattern"]
    codes, uniques = pd.factorize(groups)
    names = metadata_names(codes, attrs)
    assert len(names) == len(uniques) and names["size"].sum() == len(attrs)
    for cluster, group in enumerate(uniques):
        colour, pattern = group.split("|")
        name = names.loc[cluster, "name"].lower()
        assert colour.lower() in name and pattern_phrase(pattern) in name, (name, group)
    assert names["name"].is_unique  # clusters sharing a name are told apart



def test_metadata_names_fall_back_when_nothing_dominates():
    attrs = pd.DataFrame({"product_type": ["Dress", "Skirt", "Top", "Trousers"] * 2,
                          "product_group": ["Garment upper body"] * 4 + ["Shoes"] * 4,
                          "colour": ["Black", "White", "Red", "Blue"] * 2})
    names = metadata_names(np.array([0, 0, 0, 0, 1, 1, 1, 1]), attrs)
    assert names.loc[0, "name"] == "Garment upper body"  # no type holds half: the broader group names it
    assert names.loc[1, "name"] == "Shoes"



def test_ctfidf_keywords_find_the_words_that_set_a_cluster_apart():
    sentences = ["red striped dress", "red striped skirt", "blue denim jeans", "blue denim shorts"]
    words = ctfidf_keywords(np.array([0, 0, 1, 1]), sentences, top=2)
    assert set(words[0]) == {"red", "striped"} and set(words[1]) == {"blue", "denim"}



def test_prompt_names_pick_the_nearest_prompt():
    prompts = {"colour": (["Red", "Blue"], np.eye(4, dtype=np.float32)[:2]),
               "pattern": (["Stripe", "Check"], np.eye(4, dtype=np.float32)[2:])}
    centres = np.array([[1, 0, 0, 1], [0, 1, 1, 0]], np.float32) / np.sqrt(2)
    assert prompt_names(centres, prompts) == ["Red checked", "Blue striped"]
    texts = prompt_texts(pd.DataFrame({"pattern": ["Stripe"] * 5 + ["Dot"]}), min_count=5)
    assert texts == {"pattern": (["Stripe"], ["a photo of a striped garment"])}


def siblings(colours: list[list[str]], sections: list[list[str]]) -> tuple[np.ndarray, pd.DataFrame]:
    """Clusters of denim trousers (the name they share) with the given colours and sections, one list each."""
    labels = np.concatenate([np.full(len(c), i) for i, c in enumerate(colours)])
    colour, section = sum(colours, []), sum(sections, [])
    return labels, pd.DataFrame({"product_type": "Trousers", "pattern": "Denim", "colour": colour,
                                 "section": section})


def test_siblings_get_the_colour_that_tells_them_apart():
    mixed = ["Blue", "Grey", "Red", "Green", "Beige", "Pink"]  # no colour holds half of a cluster
    labels, attrs = siblings([["Black"] * 4 + mixed, ["White"] * 4 + mixed, ["Blue"] * 4 + mixed[1:] + ["Red"]],
                             [["Divided"] * 10] * 3)
    names = metadata_names(labels, attrs)["name"].tolist()
    assert names == ["Denim trousers · black", "Denim trousers · white", "Denim trousers · blue"]


def test_siblings_get_the_section_when_colour_does_not_tell_them_apart():
    colours = ["Black", "White", "Blue", "Grey"] * 3
    labels, attrs = siblings([colours, colours, colours],
                             [["Divided"] * 9 + ["Men"] * 3, ["Men"] * 10 + ["Kids"] * 2, ["Kids"] * 12])
    names = metadata_names(labels, attrs)["name"].tolist()
    assert names == ["Denim trousers · Divided", "Denim trousers · Men", "Denim trousers · Kids"]


def test_siblings_alike_in_every_attribute_are_counted_in_words():
    colours = ["Black", "White", "Blue", "Grey"] * 3
    labels, attrs = siblings([colours, colours, ["Red"] * 12], [["Divided"] * 12] * 3)
    names = metadata_names(labels, attrs)["name"].tolist()
    # the red one is told apart by its colour; the two alike are numbered, with words, never a bare number
    assert names == ["Denim trousers (1 of 2)", "Denim trousers (2 of 2)", "Red denim trousers"]


def test_telling_values_compare_a_cluster_with_its_siblings_only():
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4)
    values = np.array(["a", "a", "a", "b"] + ["b"] * 4 + ["a"] * 4 + ["a", "b", "a", "a"])
    got = telling_values(labels, values, [0, 1])  # clusters 2 and 3 are no siblings here
    assert got == {0: ("a", 0.75), 1: ("b", 1.0)}
    assert telling_values(labels, values, [0, 3]) == {}  # alike: nothing tells them apart


def test_past_the_sample_limit_hdbscan_is_fitted_on_a_sample_and_predicts_the_rest():
    x, truth = blobs(200)
    reduced = umap_project(x, 5, 0.0, ProjectConfig(seed=0))
    cfg = ClusterConfig(min_cluster_size=60, min_samples=5)
    full = hdbscan_clusters(reduced, cfg, sample_limit=len(reduced))
    sampled = hdbscan_clusters(reduced, cfg, sample_limit=200, seed=1)
    assert sampled.labels.shape == (600,) and full.n_clusters == sampled.n_clusters == 3
    assert agreement(sampled.labels, truth)["ari_clustered"] == pytest.approx(1.0)
    assert agreement(sampled.labels, full.labels)["ari_clustered"] == pytest.approx(1.0)
    assert (sampled.soft_labels >= 0).all() and ((sampled.soft_strength >= 0) & (sampled.soft_strength <= 1)).all()
    clustered = sampled.labels != NOISE
    assert (sampled.soft_labels[clustered] == sampled.labels[clustered]).all()
    # a size asked for is in products of the whole: 150 of 600 (groups of 200) is 50 of the 200 sampled; taken as 150
    # of the sample (about 67 a group) it would find no three groups
    big = ClusterConfig(min_cluster_size=150, min_samples=5)
    assert hdbscan_clusters(reduced, big, sample_limit=200).n_clusters == 3
    assert hdbscan_clusters(reduced, big, sample_limit=600).n_clusters == 3
