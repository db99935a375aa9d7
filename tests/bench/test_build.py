"""The build benchmark times a cold build into an empty cache of its own, stage by stage, and removes it."""
from core.bench.build import StageClock, bench_build
from core.cache import ArtefactCache
from core.embeddings.pipeline import BuildConfig

NO_TEXTURE = BuildConfig(texture=None)  # the texture kind runs the EfficientNet tower: seconds more, nothing new here


def test_bench_build_times_a_cold_build_and_leaves_nothing_behind(tiny_backbone, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    first = bench_build("synthetic:40", tiny_backbone, cfg=NO_TEXTURE, root=scratch)
    assert first["n_items"] == 40 and first["images_embedded"] == 40 and first["texts_embedded"] == 40
    assert first["kinds"] == ["image", "text", "hybrid"]
    assert {"prepare", "fingerprint", "images", "texts", "index_image", "index_hybrid"} <= set(first["steps_s"])
    stages = first["stages"]
    assert {"embedding photos", "embedding text", "indexing"} <= set(stages)
    assert stages["embedding photos"]["total"] == 40 and stages["indexing"]["total"] == 3
    for s in stages.values():
        assert 0 <= s["first_s"] <= s["last_s"] <= first["total_s"] + 0.01
        assert abs(s["seconds"] - (s["last_s"] - s["first_s"])) < 0.02
    assert sum(first["steps_s"].values()) <= first["total_s"] + 0.05
    assert first["reference_s"] > 0
    # the ratio is taken before rounding: total_s (2 decimals) and reference_s (4) may each be off by half a unit
    ratio, total, ref = first["total_per_reference"], first["total_s"], first["reference_s"]
    assert abs(ratio - total / ref) <= 0.05 + (0.005 + 0.00005 * total / ref) / ref + 1e-9
    assert list(scratch.iterdir()) == []  # the temporary cache is gone
    # nothing went into the default cache either: the next run is as cold as this one
    assert not ArtefactCache().root.exists() or not any(ArtefactCache().root.rglob("*.npz"))


def test_stage_clock_keeps_first_and_last_report_per_stage():
    clock = StageClock()
    clock("image features", 0, 10)
    clock("text features", 5, 20)
    clock("image features", 10, 10)
    table = clock.table()
    assert list(table) == ["image features", "text features"]  # in the order they started
    assert table["image features"]["total"] == 10 and table["text features"]["total"] == 20
    assert table["image features"]["first_s"] <= table["text features"]["first_s"] <= table["image features"]["last_s"]
    assert table["text features"]["seconds"] == 0
