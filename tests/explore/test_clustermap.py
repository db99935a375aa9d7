"""The cluster map (projections, HDBSCAN, names, caching) and the DBSCAN comparison, on builds with known answers."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from core.cache import ArtefactCache
from core.data.catalog import ValidationReport, pattern_phrase
from core.data.load import load_catalog
from core.explore.cluster import NOISE, ClusterConfig
from core.explore.clustermap import MapConfig, best_dbscan, cluster_map, dbscan_comparison, dbscan_is_cached
from core.embeddings.index import IndexConfig, VectorIndex, neighbour_table
from core.embeddings.pipeline import KINDS, BuildConfig, BuildStats, Built, Embeddings, build


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
    # its version is part of the key (the backbone's own "version" used to overwrite it): a bump recomputes
    import core.explore.clustermap as clustermap
    clustermap_version = clustermap.DBSCAN_VERSION
    try:
        clustermap.DBSCAN_VERSION = clustermap_version + 1
        assert not dbscan_is_cached(patterned, cache, cmap)
    finally:
        clustermap.DBSCAN_VERSION = clustermap_version



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



def test_best_dbscan_is_the_dbscan_row_agreeing_best_with_product_type():
    comparison = pd.DataFrame({"method": ["HDBSCAN (UMAP)", "DBSCAN (raw)", "DBSCAN (raw)", "DBSCAN (raw)"],
                               "eps": [np.nan, 0.1, 0.2, 0.3], "ari_product_type": [0.9, 0.2, 0.6, 0.4]})
    best = best_dbscan(comparison)
    assert best["eps"] == 0.2 and best["ari_product_type"] == 0.6  # HDBSCAN's 0.9 is not a DBSCAN run
    assert best_dbscan(comparison.iloc[:1]) is None
    assert best_dbscan(comparison.drop(columns="ari_product_type")) is None


def test_cluster_names_are_keyed_by_the_naming_and_the_backbone(patterned, tmp_path):
    cache = ArtefactCache(tmp_path)
    cluster_map(patterned, cache, MapConfig(kind="hybrid"))
    (entry,) = [e for e in cache.entries() if e.kind == "cluster-names"]
    config = entry.meta["config"]
    # the backbone's own "version" must not overwrite the naming's: a new naming is a new artefact
    assert config["names"] == 3 and config.items() >= patterned.backbone.cache_config().items()
