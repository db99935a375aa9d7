"""The texture benchmark, run as ``python -m core bench texture``: every kind scored on the same held-out labels."""
from __future__ import annotations

from tests.test_cli import TINY, json_line, run_cli


def test_bench_texture_prints_the_issue_keys(tmp_path):
    got = run_cli(tmp_path / "cache", "bench", "texture", "--catalog", "synthetic:160", "--backbone", TINY)
    assert got.returncode == 0, got.stderr
    out = json_line(got.stdout)
    assert {"best_kind", "texture_features_s", "images_per_s", "naive_images_per_s"} <= set(out)
    assert {"photo", "texture", "sentence", "hybrid"} <= set(out["kinds"])
    for kind in ("photo", "texture"):
        got_kind = out["kinds"][kind]
        assert set(got_kind) == {"pattern_agreement_at_10", "pattern_agreement_chance", "pattern_sensitivity",
                                 "pair_auc", "probe_balanced_accuracy", "zero_shot_balanced_accuracy",
                                 "type_agreement_at_10"}
        assert 0 < got_kind["pattern_agreement_chance"] < 1 and 0 <= got_kind["pattern_agreement_at_10"] <= 1
        assert 0 <= got_kind["type_agreement_at_10"] <= 1 and 0 <= got_kind["pair_auc"] <= 1
    # every kind is measured against the same held-out labels, so they share one chance rate
    assert len({kind["pattern_agreement_chance"] for kind in out["kinds"].values()}) == 1
    # the product sentence names the pattern: it must agree on it above chance
    assert out["kinds"]["sentence"]["pattern_agreement_at_10"] > out["kinds"]["sentence"]["pattern_agreement_chance"]
    assert out["best_kind"] in out["kinds"] and out["texture_features_photos"] == 160
    assert out["images_per_s"] > 0 and out["naive_images_per_s"] > 0
