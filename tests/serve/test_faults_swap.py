"""A version swap under load: loading a new version never holds up the requests of the one being served
(issue 20, defect 5), and ``bench serve --publish-during`` reports the swap window apart."""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import types

import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI

from core import cache as cache_module
from core.cache import DIGEST_SLICE, ArtefactCache, digest
from core.recs.graph import GraphConfig, content_edges, variant_edges
from core.embeddings.index import VectorIndex, neighbour_table
from core.bench.loadtest import another_version, load
from core.bench.workload import Call, LoadConfig
from core.recs.contract import RecData
from core.recs.registry import FINGERPRINT_ROWS, data_fingerprint
from core.serve.release import current, prepare, publish
from core.serve.service import Service, ServiceConfig

SPEC = "synthetic:40:0"
TINY = "random:atelier-tiny"


def _rec_data(n: int = 1000, n_customers: int = 300) -> RecData:
    """A catalogue whose products' text is wide (a long description-like column), as H&M's is."""
    rng = np.random.default_rng(0)
    products = pd.DataFrame({"title": [f"product {i}" for i in range(n)],
                             "colour": rng.choice(["black", "white", "navy blue"], n),
                             "details": ["lined, " * int(k) for k in rng.integers(1, 40, n)],
                             "image_path": ""}, index=pd.Index([f"p{i}" for i in range(n)], name="product_id"))
    customers = pd.DataFrame({"age": rng.integers(18, 80, n_customers).astype(str)},
                             index=pd.Index([f"c{i}" for i in range(n_customers)], name="customer_id"))
    purchases = pd.DataFrame({"customer_id": ["c1", "c2"], "product_id": ["p1", "p2"],
                              "timestamp": pd.to_datetime(["2020-01-01", "2020-01-02"]), "price": [1.0, 2.0]})
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return RecData(products, customers, purchases, pd.Timestamp("2020-02-01"), vectors, vectors, np.ones(n, bool))


@pytest.mark.faults
def test_fingerprinting_a_version_has_no_long_step_that_holds_the_gil(monkeypatch):
    """The stall: a service loading a new version computes the data's fingerprint, which converted every
    product to text in one call and hashed the result (740 MB on H&M) in another; a C call keeps the GIL
    throughout, so every request waited 2-3 s. Both now go in bounded steps, to the same fingerprint."""
    data = _rec_data()
    attrs = data.products.drop(columns=["image_path", "description"], errors="ignore").to_numpy(dtype=str)
    prices = data.purchases["price"].to_numpy(np.float64)
    one_shot = digest(data.product_ids, data.customer_ids, attrs, data.customers.to_numpy(dtype=str), data.items,
                      data.users, data.days_ago, prices, str(data.cutoff), data.image, data.text,
                      float(data.hybrid_weight))
    assert attrs.nbytes > 2 * DIGEST_SLICE and len(attrs) > 2 * FINGERPRINT_ROWS  # both steps matter here

    updates: list[int] = []
    converted: list[int] = []

    class Spy:
        def __init__(self, **kw):
            self.h = hashlib.blake2b(**kw)

        def update(self, data) -> None:
            updates.append(memoryview(data).nbytes)
            self.h.update(data)

        def hexdigest(self) -> str:
            return self.h.hexdigest()

    to_numpy = pd.DataFrame.to_numpy

    def spy_to_numpy(frame, *args, **kw):
        converted.append(len(frame))
        return to_numpy(frame, *args, **kw)

    monkeypatch.setattr(cache_module, "hashlib", types.SimpleNamespace(blake2b=Spy))
    monkeypatch.setattr(pd.DataFrame, "to_numpy", spy_to_numpy)
    assert data_fingerprint(data) == one_shot  # the same versions and cache keys as before
    assert max(updates) <= DIGEST_SLICE
    assert max(converted) <= FINGERPRINT_ROWS


