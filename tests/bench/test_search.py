"""The search benchmark reports latencies, and an approximate index's recall against exact search."""
from core.bench.search import bench_search
from core.cache import ArtefactCache
from core.embeddings.index import IndexConfig
from core.embeddings.pipeline import BuildConfig


def test_bench_search_reports_latencies_and_recall(tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    keys = {"n_items", "product_p50_ms", "product_p99_ms", "text_p99_ms", "photo_p99_ms"}
    out = bench_search("synthetic:120", tiny_backbone, cache, n_product=50, n_text=5, n_photo=5)
    assert keys <= set(out) and out["n_items"] == 120
    assert 0 < out["product_p50_ms"] <= out["product_p99_ms"]
    hnsw = bench_search("synthetic:120", tiny_backbone, cache, n_product=50, n_text=5, n_photo=5,
                        cfg=BuildConfig(index=IndexConfig(factory="HNSW32")))
    assert hnsw["recall_at_k_vs_exact"] >= 0.9
