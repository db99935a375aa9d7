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
    runs = [run_cli(cache, "build", "--catalog", "synthetic:40", "--backbone", TINY, "--eval-models", "popularity,content")
            for _ in range(2)]
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
    # after publishing, build warms what the pages open with: the hybrid map first, the other kinds last
    assert list(one["warm"]) == ["cluster map (hybrid)", "photo thumbnails", "DBSCAN comparison (hybrid)",
                                 "texture report",
                                 "evaluation (first, one seed)", "cluster map (image)", "cluster map (text)",
                                 "cluster map (texture)", "evaluation"]
    assert all(isinstance(seconds, float) for seconds in one["warm"].values()), one["warm"]  # none failed
    assert set(one["maps"]) == {"hybrid", "image", "text", "texture"}
    assert all(0 <= m["noise_fraction"] <= 1 for m in one["maps"].values())
    assert one["total_seconds"] >= one["seconds"]
    # build fits the served recommenders and publishes a version; the same content is the same version
    assert one["models"] == ["two_tower", "graphsage"] and one["version"] == two["version"]


def test_a_second_build_finds_the_warm_stages_cached(two_builds):
    from core.cache import ArtefactCache
    cache, first, second = two_builds
    kinds = [e.kind for e in ArtefactCache(cache).entries()]
    assert kinds.count("rec-eval") == 2 and kinds.count("texture-report") == 1  # computed once, then loaded
    # with the full evaluation cached, the quick first one is not made again
    assert list(json_line(second.stdout)["warm"]) == [k for k in json_line(first.stdout)["warm"]
                                                      if k != "evaluation (first, one seed)"]


def test_build_without_warm_up_publishes_and_stops(tmp_path):
    got = run_cli(tmp_path / "cache", "build", "--catalog", "synthetic:10", "--backbone", TINY, "--no-warm",
                  "--models", "")
    assert got.returncode == 0, got.stderr
    result = json_line(got.stdout)
    assert "warm" not in result and "maps" not in result and result["version"]
    from core.cache import ArtefactCache
    assert not {"rec-eval", "texture-report", "projection"} & {e.kind for e in ArtefactCache(tmp_path / "cache").entries()}


def test_build_rejects_an_unknown_model_to_evaluate_before_building(tmp_path):
    got = run_cli(tmp_path / "cache", "build", "--catalog", "synthetic:10", "--backbone", TINY,
                  "--eval-models", "content,nonsense")
    assert got.returncode != 0 and "unknown model(s) nonsense" in got.stderr and "Traceback" not in got.stderr
    assert not (tmp_path / "cache" / "rows").exists()  # stopped before embedding anything


def test_build_publishes_the_version_a_service_loads(two_builds):
    from core.cache import ArtefactCache
    from core.serve.release import current
    cache, first, _ = two_builds
    published = current(ArtefactCache(cache), "synthetic:40")
    assert published["version"] == json_line(first.stdout)["version"]
    assert published["models"] == ["two_tower", "graphsage"] and published["backbone"] == TINY
    assert current(ArtefactCache(cache), "synthetic:41") is None  # versions are per catalogue


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


# ---------------------------------------------------------------- recommendations

FLAT_KEYS = {"recall_at_10", "ndcg_at_10", "map_at_12", "hit_rate_at_10", "coverage_at_10", "sampled_recall_at_10",
             "recall_at_10_new_customers", "recall_at_10_sparse_customers", "recall_at_10_warm_customers",
             "recall_at_10_cold_items", "recall_at_10_warm_items", "recall_at_10_ci_low", "recall_at_10_ci_high",
             "ndcg_at_10_ci_low", "map_at_12_ci_high", "hit_rate_at_10_ci_low", "recall_at_10_cold_items_ci_low",
             "recall_at_10_excluding", "recall_at_10_including", "exclude_bought", "id_only", "train_s",
             "model_train_s", "validation_recall_at_10_excluding", "validation_recall_at_10_including",
             "seeds", "recall_at_10_seed_min", "recall_at_10_seed_max", "recall_at_10_cold_items_seed_min",
             "recall_at_10_cold_items_seed_max", "params", "new_customer_path", "verdict"}


@pytest.fixture
def shop(tmp_path) -> Path:
    """A generic catalogue with exact ground truth: product a is bought most (3 times), then b (2), then c;
    u4 is in users.csv and never bought anything; d, e, f were never bought."""
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "items.csv").write_text("item_id,title,colour\n" + "".join(
        f"{p},{title},{colour}\n" for p, title, colour in
        [("a", "Red dress", "red"), ("b", "Blue shirt", "blue"), ("c", "Black coat", "black"),
         ("d", "Red skirt", "red"), ("e", "White top", "white"), ("f", "Blue jeans", "blue")]))
    (folder / "interactions.csv").write_text(
        "user_id,item_id,timestamp\nu1,a,2020-01-01\nu1,b,2020-01-02\nu2,a,2020-01-03\nu2,b,2020-01-04\n"
        "u3,a,2020-01-05\nu3,c,2020-01-06\n")
    (folder / "users.csv").write_text("user_id,age\nu1,30\nu2,40\nu3,50\nu4,60\n")
    return folder