def test_content_edges_are_the_unique_pairs_in_order():
    """content_edges deduplicates through one int64 key per edge instead of np.unique along an axis (which
    holds the GIL): the same edges in the same order."""
    rng = np.random.default_rng(1)
    for n in (2, 50, 700):
        vectors = rng.normal(size=(n, 16)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        groups = rng.integers(0, max(1, n // 3), n).astype(str)
        cfg = GraphConfig()
        table = neighbour_table(VectorIndex(vectors, np.arange(n)), vectors, cfg.content_k)
        ok = (table["rows"] >= 0) & (table["scores"] >= cfg.min_content_sim)
        variants = variant_edges(groups, cfg.variant_cap)
        pairs = np.stack([np.concatenate([table["rows"][ok].astype(np.int64), variants[0]]),
                          np.concatenate([np.repeat(np.arange(n), ok.sum(1)), variants[1]])])
        expected = np.unique(pairs, axis=1)
        expected = expected[:, expected[0] != expected[1]]
        got = content_edges(vectors, groups, cfg)
        assert got.dtype == np.int64 and np.array_equal(got, expected)


@pytest.mark.faults
def test_the_watcher_loads_new_versions_below_the_serving_threads(tmp_path):
    """Once a version serves, the watcher that loads the next one runs at the lowest priority: on a busy
    core the load waits, not the requests (before, it competed with the event loop as an equal)."""
    cache = ArtefactCache(tmp_path / "cache")
    publish(cache, prepare(SPEC, backbone=TINY, cache=cache).manifest)
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0.05), cache)
    serving = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    service.start()
    try:
        deadline = time.monotonic() + 120
        while service.release is None:
            assert service.load_error is None and time.monotonic() < deadline, service.load_error
            time.sleep(0.05)
        first = service.release.version
        second = another_version(current(cache, SPEC))  # the recommenders in the other order: all cached
        publish(cache, second)
        while service.release.version == first:
            assert time.monotonic() < deadline, "the new version was never swapped in"
            time.sleep(0.05)
        assert service.release.version == second["version"]
        watcher = os.getpriority(os.PRIO_PROCESS, service._watcher.native_id)
        assert watcher == min(19, serving + service.cfg.swap_nice) and (watcher > serving or serving == 19)
    finally:
        service.stop()


def _versioned_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.get("/lookup")
    async def lookup():
        return {"version": state["version"], "results": []}

    return app


def test_publish_during_reports_the_swap_window_apart():
    state = {"version": "v-old"}
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_versioned_app(state), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the app did not start"
            time.sleep(0.01)

        def publish_new() -> str:
            state["version"] = "v-new"
            return "v-new"

        cfg = LoadConfig(qps=50.0, seconds=4.0, warmup_s=0.2, arrivals="uniform", timeout_s=5.0)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        result = load(url, lambda rng: Call("lookup", "GET", "/lookup"), cfg, (1.0, publish_new))
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()
    swap = result["swap"]
    assert (swap["old_version"], swap["new_version"]) == ("v-old", "v-new")
    assert 1.0 <= swap["published_at_s"] <= swap["first_new_answer_s"] < swap["window_end_s"] <= 4.0
    assert swap["window_end_s"] == pytest.approx(swap["first_new_answer_s"] + 2.0, abs=1e-3)
    # the window: about 1 s to 3 s of 4 s, at 50 requests a second; every request is in one part or the other
    assert swap["window"]["requests"] + swap["rest"]["requests"] == result["requests"] == 200
    assert 80 <= swap["window"]["requests"] <= 120 and swap["window"]["errors"] == swap["rest"]["errors"] == 0
    assert set(swap["p99_ratio_window_to_rest"]) == {"lookup"}


@pytest.mark.faults
def test_a_version_loads_with_the_garbage_collector_paused_and_is_frozen_after(monkeypatch):
    """A full cyclic collection walks every tracked object holding the GIL (0.4 s with two H&M versions in
    memory); set off by a load's allocations, it stalled every request. None runs while a version loads,
    and what is alive afterwards is frozen, so later collections do not walk the served version again."""
    import gc

    from core.serve import release as release_module
    seen = {}

    def fake_prepare(*args, **kw):
        seen["enabled_during_load"] = gc.isenabled()
        return types.SimpleNamespace(version="v1", manifest={})

    monkeypatch.setattr(release_module, "prepare", fake_prepare)
    assert gc.isenabled()
    gc.unfreeze()
    try:
        loaded = release_module.load({"version": "v1", "catalog": SPEC, "limit": None, "backbone": TINY,
                                      "build": {"index": {}}, "models": []}, backbone=None)
        assert loaded.version == "v1" and seen["enabled_during_load"] is False
        assert gc.isenabled() and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
