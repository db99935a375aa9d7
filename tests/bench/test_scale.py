"""The scaling benchmark: synthetic features shaped like a catalogue's, each stage timed in a process of its own."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.bench.scale import bench_scale, growth_exponent, run_stage, synthetic_features


def test_synthetic_features_are_unit_rows_with_near_neighbours():
    x, types = synthetic_features(4000, 64, seed=3)
    assert x.shape == (4000, 64) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    again, again_types = synthetic_features(4000, 64, seed=3)
    np.testing.assert_array_equal(x, again)
    np.testing.assert_array_equal(types, again_types)
    sims = x[:500] @ x.T
    sims[np.arange(500), np.arange(500)] = -1
    top = -np.sort(-sims, axis=1)
    # groups of variants: a near neighbour well above the typical pair, and the 50th still above it
    assert top[:, 0].mean() > 0.6 and top[:, 49].mean() > np.median(sims) + 0.2
    assert np.median(sims) < 0.2
    # the types are the structure: rows of one type are closer than rows of two (10 types of about 400 rows)
    assert types.shape == (4000,) and len(np.unique(types)) == 10
    same = types[:500, None] == types[None, :]
    assert sims[same & (sims > -1)].mean() > sims[~same].mean() + 0.2


def test_growth_exponent_of_a_power_law():
    assert growth_exponent([10, 100, 1000], [2 * n ** 1.5 for n in (10, 100, 1000)]) == pytest.approx(1.5)
    assert growth_exponent([1000, 10_000], [3.0, 3.0]) == pytest.approx(0.0)
    assert growth_exponent([1000], [3.0]) is None
    assert growth_exponent([1000, 10_000], [0.0, 3.0]) is None  # too quick to time says nothing


def test_each_stage_is_timed_in_a_process_of_its_own_and_leaves_nothing(tmp_path):
    out = bench_scale([400, 800], ["neighbour table"], root=str(tmp_path))
    assert out["sizes"] == [400, 800] and out["mode"].startswith("features-only") and out["reference_s"] > 0
    assert list(out["stages"]) == ["neighbour table"]  # it needs no other stage
    runs = out["stages"]["neighbour table"]
    for n in ("400", "800"):
        assert runs[n]["index"] == "Flat" and runs[n]["recall_at_10"] == 1.0  # exact at this size
        assert runs[n]["seconds"] >= 0 and runs[n]["peak_rss_mb"] >= runs[n]["rss_at_start_mb"] > 0
    assert "exponent" in runs and "exponent_last" in runs
    assert list(tmp_path.iterdir()) == []  # the scratch folders are gone


def test_a_stage_out_of_time_is_reported_and_what_needs_it_is_not_run(tmp_path, monkeypatch):
    from core.bench import scale
    assert run_stage("index", Path(tmp_path), 400, timeout_s=0.01) == {"failed": "not done after 0 s"}
    out = bench_scale([400], ["clustering"], timeout_s=0.01, root=str(tmp_path))
    assert out["features"]["400"] == {"failed": "not done after 0 s"}
    assert all(runs["400"] == {"failed": "needs features"} for runs in out["stages"].values())
    ran = []

    def stage(name, scratch, n, timeout_s):  # the neighbour table fails, the rest would succeed
        ran.append(name)
        return {"failed": "killed (out of memory?)"} if name == "neighbour table" else {"seconds": 1.0}
    monkeypatch.setattr(scale, "run_stage", stage)
    stages = bench_scale([400], ["clustering"], root=str(tmp_path))["stages"]
    assert list(stages) == ["neighbour table", "projection 10-D", "clustering"]
    assert ran == ["features", "neighbour table"]
    assert stages["neighbour table"]["400"] == {"failed": "killed (out of memory?)"}
    assert stages["projection 10-D"]["400"] == {"failed": "needs neighbour table"}
    assert stages["clustering"]["400"] == {"failed": "needs projection 10-D"}
    assert stages["clustering"]["exponent"] is None


def test_unknown_stages_are_named():
    with pytest.raises(ValueError, match="unknown stage"):
        bench_scale([400], ["neighbours"])


def test_the_simulated_shop_buys_mostly_within_each_customers_taste():
    from core.bench.scale import synthetic_catalogue
    from core.bench.scale_shop import CUSTOMERS_PER_PRODUCT, TASTE_SHARE, synthetic_shop
    _, types, groups = synthetic_catalogue(8000, 16, seed=2)
    products, customers, purchases = synthetic_shop(types, groups, seed=1)
    assert len(products) == 8000 and len(customers) == round(8000 * CUSTOMERS_PER_PRODUCT)
    assert len(purchases) == 8000 and purchases["timestamp"].is_monotonic_increasing
    assert set(purchases["customer_id"]) <= set(customers.index) and set(purchases["product_id"]) <= set(products.index)
    # variants share a group and a type
    assert (products.groupby("group_id")["product_type"].nunique() == 1).all()
    # each customer's commonest product type holds about TASTE_SHARE of their purchases (the rest is anything)
    bought = purchases.join(products["product_type"], on="product_id")
    share = bought.groupby("customer_id")["product_type"].agg(lambda t: t.value_counts().iloc[0] / len(t))
    assert TASTE_SHARE - 0.1 < share.mean() < TASTE_SHARE + 0.15
    # a few bestsellers and a long tail, as in a real catalogue: many products are never bought
    counts = purchases["product_id"].value_counts()
    assert counts.iloc[0] > 20 * counts.median() and products.index.isin(counts.index).mean() < 0.7


def test_every_registered_recommender_has_a_fit_stage():
    from core.bench.scale import STAGES
    from core.bench.scale_shop import RECOMMENDERS
    from core.recs.registry import MODELS
    assert RECOMMENDERS == MODELS and all(f"fit {name}" in STAGES for name in MODELS)


def test_the_stages_that_learn_from_purchases_run_on_the_shop(tmp_path):
    out = bench_scale([600], ["graph", "fit popularity", "fit lightgcn", "evaluation scoring",
                              "evaluation scoring by index"], root=str(tmp_path))
    stages = out["stages"]
    assert list(stages) == ["shop", "graph", "fit popularity", "fit lightgcn", "evaluation scoring",
                            "evaluation scoring by index"]
    assert stages["shop"]["600"]["customers"] == 50 and stages["shop"]["600"]["purchases"] == 600
    assert "exponent" not in stages["shop"]  # setup, not a stage of a build
    assert stages["graph"]["600"]["purchase_edges"] > 0 and stages["graph"]["600"]["content_edges"] >= 600 * 9
    assert stages["fit lightgcn"]["600"]["purchases"] > 0
    scoring, by_index = stages["evaluation scoring"]["600"], stages["evaluation scoring by index"]["600"]
    assert scoring["model"] == "content" and 0 < scoring["test_customers"] == scoring["window_customers"] <= 50
    assert scoring["batch"] == 256 and scoring["lists_from"] == "every score" and scoring["test_pairs"] > 0
    assert by_index["model"] == "two_tower" and by_index["lists_from"] == "index"
    assert by_index["test_customers"] == scoring["test_customers"] and by_index["test_pairs"] == scoring["test_pairs"]
    assert all(r["600"]["seconds"] >= 0 for r in stages.values())
    assert list(tmp_path.iterdir()) == []


def test_the_heads_and_the_texture_model_run_on_synthetic_features(tmp_path):
    out = bench_scale([800], ["heads", "texture model"], root=str(tmp_path))
    heads, texture = out["stages"]["heads"]["800"], out["stages"]["texture model"]["800"]
    assert heads["pairs"] == 800 * 3 and heads["epochs"] >= 1 and heads["seconds"] > 0
    assert texture["descriptor_dim"] == 860 and sum(texture["weights"]) == pytest.approx(1.0)
    # the descriptors carry the pattern the vectors do not see: the chosen weights find more of it
    assert texture["pattern_agreement"] > texture["photo_pattern_agreement"]


def test_synthetic_texture_descriptors_carry_their_group_s_pattern():
    from core.bench.scale import PATTERNS, TEXTURE_DIM, synthetic_catalogue, synthetic_descriptors
    from core.embeddings.lit.descriptor import descriptor_dim
    assert TEXTURE_DIM == descriptor_dim()  # named, not imported: its module loads torch
    _, _, groups = synthetic_catalogue(2000)
    descriptors, patterns = synthetic_descriptors(groups)
    assert descriptors.shape == (2000, 860) and (descriptors >= 0).all() and set(patterns) <= set(PATTERNS)
    assert all(len(set(patterns[groups == g])) == 1 for g in np.unique(groups)[:50])  # variants share a pattern
    assert (patterns == "solid").mean() > 0.4  # most are plain


def test_featurisation_runs_on_the_catalogue_s_own_photos_from_an_empty_store(tmp_path):
    (tmp_path / "scratch").mkdir()
    out = bench_scale([], ["photo features", "sentence features"], root=str(tmp_path / "scratch"),
                      photo_sizes=[12, 24, 200], catalogue="synthetic:40")
    assert out["stages"] == {} and out["features"] == {}  # no features-only stage asked for
    real = out["featurisation"]
    assert real["catalogue"] == "synthetic:40" and real["products_with_photo"] == 40 and real["sizes"] == [12, 24, 200]
    assert real["towers"]["image_runtime"] == real["towers"]["text_runtime"] == "onnxruntime"  # exported first
    photos, sentences = real["stages"]["photo features"], real["stages"]["sentence features"]
    from core.bench.scale_photos import CATALOGUE_FILE, sampled_catalogue
    from core.cache import file_digest
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / CATALOGUE_FILE).write_text("synthetic:40")
    for n in (12, 24):
        # every product through the tower each time (the store was emptied of the last size's rows); a sentence
        # or photo two products share, once
        sample = sampled_catalogue(tmp_path / "spec", n).products
        assert photos[str(n)]["featurised"] == len({file_digest(p) for p in sample["image_path"]})
        assert sentences[str(n)]["featurised"] == sample["sentence"].nunique()
        assert photos[str(n)]["output_mb"] == pytest.approx(n * (1280 + 860) * 4 / 2 ** 20, abs=0.05)
        assert sentences[str(n)]["output_mb"] == pytest.approx(n * 384 * 4 / 2 ** 20, abs=0.05)
        assert photos[str(n)]["per_s"] > 0 and photos[str(n)]["peak_rss_mb"] > photos[str(n)]["rss_loaded_mb"] > 0
        assert photos[str(n)]["peak_reset"] and sentences[str(n)]["peak_reset"]  # counted from the loaded towers
        for stage in (photos, sentences):  # traced through the featurisation's own progress ticks
            assert 0 < stage[str(n)]["held_trace"][0][0] <= n
    assert photos["200"] == {"failed": "the catalogue has 40 products with a photo"}
    assert photos["exponent"] is not None and sentences["exponent_last"] is not None
    assert list((tmp_path / "scratch").iterdir()) == []


def test_a_sampled_catalogue_keeps_products_with_a_photo_in_catalogue_order(tmp_path):
    from core.bench.scale_photos import CATALOGUE_FILE, sampled_catalogue
    from core.data.load import load_catalog
    (tmp_path / CATALOGUE_FILE).write_text("synthetic:30")
    full = load_catalog("synthetic:30").products
    sample = sampled_catalogue(tmp_path, 10).products
    assert len(sample) == 10 and (sample["image_path"] != "").all()
    rows = full.index.get_indexer(sample.index)
    assert (rows >= 0).all() and (np.diff(rows) > 0).all()
    assert sampled_catalogue(tmp_path, 10).products.index.equals(sample.index)  # seeded
    assert set(sample.index) <= set(sampled_catalogue(tmp_path, 20).products.index)  # a larger size holds it
    with pytest.raises(ValueError, match="30 with a photo"):
        sampled_catalogue(tmp_path, 31)


def test_sizes_are_read_with_thousands_separators_and_refused_when_not_numbers():
    from core.bench.scale import _sizes
    assert _sizes("2_000, 20000", 1, "--photo-sizes") == [2000, 20000] and _sizes("", 1) == []
    for bad in ("2000,abc", "0", "50"):
        with pytest.raises(SystemExit, match="--photo-sizes takes .* at least 100 .*got"):
            _sizes(bad, 100, "--photo-sizes")


def test_featurisation_stages_need_photo_sizes():
    with pytest.raises(ValueError, match="photo features.*none were given"):
        bench_scale([400], ["neighbour table", "photo features"])


def test_the_peak_rss_restarts_from_what_is_loaded():
    from core.bench.measure import own_peak_rss_mb, reset_peak_rss
    big = np.ones(50_000_000 // 8)  # 50 MB, then freed: the peak keeps it until reset
    del big
    now, reset = reset_peak_rss()
    assert reset and own_peak_rss_mb() < now + 20


def _traced(monkeypatch, rss_at, ticks=range(256, 8193, 256), total=8192) -> dict:
    """A HeldTrace of 256-column rows (1 KB each) fed ``ticks``, the RSS then being ``rss_at(done)``; before each, a
    tick of another stage, 512 further on and 1 GB higher, which it must ignore."""
    from core.bench import scale_photos
    done = [0]
    trace = scale_photos.HeldTrace(100.0, 256, "image features", every=1024)
    for tick in ticks:
        done[0] = tick + 512
        monkeypatch.setattr(scale_photos, "current_rss_mb", lambda: rss_at(done[0]) + 1000)
        trace("text features", done[0], total)
        done[0] = tick
        monkeypatch.setattr(scale_photos, "current_rss_mb", lambda: rss_at(done[0]))
        trace("image features", tick, total)
    return trace.summary()


def test_what_a_stage_holds_beyond_its_filled_rows_is_traced_as_it_goes(monkeypatch):
    # the rows filled so far (done KB) are the output, not held; 50 MB on top stays 50 MB however far it gets
    streams = _traced(monkeypatch, lambda done: 100.0 + 50.0 + done / 1024)
    assert [d for d, _ in streams["held_trace"]] == [256, 1280, 2304, 3328, 4352, 5376, 6400, 7424, 8192]  # + the end
    assert streams["held_first_mb"] == streams["held_last_mb"] == 50.0
    assert streams["held_growth_mb_per_1000"] == pytest.approx(0.0, abs=1e-6)
    # a stage keeping 20 KB more per row than its output grows by 20 MB per 1,000 rows (1,000 x 20 KB = 19.5 MB)
    leaks = _traced(monkeypatch, lambda done: 100.0 + 50.0 + done / 1024 + done * 20 / 1024)
    assert leaks["held_growth_mb_per_1000"] == pytest.approx(1000 * 20 / 1024, rel=0.01)
    assert leaks["held_last_mb"] > leaks["held_first_mb"] + 100


def test_the_growth_is_fitted_on_the_second_half_and_a_repeated_tick_keeps_the_later(monkeypatch):
    # 300 MB taken once early on (a bounded step) is no growth in the second half
    step = _traced(monkeypatch, lambda done: 100.0 + done / 1024 + (300.0 if done > 1500 else 0.0))
    assert step["held_first_mb"] == 0.0 and step["held_last_mb"] == 300.0
    assert step["held_growth_mb_per_1000"] == pytest.approx(0.0, abs=1e-6)
    # a chunk's last tick comes twice, before and after its rows land (here 64 MB more before): the later one stays
    rss = {1024: [164.0 + 1.0, 100.0 + 1.0], 2048: [164.0 + 2.0, 100.0 + 2.0]}
    twice = _traced(monkeypatch, lambda done: rss[done].pop(0) if done in rss else 0.0,
                    ticks=[1024, 1024, 2048, 2048], total=2048)
    assert twice["held_trace"] == [[1024, 0.0], [2048, 0.0]] and twice["held_growth_mb_per_1000"] == 0.0


def test_a_trace_of_one_point_has_no_growth(monkeypatch):
    from core.bench import scale_photos
    monkeypatch.setattr(scale_photos, "current_rss_mb", lambda: 130.0)
    trace = scale_photos.HeldTrace(100.0, 256, "text features")
    assert trace.summary() == {}
    trace("text features", 12, 12)
    assert trace.summary() == {"held_first_mb": 30.0, "held_last_mb": 30.0, "held_growth_mb_per_1000": None,
                               "held_trace": [[12, 30.0]]}
