"""The recs benchmark reports training time, latency, memory and the reference workload."""
import pytest

from core.cache import ArtefactCache


RECS_KEYS = {"train_s", "peak_rss_mb", "known_customer_p50_ms", "known_customer_p99_ms", "new_customer_p50_ms",
             "new_customer_p99_ms", "n_products", "n_customers", "reference_s", "train_s_per_reference",
             "known_customer_p99_per_reference", "new_customer_p99_per_reference"}


def assert_ratio_of_rounded(ratio, seconds, reference):
    """``ratio`` (2 places) came from unrounded numbers (or from ``seconds`` as printed): ``seconds`` (3 places) and
    ``reference`` (4) may each be off by half a unit, so the ratio of the printed numbers may differ from it by that
    much carried through the division (to first order)."""
    slack = 0.005 + (0.0005 + 0.00005 * seconds / reference) / reference + 1e-9
    assert abs(ratio - seconds / reference) <= slack


def test_bench_recs_reports_training_latency_memory_and_the_reference(tiny_backbone, tmp_path):
    from core.bench.recs import bench_recs
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_recs("synthetic:60", tiny_backbone, cache, model="popularity", n_known=50, n_new=20)
    assert RECS_KEYS <= set(out)
    assert (out["n_products"], out["n_customers"], out["n_known_queries"]) == (60, 30, 50)
    assert 0 < out["known_customer_p50_ms"] <= out["known_customer_p99_ms"]
    assert 0 < out["new_customer_p50_ms"] <= out["new_customer_p99_ms"]
    assert out["reference_s"] > 0 and out["peak_rss_mb"] >= out["peak_rss_before_train_mb"] > 0
    assert_ratio_of_rounded(out["train_s_per_reference"], out["train_s"], out["reference_s"])


def test_bench_recs_reports_the_two_tower_keys(tiny_backbone, tmp_path):
    from core.bench.recs import bench_recs
    out = bench_recs("synthetic:120", tiny_backbone, ArtefactCache(tmp_path / "cache"), model="two_tower",
                     n_known=20, n_new=5)
    assert out["model"] == "two_tower" and out["two_tower_train_s"] == pytest.approx(out["model_train_s"], abs=1e-3)
    assert 0 < out["two_tower_query_p50_ms"] <= out["two_tower_query_p99_ms"] and out["two_tower_k"] == 100
    assert set(out["ann_layouts"]) == {"HNSW32 efSearch=64", "HNSW32 efSearch=128", "HNSW32 efSearch=256",
                                       "IVF3,Flat nprobe=1"}  # 120 products: 3 lists of at least 39
    layouts = out["ann_layouts"]
    good = [n for n, m in layouts.items() if m["recall_vs_exact"] >= 0.95]
    if good:  # the fastest good enough
        assert out["ann_layout"] in good
        assert layouts[out["ann_layout"]]["query_p99_ms"] == min(layouts[n]["query_p99_ms"] for n in good)
    else:
        assert out["ann_recall_vs_exact"] == max(m["recall_vs_exact"] for m in layouts.values())
    assert out["ann_recall_vs_exact"] == layouts[out["ann_layout"]]["recall_vs_exact"]
    assert_ratio_of_rounded(out["two_tower_train_s_per_reference"], out["two_tower_train_s"], out["reference_s"])


def test_bench_recs_trains_graphsage_in_a_scratch_cache(tiny_backbone, tmp_path):
    from core.bench.recs import bench_recs
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_recs("synthetic:60", tiny_backbone, cache, model="graphsage", n_known=20, n_new=5)
    assert RECS_KEYS <= set(out) and out["model"] == "graphsage"
    assert 0 < out["model_train_s"] <= out["train_s"]  # the fit, within fit + save + load
    assert not [e for e in cache.entries() if e.kind.startswith("recommender")]  # the real cache gets no model
