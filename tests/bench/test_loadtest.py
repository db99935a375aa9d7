"""The open-loop load generator against a tiny in-process FastAPI app, and serve_and_load around it."""
from __future__ import annotations

import asyncio
import itertools
import os
import socket
import sys
import tempfile
import textwrap
import threading
import time
import uuid

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Request

from core.bench import loadtest
from core.bench.loadtest import load, serve_and_load
from core.bench.workload import MIX, Call, LoadConfig

MODELS = ["graphsage", "two_tower"]


def _tiny_app() -> FastAPI:
    app = FastAPI()
    stalled: set[str] = set()

    @app.get("/ok")
    async def ok():
        return {"ok": True}

    @app.get("/slow")
    async def slow():
        await asyncio.sleep(0.1)
        return {}

    @app.get("/stall/{key}")
    async def stall(key: str):
        # The first request for a key blocks the event loop itself for 0.5 s: nothing else is served meanwhile.
        if key not in stalled:
            stalled.add(key)
            time.sleep(0.5)
        return {}

    @app.get("/fail")
    async def fail():
        raise HTTPException(500, "boom")

    @app.get("/gone")
    async def gone():
        raise HTTPException(404, "no such product")

    @app.get("/readyz")
    async def readyz():
        return {"status": "ready", "version": "tiny-1"}

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def anything(path: str, request: Request):
        # Stands in for the service's endpoints: reads the body (JSON or a multipart upload) and answers 200.
        await request.body()
        return {"path": path}

    return app


@pytest.fixture(scope="module")
def url():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_tiny_app(), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the tiny app did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)
    sock.close()


def _quick(**kw) -> LoadConfig:
    return LoadConfig(**({"qps": 50.0, "seconds": 1.0, "warmup_s": 0.0, "arrivals": "uniform", "timeout_s": 5.0}
                         | kw))


def _same(path: str, name: str = "ok"):
    return lambda rng: Call(name, "GET", path)


# ---------------------------------------------------------------- the open loop

def test_counts_and_rates_against_a_healthy_app(url):
    names = itertools.cycle(["a", "b", "c"])
    result = load(url, lambda rng: Call(next(names), "GET", "/ok"), _quick(seconds=1.0, warmup_s=0.2))
    assert result["requests"] == 50 and result["warmup_requests"] == 10
    assert result["offered_qps"] == 50.0
    assert 45 <= result["achieved_qps"] <= 55
    assert result["errors"] == 0 and result["error_examples"] == []
    assert sum(e["count"] for e in result["endpoints"].values()) == result["requests"]
    assert set(result["endpoints"]) == {"a", "b", "c"}
    assert result["late_sends"] < result["requests"] / 2  # a loaded test machine may be a little late
    for e in result["endpoints"].values():
        assert 0 < e["p50_ms"] <= e["p90_ms"] <= e["p99_ms"] <= e["max_ms"]


def test_poisson_run_sends_exactly_its_plan(url):
    result = load(url, _same("/ok"), _quick(arrivals="poisson", seconds=0.6, seed=1))
    assert result["requests"] == 30 and result["offered_qps"] == 50.0
    assert 40 <= result["achieved_qps"] <= 60 and result["errors"] == 0


def test_latency_counts_from_the_planned_time(url):
    result = load(url, _same("/slow", "slow"), _quick(qps=20.0, seconds=0.6))
    assert result["endpoints"]["slow"]["p50_ms"] >= 100


def test_a_stall_is_charged_to_every_request_planned_during_it(url):
    """No coordinated omission: while the app's loop is blocked for 0.5 s, the generator keeps sending; the
    ~25 fast requests planned meanwhile wait for the rest of the stall. A closed-loop generator would have
    held them back and measured only their own (millisecond) service time."""
    key = uuid.uuid4().hex
    first = iter([True])
    result = load(url, lambda rng: Call("stall", "GET", f"/stall/{key}") if next(first, False)
                  else Call("fast", "GET", "/ok"), _quick(seconds=1.0))
    fast = result["endpoints"]["fast"]
    assert result["endpoints"]["stall"]["count"] == 1 and fast["count"] == 49
    assert fast["max_ms"] >= 400
    assert fast["p90_ms"] >= 200  # about half the fast requests were planned during the stall


def test_a_stall_of_the_generator_is_charged_too(url):
    """The generator's own loop blocks for 0.3 s once: the sends planned meanwhile go out late, are counted
    as late, and their latency still runs from their planned time."""
    drawn = itertools.count()

    def next_call(rng):
        if next(drawn) == 10:
            time.sleep(0.3)
        return Call("ok", "GET", "/ok")

    result = load(url, next_call, _quick(seconds=0.6))
    assert result["late_sends"] >= 10 and result["max_send_lag_ms"] >= 250
    assert result["endpoints"]["ok"]["max_ms"] >= 250
    assert "did not keep up" in result["warnings"][0]


def test_errors_are_counted_with_examples(url):
    paths = itertools.cycle([("ok", "/ok"), ("fail", "/fail"), ("gone", "/gone")])

    def next_call(rng):
        name, path = next(paths)
        return Call(name, "GET", path)

    result = load(url, next_call, _quick(qps=30.0, seconds=0.6))
    ep = result["endpoints"]
    assert ep["ok"]["errors"] == 0
    assert ep["fail"]["errors"] == ep["fail"]["count"] == 6 and ep["gone"]["errors"] == ep["gone"]["count"] == 6
    assert result["errors"] == 12
    assert sorted(result["error_examples"]) == ["fail: HTTP 500", "gone: HTTP 404"]