# evaluate runs in this process (the isolated cache of tests/conftest.py): a subprocess would spend ten
# seconds importing torch and PyG again; `recommend` below is run as a user runs it.
def test_evaluate_prints_the_split_and_every_models_flat_keys(capsys):
    from core.__main__ import main
    main(["evaluate", "--catalog", "synthetic:60", "--backbone", TINY, "--models", "popularity,content,als",
          "--seeds", "2"])
    out = json_line(capsys.readouterr().out)
    assert set(out) == {"split", "models", "paired", "coverage_ceiling", "new_customer_reference"}
    assert set(out["models"]) == {"popularity", "content", "als"}
    assert out["paired"]["reference"] in out["models"] and 0 < out["coverage_ceiling"] <= 1
    assert out["models"]["als"]["seeds"] == [0, 1] and out["models"]["content"]["seeds"] == []
    assert len(out["models"]["als"]["grid"]) > 1 and out["models"]["als"]["params"] in \
        [g["params"] for g in out["models"]["als"]["grid"]]
    split = out["split"]
    assert (split["cutoff"], split["end"], split["exclude_bought"]) == ("2020-04-01", "2020-07-01", "auto")
    assert split["train_purchases"] > 0 and split["test_customers"] > 0 and "validation" in split
    for name, metrics in out["models"].items():
        assert FLAT_KEYS <= set(metrics), (name, FLAT_KEYS - set(metrics))
        assert 0 <= metrics["recall_at_10"] <= 1 and metrics["id_only"] is (name == "als")


@pytest.mark.parametrize("args, message", [
    (["--models", "popularity,grafsage"], "unknown model(s) grafsage; choose from graphsage, two_tower, ranker, popularity"),
    (["--cutoff", "2020-13-45"], "--cutoff '2020-13-45' is not a date"),
    (["--cutoff", "2020-05-01", "--end", "2020-05-01"], "--end 2020-05-01 must be after --cutoff 2020-05-01"),
    (["--cutoff", "2021-01-01", "--end", "2021-02-01"], "no purchases between --cutoff 2021-01-01 and --end "
                                                        "2021-02-01"),
    (["--seeds", "0"], "--seeds 0 must be at least 1"),
])
def test_evaluate_rejects_bad_models_and_dates_with_one_line(args, message):
    from core.__main__ import main
    with pytest.raises(SystemExit) as exit_:  # sys.exit("error: ...") prints that one line and no traceback
        main(["evaluate", "--catalog", "synthetic:20", "--backbone", TINY, *args])
    assert str(exit_.value.code).startswith("error: ") and message in str(exit_.value.code)
    assert "\n" not in str(exit_.value.code)


def test_recommend_writes_k_ranked_products_for_every_customer(shop, tmp_path):
    import pandas as pd
    out = tmp_path / "recs.csv"
    got = run_cli(tmp_path / "cache", "recommend", "--catalog", str(shop), "--backbone", TINY,
                  "--model", "popularity", "--k", "4", "--out", str(out))
    assert got.returncode == 0, got.stderr
    summary = json_line(got.stdout)
    assert (summary["customers"], summary["rows"], summary["customers_without_purchases"]) == (4, 16, 1)
    assert summary["cutoff"] == "2020-01-07T00:00:00"  # the midnight after the last purchase: all of them count
    recs = pd.read_csv(out, dtype={"customer_id": str, "product_id": str})
    assert list(recs.columns) == ["customer_id", "product_id", "rank", "score"]
    assert sorted(recs["customer_id"].unique()) == ["u1", "u2", "u3", "u4"]  # u4 never bought anything
    assert not recs.duplicated(["customer_id", "rank"]).any()
    assert not recs.duplicated(["customer_id", "product_id"]).any()
    assert (recs.groupby("customer_id")["rank"].apply(list) == [[1, 2, 3, 4]] * 4).all()
    assert set(recs["product_id"]) <= set("abcdef")
    top = recs.set_index(["customer_id", "rank"])["product_id"]
    assert all(top[(c, 1)] == "a" and top[(c, 2)] == "b" for c in ["u1", "u2", "u3", "u4"])  # most bought first
    assert not list(tmp_path.glob(".recs.csv.*"))  # the temporary file was renamed


