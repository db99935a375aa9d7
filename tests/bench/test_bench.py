"""The benchmarks report the keys other tools read, with numbers that mean what they say."""
import numpy as np
import pytest

from core.bench.benchmarks import bench_embed, bench_search
from core.cache import ArtefactCache
from core.embeddings.index import IndexConfig
from core.embeddings.pipeline import BuildConfig


def test_bench_embed_counts_exactly_the_new_products(tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_embed("synthetic:120", tiny_backbone, cache, sample=32, naive_sample=8)
    assert {"images_per_s", "naive_images_per_s", "warm_rebuild_s", "incremental_embedded", "runtime",
            "reference_s", "warm_rebuild_s_per_reference", "images_per_reference"} <= set(out)
    assert out["runtime"] == "torch" and out["reference_s"] > 0  # an open_clip backbone: encode_images
    assert out["first_build_images_embedded"] == 120
    assert out["warm_rebuild_images_embedded"] == 0
    assert out["incremental_embedded"] == 100 and out["incremental_texts_embedded"] == 100
    # the benchmark's new products went to a scratch copy, not into the real cache
    assert bench_embed("synthetic:120", tiny_backbone, cache, sample=8, naive_sample=2)["incremental_embedded"] == 100


def test_featurisation_rates_time_both_paths_on_the_same_photos(synthetic_catalog, tmp_path):
    from core.bench.benchmarks import featurisation_rates
    paths = synthetic_catalog.products["image_path"].tolist()
    out = featurisation_rates(paths, naive_sample=3, sample=12, cache=ArtefactCache(tmp_path / "cache"))
    assert out["runtime"] == "onnxruntime" and out["runtime_note"] == ""
    assert (out["throughput_sample"], out["naive_sample"]) == (12, 3)
    assert min(out["images_per_s"], out["naive_images_per_s"], out["naive_one_thread_images_per_s"]) > 0
    assert abs(out["speedup_vs_naive"] / (out["images_per_s"] / out["naive_images_per_s"]) - 1) < 0.05


def test_bench_search_reports_latencies_and_recall(tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    keys = {"n_items", "product_p50_ms", "product_p99_ms", "text_p99_ms", "photo_p99_ms"}
    out = bench_search("synthetic:120", tiny_backbone, cache, n_product=50, n_text=5, n_photo=5)
    assert keys <= set(out) and out["n_items"] == 120
    assert 0 < out["product_p50_ms"] <= out["product_p99_ms"]
    hnsw = bench_search("synthetic:120", tiny_backbone, cache, n_product=50, n_text=5, n_photo=5,
                        cfg=BuildConfig(index=IndexConfig(factory="HNSW32")))
    assert hnsw["recall_at_k_vs_exact"] >= 0.9


def test_bench_cluster_reports_the_issue_keys(tiny_backbone, tmp_path):
    from core.bench.benchmarks import bench_cluster
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_cluster("synthetic:120", tiny_backbone, cache, kind="image")
    assert {"total_s", "n_clusters", "noise_fraction", "ari_product_type", "dbscan_best_ari_product_type",
            "purity_product_type", "purity_colour", "purity_pattern", "umap_map_s", "umap_cluster_s",
            "hdbscan_s"} <= set(out)
    assert out["products"] == 120 and 0 <= out["noise_fraction"] <= 1
    assert out["total_s"] >= out["umap_map_s"] + out["umap_cluster_s"] + out["hdbscan_s"]
    assert not {e.kind for e in cache.entries()} & {"projection", "clusters", "dbscan"}  # measured cold, elsewhere


RECS_KEYS = {"train_s", "peak_rss_mb", "known_customer_p50_ms", "known_customer_p99_ms", "new_customer_p50_ms",
             "new_customer_p99_ms", "n_products", "n_customers", "reference_s", "train_s_per_reference",
             "known_customer_p99_per_reference", "new_customer_p99_per_reference"}


def test_bench_recs_reports_training_latency_memory_and_the_reference(tiny_backbone, tmp_path):
    from core.bench.benchmarks import bench_recs
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_recs("synthetic:60", tiny_backbone, cache, model="popularity", n_known=50, n_new=20)
    assert RECS_KEYS <= set(out)
    assert (out["n_products"], out["n_customers"], out["n_known_queries"]) == (60, 30, 50)
    assert 0 < out["known_customer_p50_ms"] <= out["known_customer_p99_ms"]
    assert 0 < out["new_customer_p50_ms"] <= out["new_customer_p99_ms"]
    assert out["reference_s"] > 0 and out["peak_rss_mb"] >= out["peak_rss_before_train_mb"] > 0
    assert abs(out["train_s_per_reference"] - out["train_s"] / out["reference_s"]) < 0.01


def test_ann_recall_by_hand():
    from core.bench.benchmarks import ann_recall
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approximate = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])  # 2 of 4, then 4 of 4
    assert ann_recall(exact, approximate) == pytest.approx(0.75)


def test_bench_recs_reports_the_two_tower_keys(tiny_backbone, tmp_path):
    from core.bench.benchmarks import bench_recs
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
    per_reference = out["two_tower_train_s"] / out["reference_s"]
    assert out["two_tower_train_s_per_reference"] == pytest.approx(per_reference, abs=0.01)


def test_bench_recs_trains_graphsage_in_a_scratch_cache(tiny_backbone, tmp_path):
    from core.bench.benchmarks import bench_recs
    cache = ArtefactCache(tmp_path / "cache")
    out = bench_recs("synthetic:60", tiny_backbone, cache, model="graphsage", n_known=20, n_new=5)
    assert RECS_KEYS <= set(out) and out["model"] == "graphsage"
    assert 0 < out["model_train_s"] <= out["train_s"]  # the fit, within fit + save + load
    assert not [e for e in cache.entries() if e.kind.startswith("recommender")]  # the real cache gets no model


def test_bench_demo_measures_each_model_on_the_default_split(tiny_backbone, tmp_path):
    from core.bench.benchmarks import bench_demo
    from core.recs.demo import DemoConfig
    cache = ArtefactCache(tmp_path / "cache")
    demo = DemoConfig(n_pairs=20, n_customers=20, n_added=4, max_buyers=10)
    out = bench_demo("synthetic:120", tiny_backbone, cache, models=("popularity", "content", "two_tower"), demo=demo)
    assert (out["cutoff"], out["seed"], out["n_products"], out["k"]) == ("2020-04-01", 0, 120, 12)
    assert (out["taste_pairs"], out["taste_customers"], out["added_products"]) == (20, 20, 4)
    assert set(out["taste_overlap"]) == set(out["taste_fit"]) == {"popularity", "content", "two_tower"}
    assert out["taste_overlap"]["popularity"] > 0.7  # the same bestsellers for everyone, bar what they liked
    assert out["taste_overlap"]["content"] < out["taste_overlap"]["popularity"]
    assert all(0 <= v <= 1 for v in [*out["taste_overlap"].values(), *out["taste_fit"].values()])
    assert set(out["added_product_rank"]) == {"two_tower"}  # the only one that places products outside the catalogue
    added = out["added_product_rank"]["two_tower"]
    assert 0 <= added["median_rank"] < 120 and 0 <= added["share_under"] <= 1 and 1 <= added["n_products"] <= 4
    assert out["seconds"] >= sum(out["seconds_per_model"].values())
    # fitted through the artefact cache as the evaluation fits it: the trained towers are stored
    assert [e.kind for e in cache.entries() if e.kind.startswith("recommender")] == ["recommender-two_tower"]