def test_exceptions_are_errors():
    with socket.socket() as closed:  # bound, never listening: connections are refused at once
        closed.bind(("127.0.0.1", 0))
        result = load(f"http://127.0.0.1:{closed.getsockname()[1]}", _same("/ok"), _quick(qps=20.0, seconds=0.5))
    assert result["requests"] == result["errors"] == 10 and result["achieved_qps"] == 0.0
    assert result["error_examples"] == ["ok: ConnectionRefusedError"]


# ---------------------------------------------------------------- serve_and_load

@pytest.fixture
def quick_reference(monkeypatch):
    """The reference timing (seconds of matmuls) is not under test here."""
    monkeypatch.setattr(loadtest, "reference_s", lambda: 0.05)


def test_serve_and_load_against_a_running_service(url, quick_reference):
    cfg = _quick(seconds=0.8, warmup_s=0.2)
    result = serve_and_load("synthetic:60:0", cfg, url=url, models=MODELS)
    assert result["url"] == url and result["server_started"] is False and result["version"] == "tiny-1"
    assert result["reference_s"] == 0.05 and result["config"]["qps"] == 50.0 and "note" in result["pinning"]
    assert result["requests"] == 40 and result["errors"] == 0, result["error_examples"]
    assert set(result["endpoints"]) <= set(MIX) and result["mix"] == pytest.approx(MIX, abs=1e-4)


TINY_SERVICE = """
import sys, uvicorn
from fastapi import FastAPI
app = FastAPI()

@app.get("/readyz")
async def readyz():
    return {"version": "sub-1"}

@app.api_route("/{path:path}", methods=["GET", "POST"])
async def anything(path: str):
    return {}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_serve_and_load_starts_pins_and_stops_the_service(tmp_path, monkeypatch, quick_reference):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the service's log goes
    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(TINY_SERVICE))
    started = []

    def command(catalog, port):
        started.append(port)
        return [sys.executable, str(script), str(port)]

    monkeypatch.setattr(loadtest, "server_command", command)
    before = os.sched_getaffinity(0)
    result = serve_and_load("synthetic:60:0", _quick(seconds=0.5), ready_timeout_s=30)
    assert result["server_started"] is True and result["version"] == "sub-1"
    assert result["url"] == f"http://127.0.0.1:{started[0]}" and result["errors"] == 0
    assert os.sched_getaffinity(0) == before and result["server_log"].startswith(str(tmp_path))
    if len(before) >= 2:
        assert result["pinning"] == {"server": sorted(before)[-1:], "generator": sorted(before)[:-1]}
    with socket.socket() as probe:  # stopped: nothing listens any more
        assert probe.connect_ex(("127.0.0.1", started[0])) != 0


def test_the_floor_is_the_same_load_on_a_null_service(tmp_path, monkeypatch, quick_reference):
    """--floor: the requests of the mix, uploads included, sent to a service that answers at once; the run
    says it was the floor, and the null service is stopped afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = serve_and_load("synthetic:60:0", _quick(seconds=1.0), models=MODELS, ready_timeout_s=30, floor=True)
    assert result["floor"] and result["version"] == "null" and result["models"] == list(MODELS)
    assert result["errors"] == 0 and result["requests"] == 50
    assert set(result["endpoints"]) <= set(result["mix"]) and len(result["endpoints"]) >= 4
    assert sum(e["count"] for e in result["endpoints"].values()) == 50
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(result["url"].rsplit(":", 1)[1]))) != 0


def test_serve_and_load_reports_a_service_that_dies(tmp_path, monkeypatch, quick_reference):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(loadtest, "server_command", lambda catalog, port: [
        sys.executable, "-c", "import sys; print('cannot open the catalogue'); sys.exit(3)"])
    before = os.sched_getaffinity(0)
    with pytest.raises(RuntimeError, match="(?s)exited with code 3.*cannot open the catalogue"):
        serve_and_load("synthetic:60:0", _quick(), ready_timeout_s=30)
    assert os.sched_getaffinity(0) == before


def test_timeouts_are_errors(url):
    result = load(url, _same("/slow", "slow"), _quick(qps=20.0, seconds=0.5, timeout_s=0.03))
    assert result["requests"] == result["errors"] == 10
    assert result["endpoints"]["slow"]["p50_ms"] >= 30
    assert len(result["error_examples"]) == 1 and result["error_examples"][0] in {"slow: TimeoutError",
                                                                                  "slow: ReadTimeout"}


def test_requests_beyond_max_connections_in_flight_are_not_sent(url):
    result = load(url, _same("/slow", "slow"), _quick(qps=50.0, seconds=0.4, max_connections=2))
    slow = result["endpoints"]["slow"]
    assert result["requests"] == slow["count"] == 20
    assert 10 <= slow["errors"] <= 18  # a 100 ms request in flight per 50 ms slot: at most about every other goes
    assert result["error_examples"] == ["slow: not sent (2 requests in flight)"]
    assert slow["p50_ms"] >= 100  # latencies of the requests sent only


def test_a_generator_far_behind_its_plan_stops_sending(url):
    drawn = itertools.count()

    def next_call(rng):
        if next(drawn) == 5:
            time.sleep(0.5)
        return Call("ok", "GET", "/ok")

    result = load(url, next_call, _quick(qps=50.0, seconds=0.6, timeout_s=0.3))
    assert result["requests"] == 30 and result["errors"] >= 25  # from the 6th send on (planned at 0.1 s)
    assert "ok: not sent (the generator fell more than 0.3 s behind its plan)" in result["error_examples"]
    assert any("stopped sending" in w for w in result["warnings"])
