"""UMAP projection from vectors or from a precomputed neighbour table, on blobs with known groups."""
from __future__ import annotations

import numpy as np
import pytest

from core.embeddings.index import IndexConfig, VectorIndex, neighbour_table
from core.explore.cluster import ClusterConfig, agreement, hdbscan_clusters
from core.explore.projection import ProjectConfig, knn_from_table, umap_project
from tests.vectors import blobs


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



def test_umap_runs_the_layout_epochs_asked_for(monkeypatch):
    import umap
    seen = []
    fit_embed = umap.UMAP._fit_embed_data

    def spy(self, *args, **kwargs):
        seen.append(self.n_epochs)
        return fit_embed(self, *args, **kwargs)

    monkeypatch.setattr(umap.UMAP, "_fit_embed_data", spy)
    x, _ = blobs(20)
    few, default = umap_project(x, 2, 0.1, n_epochs=5), umap_project(x, 2, 0.1)
    assert seen == [5, None] and few.shape == default.shape == (60, 2)
    assert not np.allclose(few, default)  # 5 epochs are not UMAP's default 500


def test_knn_from_table_fills_missing_neighbours_with_self():
    rows = np.array([[1, -1], [0, -1]])
    idx, dist = knn_from_table(rows, np.array([[0.9, 0.0], [0.9, 0.0]], np.float32), 3)
    assert idx.tolist() == [[0, 1, 0], [1, 0, 1]]
    assert dist[:, 2].tolist() == [0, 0] and dist[0, 1] == pytest.approx(0.1)


def test_past_the_sample_limit_umap_is_fitted_on_a_sample_and_places_the_rest():
    from core.explore.projection import sample_rows
    x, truth = blobs(200)  # 600 points in three groups
    cfg = ProjectConfig(sample_limit=150)
    xy = umap_project(x, 2, 0.0, cfg)
    assert xy.shape == (600, 2) and np.isfinite(xy).all()
    rows = sample_rows(600, 150, cfg.seed)
    assert len(rows) == 150 and len(np.unique(rows)) == 150
    placed = np.setdiff1d(np.arange(600), rows)
    # a placed point lands among the sampled points of its own group: its nearest sampled point is of that group
    nearest = rows[np.argmin(((xy[placed, None, :] - xy[None, rows, :]) ** 2).sum(-1), axis=1)]
    assert (truth[nearest] == truth[placed]).mean() > 0.95
    got = hdbscan_clusters(xy, ClusterConfig(min_cluster_size=30, min_samples=5))
    assert got.n_clusters == 3 and agreement(got.labels, truth)["ari_clustered"] > 0.95


def test_a_sample_too_small_to_place_by_is_refused():
    with pytest.raises(ValueError, match="sample_limit"):
        ProjectConfig(sample_limit=20)
    with pytest.raises(ValueError, match="sample_limit"):
        hdbscan_clusters(np.zeros((50, 2), np.float32), ClusterConfig(min_samples=10), sample_limit=10)
