"""Projection, clustering, names and the cluster map, on synthetic vectors with known groups."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from core.cache import ArtefactCache
from core.data.catalog import ValidationReport, pattern_phrase
from core.data.load import load_catalog
from core.explore.cluster import (NOISE, ClusterConfig, agreement, ctfidf_keywords, dbscan_labels, eps_grid, hdbscan_clusters,
                          label_agreement, metadata_names, prompt_names, prompt_texts)
from core.explore.clustermap import MapConfig, cluster_map, dbscan_comparison, dbscan_is_cached
from core.embeddings.index import IndexConfig, VectorIndex, neighbour_table
from core.embeddings.pipeline import KINDS, BuildConfig, BuildStats, Built, Embeddings, build
from core.explore.projection import ProjectConfig, knn_from_table, umap_project


def blobs(n_per: int = 100, k: int = 3, d: int = 32, spread: float = 0.05, seed: int = 0):
    """k well-separated unit-norm blobs: vectors (k * n_per, d) and their true labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(d)[:k]
    truth = np.repeat(np.arange(k), n_per)
    x = centres[truth] + spread * rng.standard_normal((len(truth), d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), truth


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


def test_umap_uses_a_precomputed_neighbour_table():
    x, truth = blobs(60)
    index = VectorIndex(x, np.arange(len(x)).astype(str), IndexConfig())
    table = neighbour_table(index, x, 20)
    idx, dist = knn_from_table(table["rows"], table["scores"], 15)
    assert idx.shape == (180, 15) and (idx[:, 0] == np.arange(180)).all() and (dist[:, 0] == 0).all()
    assert (np.diff(dist, axis=1) >= -1e-6).all()  # nearest first
    xy = umap_project(x, 2, 0.1, ProjectConfig(), knn=(idx, dist))
    got = hdbscan_clusters(xy, ClusterConfig(min_cluster_size=15, min_samples=5))
    assert got.n_clusters == 3 and agreement(got.labels, truth)["ari_clustered"] > 0.95


def test_knn_from_table_fills_missing_neighbours_with_self():
    rows = np.array([[1, -1], [0, -1]])
    idx, dist = knn_from_table(rows, np.array([[0.9, 0.0], [0.9, 0.0]], np.float32), 3)
    assert idx.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert dist[:, 2].tolist() == [0, 0] and dist[0, 1] == pytest.approx(0.1)


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


def built_with(catalog, backbone, vectors: np.ndarray) -> Built:
    """A Built whose every kind is ``vectors`` (n, d): clusters with a known answer."""
    ids = catalog.products.index.to_numpy(dtype=str)
    emb = Embeddings(ids, vectors, vectors, np.ones(len(ids), bool))
    indexes = {k: VectorIndex(vectors, ids, IndexConfig()) for k in KINDS}
    tables = {k: neighbour_table(indexes[k], vectors, 50) for k in KINDS}
    return Built(catalog, backbone, BuildConfig(), emb, indexes, tables, BuildStats(), ValidationReport())


@pytest.fixture(scope="module")
def patterned(tmp_path_factory, tiny_backbone):
    """200 synthetic products whose embeddings separate their four patterns, and its Built."""
    from core.data.synthetic import make_catalog
    catalog = make_catalog(200, seed=1, image_dir=tmp_path_factory.mktemp("synthetic-200"))
    codes, _ = pd.factorize(catalog.products["pattern"])
    rng = np.random.default_rng(0)
    x = np.eye(tiny_backbone.dim)[codes] + 0.05 * rng.standard_normal((len(codes), tiny_backbone.dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return built_with(catalog, tiny_backbone, x)


def test_cluster_map_names_synthetic_clusters_by_their_pattern(patterned, tmp_path):
    cmap = cluster_map(patterned, ArtefactCache(tmp_path), MapConfig(kind="hybrid"))
    products = patterned.catalog.products
    assert cmap.scores["n_clusters"] == 4
    assert cmap.scores["ari_clustered_pattern"] == pytest.approx(1.0)
    assert cmap.scores["purity_pattern"] == 1.0
    for cluster, row in cmap.clusters.iterrows():
        pattern = products.loc[cmap.members(cluster)[0], "pattern"]
        assert pattern_phrase(pattern) in row["name"].lower(), row["name"]
    assert cmap.clusters["prompt_name"].str.len().gt(0).all()  # the tiny model's text tower names them too
    assert cmap.clusters["keywords"].str.len().gt(0).all()
    assert cmap.xy.shape == (200, 2) and np.isfinite(cmap.xy).all()


def test_cluster_map_is_cached_per_setting(patterned, tmp_path, monkeypatch):
    cache = ArtefactCache(tmp_path)
    first = cluster_map(patterned, cache, MapConfig())
    import core.explore.clustermap

    def no_umap(*a, **k):
        raise AssertionError("UMAP ran again on a warm cache")
    monkeypatch.setattr(core.explore.clustermap, "umap_project", no_umap)
    again = cluster_map(patterned, cache, MapConfig())
    assert (again.clustering.labels == first.clustering.labels).all() and np.allclose(again.xy, first.xy)
    other = cluster_map(patterned, cache, MapConfig(cluster=ClusterConfig(min_cluster_size=60, min_samples=5)))
    assert other.config == ClusterConfig(60, 5)  # a new HDBSCAN setting reuses the projections
    kinds = {e.kind for e in cache.entries()}
    assert {"projection", "clusters"} <= kinds
    with pytest.raises(ValueError, match="unknown embedding kind"):
        cluster_map(patterned, cache, MapConfig(kind="colour"))


def test_frame_export_and_soft_membership(patterned, tmp_path):
    cmap = cluster_map(patterned, ArtefactCache(tmp_path), MapConfig())
    products = patterned.catalog.products
    noisy = dataclasses.replace(cmap, clustering=dataclasses.replace(
        cmap.clustering, labels=np.where(np.arange(200) < 10, NOISE, cmap.clustering.labels)))
    hard, soft = noisy.frame(products), noisy.frame(products, soft=True)
    assert (hard["assigned"] == "noise").sum() == 10 and (hard.loc[:9, "cluster_name"] == "noise").all()
    assert (soft.loc[:9, "assigned"] == "soft").all() and (soft.loc[:9, "cluster"] >= 0).all()
    assert hard.loc[10:, "assigned"].eq("cluster").all()
    export = noisy.export(products)
    assert list(export.columns) == ["product_id", "cluster_id", "cluster_name", "x", "y", "assigned", "membership"]
    assert len(export) == 200 and set(export["product_id"]) == set(products.index)
    assert (export.loc[:9, "cluster_id"] == NOISE).all()
    members = noisy.members(int(noisy.clustering.labels[50]), soft=True)
    assert set(members) == set(soft.loc[soft["cluster"] == noisy.clustering.labels[50], "product_id"])


def test_dbscan_comparison_rows_and_cache(patterned, tmp_path):
    cache = ArtefactCache(tmp_path)
    cmap = cluster_map(patterned, cache, MapConfig())
    assert not dbscan_is_cached(patterned, cache, cmap)
    table = dbscan_comparison(patterned, cache, cmap)
    assert dbscan_is_cached(patterned, cache, cmap)
    assert table["method"].tolist()[0] == "HDBSCAN (UMAP)" and len(table) >= 2
    assert table.loc[0, "ari_product_type"] == cmap.scores["ari_product_type"]
    assert (table["noise_fraction"].between(0, 1)).all()
    assert table.iloc[1:]["eps"].is_monotonic_increasing
    assert table.equals(dbscan_comparison(patterned, cache, cmap))


def test_cluster_map_of_a_real_build(synthetic_catalog, tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path)
    built = build(synthetic_catalog, tiny_backbone, cache)
    for kind in KINDS:
        cmap = cluster_map(built, cache, MapConfig(kind=kind))
        assert len(cmap.ids) == 60 and cmap.xy.shape == (60, 2)
        assert 0 <= cmap.scores["noise_fraction"] <= 1


@pytest.mark.integration
def test_cluster_map_on_real_hm_sample(hm_dir, tiny_backbone, tmp_path):
    catalog = load_catalog(hm_dir, limit=300)
    cache = ArtefactCache(tmp_path)
    built = build(catalog, tiny_backbone, cache)
    cmap = cluster_map(built, cache, MapConfig(kind="text"))
    assert {"ari_product_type", "purity_colour", "purity_pattern"} <= set(cmap.scores)
    export = cmap.export(catalog.products)
    assert len(export) == 300 and export["product_id"].isin(catalog.products.index).all()
    assert cmap.clusters["name"].is_unique


def test_a_catalogue_too_small_to_cluster_is_all_noise(tiny_backbone, tmp_path):
    from core.data.synthetic import make_catalog
    catalog = make_catalog(3, seed=0, image_dir=tmp_path / "photos")
    cache = ArtefactCache(tmp_path / "cache")
    built = build(catalog, tiny_backbone, cache)
    cmap = cluster_map(built, cache, MapConfig())
    assert cmap.scores["n_clusters"] == 0 and cmap.scores["noise_fraction"] == 1.0
    assert cmap.clusters.empty and (cmap.export(catalog.products)["cluster_name"] == "noise").all()
    table = dbscan_comparison(built, cache, cmap)
    assert len(table) >= 1 and table["method"].iloc[0] == "HDBSCAN (UMAP)"
