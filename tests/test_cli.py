"""Tests of the command line, ``python -m core``, run as a user runs it: in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY = "random:atelier-tiny"


def run_cli(cache: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ATELIER_CATALOG"}
    env |= {"ATELIER_CACHE": str(cache), "ATELIER_OFFLINE": "1", **(extra_env or {})}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    """The same build run twice against one cache: (cache dir, first run, second run)."""
    cache = tmp_path_factory.mktemp("cli") / "cache"
    runs = [run_cli(cache, "build", "--catalog", "synthetic:40", "--backbone", TINY) for _ in range(2)]
    return cache, runs[0], runs[1]


def test_build_then_rebuild(two_builds):
    _, first, second = two_builds
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    one, two = json_line(first.stdout), json_line(second.stdout)
    assert one["products"] == 40 and one["backbone"] == TINY and one["weights"] == "random"
    assert (one["images_embedded"], one["texts_embedded"]) == (40, 40)
    assert (two["images_embedded"], two["texts_embedded"]) == (0, 0)
    assert "RANDOM" in first.stderr  # random weights are never silent
    assert set(one["maps"]) == {"hybrid", "image", "text"}  # build also maps and clusters every kind
    assert all(0 <= m["noise_fraction"] <= 1 for m in one["maps"].values())


def test_build_caches_the_maps_and_the_comparison(two_builds):
    cache = two_builds[0]
    kinds = {p.parent.name for p in cache.rglob("*.npz")} | {p.name for p in cache.iterdir()}
    assert {"projection", "clusters", "dbscan"} <= kinds


def test_bench_cluster_prints_one_json_object(tmp_path):
    got = run_cli(tmp_path / "cache", "bench", "cluster", "--catalog", "synthetic:60", "--backbone", TINY,
                  "--min-cluster-size", "7", "--min-samples", "3")
    assert got.returncode == 0, got.stderr
    out = json_line(got.stdout)
    assert out["products"] == 60 and out["kind"] == "hybrid"
    assert (out["min_cluster_size"], out["min_samples"]) == (7, 3)
    assert {"total_s", "n_clusters", "noise_fraction", "ari_product_type", "dbscan_best_ari_product_type"} <= set(out)


def test_cache_ls_and_clear(two_builds, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(two_builds[0], cache)  # a copy: the other tests keep theirs
    listed = run_cli(cache, "cache", "ls")
    assert listed.returncode == 0, listed.stderr
    assert "neighbours" in listed.stdout and "rows/image" in listed.stdout and "rows/text" in listed.stdout
    assert str(cache) in listed.stdout

    cleared = run_cli(cache, "cache", "clear")
    assert cleared.returncode == 0, cleared.stderr
    assert "removed" in cleared.stdout
    assert not list(cache.rglob("*.npz"))
    after = run_cli(cache, "cache", "ls")
    assert after.returncode == 0 and after.stdout.strip().splitlines()[-1].startswith("0 artefact file(s)")


@pytest.mark.parametrize("case", ["missing id column", "no such folder"])
def test_validate_bad_folder_fails_with_one_line(tmp_path, case):
    folder = tmp_path / "shop"
    if case == "missing id column":
        folder.mkdir()
        (folder / "items.csv").write_text("sku,title\n1,Red dress\n")
        named = str(folder / "items.csv")
    else:
        named = str(folder)
    got = run_cli(tmp_path / "cache", "validate", "--catalog", str(folder))
    assert got.returncode != 0
    lines = got.stderr.strip().splitlines()
    assert len(lines) == 1, got.stderr
    assert lines[0].startswith("error: ") and named in lines[0]
    assert "Traceback" not in got.stderr


def test_validate_prints_the_report(tmp_path):
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "items.csv").write_text("item_id,title,image\na,Red dress,missing.png\nb,Blue shirt,\n")
    got = run_cli(tmp_path / "cache", "validate", "--catalog", str(folder))
    assert got.returncode == 0, got.stderr
    assert "'products': 2" in got.stdout and "missing or empty image files: 2" in got.stdout


def test_build_without_pretrained_weights_fails_with_the_reason(tmp_path):
    got = run_cli(tmp_path / "cache", "build", "--catalog", "synthetic:10", "--backbone",
                  "openclip:ViT-B-32/laion2b_s34b_b79k",
                  extra_env={"HF_HUB_CACHE": str(tmp_path / "empty-hf-cache")})
    assert got.returncode != 0
    assert "Traceback" not in got.stderr
    (error,) = [line for line in got.stderr.splitlines() if line.startswith("error: ")]
    assert "openclip:ViT-B-32/laion2b_s34b_b79k" in error
    assert "pretrained weights could not be loaded" in error
    assert "ATELIER_OFFLINE" in error and "Fix:" in error
    assert "{" not in got.stdout  # no result printed


def test_build_rejects_an_unknown_map_kind(tmp_path):
    got = run_cli(tmp_path / "cache", "build", "--catalog", "synthetic:10", "--backbone", TINY,
                  "--map-kinds", "hybrid,colour")
    assert got.returncode == 2 and "unknown kind(s) colour" in got.stderr and "Traceback" not in got.stderr
