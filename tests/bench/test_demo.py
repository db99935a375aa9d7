"""The demo benchmark measures each model on the default split."""
from core.cache import ArtefactCache


def test_bench_demo_measures_each_model_on_the_default_split(tiny_backbone, tmp_path):
    from core.bench.demo import bench_demo
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
