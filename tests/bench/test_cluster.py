"""The cluster benchmark reports the issue's keys, measured in a cold scratch cache."""
from core.cache import ArtefactCache


def test_bench_cluster_reports_the_issue_keys(tiny_backbone, tmp_path):
    from core.bench.cluster import bench_cluster
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_cluster("synthetic:120", tiny_backbone, cache, kind="image")
    assert {"total_s", "n_clusters", "noise_fraction", "ari_product_type", "dbscan_best_ari_product_type",
            "purity_product_type", "purity_colour", "purity_pattern", "umap_map_s", "umap_cluster_s",
            "hdbscan_s"} <= set(out)
    assert out["products"] == 120 and 0 <= out["noise_fraction"] <= 1
    assert out["total_s"] >= out["umap_map_s"] + out["umap_cluster_s"] + out["hdbscan_s"]
    assert not {e.kind for e in cache.entries()} & {"projection", "clusters", "dbscan"}  # measured cold, elsewhere