def test_recommend_for_listed_customers_excluding_bought(shop, tmp_path, capsys):
    import pandas as pd

    from core.__main__ import main
    listed = tmp_path / "customers.csv"
    listed.write_text("customer_id,segment\nu1,x\nnewcomer,y\nu4,z\n")
    out = tmp_path / "recs.csv"
    main(["recommend", "--catalog", str(shop), "--backbone", TINY, "--model", "popularity", "--k", "3",
          "--customers", str(listed), "--exclude-bought", "--out", str(out)])
    captured = capsys.readouterr()
    assert "1 customer id(s) not in the catalogue, recommended to as new customers: newcomer" in captured.err
    recs = pd.read_csv(out, dtype={"customer_id": str, "product_id": str})
    assert recs["customer_id"].drop_duplicates().tolist() == ["u1", "newcomer", "u4"]  # the file's order
    mine = recs.groupby("customer_id")["product_id"].apply(list)
    assert mine["u1"] == ["c", "d", "e"]  # a and b were u1's own purchases
    assert mine["newcomer"] == mine["u4"] == ["a", "b", "c"]


def test_bench_serve_loads_the_published_version_open_loop(two_builds, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(two_builds[0], cache)
    got = run_cli(cache, "bench", "serve", "--catalog", "synthetic:40", "--qps", "20", "--seconds", "2",
                  "--warmup", "0.5")
    assert got.returncode == 0, got.stderr
    out = json_line(got.stdout)
    assert out["server_started"] and out["version"] == json_line(two_builds[1].stdout)["version"]
    assert out["offered_qps"] == 20 and out["requests"] == 40 and out["errors"] == 0, out.get("error_examples")
    assert {"similar", "customer_recs", "search_text"} <= set(out["endpoints"])
    for numbers in out["endpoints"].values():
        assert 0 < numbers["p50_ms"] <= numbers["p90_ms"] <= numbers["p99_ms"] <= numbers["max_ms"]
    assert sum(e["count"] for e in out["endpoints"].values()) == 40
    assert "late_sends" in out and "achieved_qps" in out and out["reference_s"] > 0
    assert set(out["pinning"]) in ({"server", "generator"}, {"note"})


def test_bench_demo_prints_one_json_object_and_rejects_unknown_models(tmp_path):
    got = run_cli(tmp_path / "cache", "bench", "demo", "--catalog", "synthetic:60", "--backbone", TINY,
                  "--models", "popularity,content")
    assert got.returncode == 0, got.stderr
    out = json_line(got.stdout)
    assert out["models"] == ["popularity", "content"] and out["n_products"] == 60
    assert {"taste_overlap", "taste_fit", "added_product_rank", "seed", "seconds"} <= set(out)
    bad = run_cli(tmp_path / "cache", "bench", "demo", "--catalog", "synthetic:60", "--backbone", TINY,
                  "--models", "grafsage")
    assert bad.returncode != 0 and "unknown model(s) grafsage" in bad.stderr


def test_validate_reads_a_shop_export_file_and_a_named_format(tmp_path):
    from tests.data.test_exports import SHOPIFY_COLUMNS, rows_to_csv, shopify_rows
    export = tmp_path / "products_export_1.csv"
    closed = "http://127.0.0.1:9/"  # nothing listens: every photo fails fast, and is reported
    export.write_bytes(rows_to_csv(SHOPIFY_COLUMNS, shopify_rows()).replace(b"https://cdn.shopify.com/",
                                                                             closed.encode()))
    got = run_cli(tmp_path / "cache", "validate", "--catalog", str(export), "--include-drafts")
    assert got.returncode == 0, got.stderr
    assert "products_export_1 (shopify): {'products': 4," in got.stdout and "draft-scarf (draft)" in got.stdout
    assert "photos by URL: could not connect: 3" in got.stdout  # 3 products with a photo (the tote has none)
    odd = tmp_path / "odd.csv"
    odd.write_text("id,title\nA1,Shirt\n")
    assert "(merchant)" in run_cli(tmp_path / "cache", "validate", "--catalog", str(odd), "--format",
                                   "merchant").stdout
    refused = run_cli(tmp_path / "cache", "validate", "--catalog", str(odd))
    assert refused.returncode != 0 and "not an export Atelier knows" in refused.stderr


def test_export_writes_one_row_per_product_and_refuses_an_unknown_suffix(tmp_path):
    out = tmp_path / "shop.parquet"
    got = run_cli(tmp_path / "cache", "export", "--catalog", "synthetic:30", "--backbone", TINY, "--out", str(out))
    assert got.returncode == 0, got.stderr
    summary = json_line(got.stdout)
    assert summary["rows"] == 30 and "embedding_hybrid" in summary["columns"] and out.is_file()
    bad = run_cli(tmp_path / "cache", "export", "--catalog", "synthetic:30", "--out", str(tmp_path / "shop.xlsx"))
    assert bad.returncode != 0 and "parquet or .csv" in bad.stderr and "Traceback" not in bad.stderr
