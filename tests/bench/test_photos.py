"""The photos-by-URL benchmark: every planted defect counted as planted, nothing downloaded the second time."""
import numpy as np

from core.bench import photos as bench
from core.data import load
from core.data.photofetch import FetchConfig, PhotoFetcher


def test_bench_photos_counts_the_planted_defects_and_downloads_nothing_twice(monkeypatch):
    quick = FetchConfig(read_s=0.5, timeout_attempts=1)
    monkeypatch.setattr(load, "PhotoFetcher", lambda: PhotoFetcher(cfg=quick))
    out = bench.bench_photos(n=100, stall_s=2.0)
    assert set(out["kinds"]) == {"shopify", "woocommerce", "merchant-tsv", "merchant-xml"}
    for kind, got in out["kinds"].items():
        assert got["products"] == 100 and got["with_photo"] == 95, kind
        assert got["failures_as_planted"], (kind, got["failures_counted"])
        assert got["first"]["downloads"] >= 95 and got["second"]["downloads"] == 0, kind
        assert got["first"]["most_at_once"] >= 2, kind
    assert out["reference_s"] > 0


def test_bench_photos_builds_the_feed_twice_on_request(monkeypatch, tmp_path):
    from core.bench.photos import PhotoServer, build_twice, plant, write_exports
    paths, _ = plant(30, 0)
    server = PhotoServer({p: bench._photo(np.random.default_rng(i)) for i, p in enumerate(paths)
                          if p.startswith("/ok/")}, delay=0.0, stall_s=0.5)
    try:
        monkeypatch.setenv("ATELIER_OFFLINE", "1")
        files = write_exports(tmp_path, [server.url + p.replace("/stall/", "/missing/") for p in paths])
        runs = build_twice(files["merchant-tsv"], tmp_path / "cache", server)
    finally:
        server.close()
    assert runs["first"]["returncode"] == 0 and runs["second"]["returncode"] == 0, runs
    assert runs["first"]["downloads"] >= 25 and runs["second"]["downloads"] == 0
    assert '"images_embedded": 0' in runs["second"]["summary"]
