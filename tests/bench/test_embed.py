"""The embed benchmark reports the keys other tools read, with numbers that mean what they say."""
from core.bench.embed import bench_embed
from core.cache import ArtefactCache


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
    from core.bench.embed import featurisation_rates
    paths = synthetic_catalog.products["image_path"].tolist()
    out = featurisation_rates(paths, naive_sample=3, sample=12, cache=ArtefactCache(tmp_path / "cache"))
    assert out["runtime"] == "onnxruntime" and out["runtime_note"] == ""
    assert (out["throughput_sample"], out["naive_sample"]) == (12, 3)
    assert min(out["images_per_s"], out["naive_images_per_s"], out["naive_one_thread_images_per_s"]) > 0
    assert abs(out["speedup_vs_naive"] / (out["images_per_s"] / out["naive_images_per_s"]) - 1) < 0.05
