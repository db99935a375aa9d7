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
