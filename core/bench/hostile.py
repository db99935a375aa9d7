"""Hostile clients against a started retrieval service, measured: decompression-bomb uploads (``python -m core
bench bombs``) and connections that never finish their headers (``python -m core bench connections``).

Each starts ``python -m core serve`` as :func:`core.bench.loadtest.serve_and_load` does (its own artefact cache and
store unless ``ATELIER_CACHE`` is set: a synthetic catalogue's version is built on first start), waits for
``/readyz``, runs the attack, checks that ordinary requests are still answered, stops the service and
returns one JSON-able dict of absolute numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image

from core.bench.command import BenchContext
from core.config import CACHE_ENV
from core.config import PROJECT_ROOT
from core.data.load import load_catalog
from core.bench.process import free_port, log_tail, server_command, stop_process, wait_ready
from core.serve.store import STORE_ENV

BOMB_SIDE = 13_000  # 169 MP: under PIL's own limit (179 MP), so PIL alone decodes it (~0.5-0.7 GB each)
BOMB_FORMATS = ("GIF", "PNG", "JPEG")


# ---------------------------------------------------------------- the service's memory

def _status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of process ``pid`` in KB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def _reset_peak(pid: int) -> bool:
    """Reset the peak RSS (VmHWM) of ``pid`` to its current RSS (Linux: write 5 to clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class _RssSampler:
    """The highest VmRSS of a process seen every ``interval_s`` (a peak that VmHWM may not be reset for)."""

    def __init__(self, pid: int, interval_s: float = 0.02):
        self.pid, self.interval_s, self.peak_kb = pid, interval_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kb = max(self.peak_kb, _status_kb(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _memory_during(pid: int, attack) -> tuple[object, dict]:
    """Run ``attack()`` and measure the service's memory: RSS before, peak during (VmHWM reset before, and
    VmRSS sampled), after; growth = peak - before. MB."""
    before = _status_kb(pid)["VmRSS"]
    reset = _reset_peak(pid)
    with _RssSampler(pid) as sampler:
        result = attack()
    after = _status_kb(pid)
    peak = max(sampler.peak_kb, after["VmHWM"] if reset else 0)
    mb = lambda kb: round(kb / 1024, 1)  # noqa: E731
    return result, {"rss_before_mb": mb(before), "rss_peak_mb": mb(peak), "rss_after_mb": mb(after["VmRSS"]),
                    "peak_growth_mb": mb(peak - before),
                    "peak_from": "VmHWM and VmRSS sampled every 20 ms" if reset else "VmRSS sampled every 20 ms"}


# ---------------------------------------------------------------- a service started here

class _Started:
    """``python -m core serve`` on a free port with its own log (and cache unless ATELIER_CACHE is set)."""

    def __init__(self, catalog: str, extra: list[str]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = None if os.environ.get(CACHE_ENV) else tempfile.TemporaryDirectory(prefix="atelier-hostile-")
        env = dict(os.environ)
        if self._tmp is not None:  # a scratch cache, and the store of added products beside it (tmp/store)
            env[CACHE_ENV] = str(Path(self._tmp.name) / "cache")
            env.pop(STORE_ENV, None)
        fd, name = tempfile.mkstemp(prefix="atelier-serve-", suffix=".log")
        self.log = Path(name)
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(server_command(catalog, self.port) + extra, cwd=PROJECT_ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        stop_process(self.proc)
        if self._tmp is not None:
            self._tmp.cleanup()

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {self.proc.returncode}; its log {self.log} ends:\n"
                               f"{log_tail(self.log)}")


def _ordinary(url: str, product_id: str, photo: bytes) -> dict[str, int]:
    """Status of ordinary requests: health, a product, a small photo search."""
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        return {"/healthz": client.get("/healthz").status_code,
                "/products/{id}": client.get(f"/products/{product_id}").status_code,
                "/search/image": client.post("/search/image", files={"file": ("q.png", photo, "image/png")}
                                             ).status_code}


def _png(side: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (side, side), 128).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------- decompression bombs

def bomb_photos(side: int = BOMB_SIDE, formats: tuple[str, ...] = BOMB_FORMATS) -> dict[str, bytes]:
    """One flat grey ``side`` x ``side`` photo per format: a few hundred KB each, gigabytes once decoded."""
    img = Image.new("L", (side, side), 128)
    out = {}
    for fmt in formats:
        buffer = io.BytesIO()
        img.save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


async def _send_all(url: str, requests: list[dict], timeout_s: float) -> list[dict]:
    """``requests`` ({path, data, files}) all at once, each on its own connection; status, seconds, detail."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, trust_env=False,
                                 limits=httpx.Limits(max_connections=len(requests))) as client:
        async def one(r: dict) -> dict:
            t = time.perf_counter()
            try:
                got = await client.post(r["path"], data=r.get("data"), files=r["files"])
                status, detail = got.status_code, got.text[:160]
            except httpx.HTTPError as e:
                status, detail = None, f"{e.__class__.__name__}: {e}"[:160]
            return {"path": r["path"], "what": r["what"], "status": status, "seconds": round(time.perf_counter() - t, 3),
                    "detail": detail}
        return list(await asyncio.gather(*(one(r) for r in requests)))


def _uploads(n: int, photos: dict[str, bytes], existing_id: str, tag: str) -> list[dict]:
    """``n`` uploads cycling through the photos: a quarter to POST /products with an id the catalogue has
    (409 expected: the id is checked first), a quarter with new ids, half to POST /search/image."""
    out = []
    names = list(photos)
    for i in range(n):
        fmt = names[i % len(names)]
        files = {"photo" if i % 4 < 2 else "file": (f"{tag}-{i}.{fmt.lower()}", photos[fmt], "image/" + fmt.lower())}
        if i % 4 == 0:
            out.append({"path": "/products", "what": f"{fmt}, existing id", "files": files,
                        "data": {"id": existing_id, "title": "bomb"}})
        elif i % 4 == 1:
            out.append({"path": "/products", "what": f"{fmt}, new id", "files": files,
                        "data": {"id": f"{tag}-{i}", "title": "bomb"}})
        else:
            out.append({"path": "/search/image", "what": fmt, "files": files})
    return out


def bench_bombs(catalog: str, backbone: str = "auto", models: str | None = None, n: int = 20,
                side: int = BOMB_SIDE, limit_side: int = 4_900, timeout_s: float = 300.0) -> dict:
    """``n`` decompression bombs (:func:`bomb_photos`, ``side`` px square) uploaded at once to a started
    service; then ``n`` photos just under its pixel limit (``limit_side`` px square, PNG) to POST
    /search/image at once, which it does decode, so its bound on decodes in flight is what keeps the memory.

    Returns per attack: statuses (counts), each request (what, status, seconds, detail), the service's
    memory (:func:`_memory_during`), and ``target_met`` for the bombs: every answer a 4xx and the peak
    growth under 1 GB; then the statuses of ordinary requests afterwards."""
    products = load_catalog(catalog).products
    existing = str(products.index[0])
    photos = bomb_photos(side)
    small = _png(64)
    extra = ["--backbone", backbone] + (["--models", models] if models else [])
    result: dict = {"catalog": catalog, "bomb": {"side": side, "bytes": {f: len(b) for f, b in photos.items()},
                                                 "decoded_mb_each": round(side * side * 4 / 2**20)}}
    with _Started(catalog, extra) as service:
        ready = wait_ready(service.url, service.proc, service.log, 900.0)
        result["version"] = ready.get("version")
        result["ordinary_before"] = _ordinary(service.url, existing, small)
        replies, memory = _memory_during(service.proc.pid, lambda: asyncio.run(
            _send_all(service.url, _uploads(n, photos, existing, "bomb"), timeout_s)))
        statuses = Counter(r["status"] for r in replies)
        result["bombs"] = {"requests": n, "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
                           **memory, "replies": replies,
                           "target_met": all(r["status"] is not None and 400 <= r["status"] < 500 for r in replies)
                           and memory["peak_growth_mb"] < 1024}
        service.check_alive()
        at_limit = _png(limit_side)
        # bytes after IEND are ignored by decoders but make each photo new to the query cache (keyed by digest)
        requests = [{"path": "/search/image", "what": f"PNG {limit_side}x{limit_side}",
                     "files": {"file": (f"limit-{i}.png", at_limit + b"%d" % i, "image/png")}} for i in range(n)]
        replies, memory = _memory_during(service.proc.pid, lambda: asyncio.run(
            _send_all(service.url, requests, timeout_s)))
        statuses = Counter(r["status"] for r in replies)
        result["at_limit"] = {"requests": n, "side": limit_side, "bytes": len(at_limit),
                              "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, **memory,
                              "seconds_max": max(r["seconds"] for r in replies)}
        service.check_alive()
        result["ordinary_after"] = _ordinary(service.url, existing, small)
        result["server_log"] = str(service.log)
    return result


# ---------------------------------------------------------------- connections that never finish their headers

def _still_open(sock: socket.socket) -> bool:
    """False once the server has closed ``sock`` (whatever it sent first, e.g. a 408, is read and dropped)."""
    try:
        while True:
            if not sock.recv(65536):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False


def bench_connections(catalog: str, backbone: str = "auto", models: str | None = None, n: int = 1500,
                      watch_s: float = 12.0, header_timeout_s: float | None = None) -> dict:
    """``n`` connections to a started service that never finish a request: half send a request line and
    one header and stop, half send nothing. Every second for ``watch_s`` s: how many the service still
    holds, and the status and milliseconds of an ordinary request (GET /products/{id}) sent meanwhile."""
    products = load_catalog(catalog).products
    existing = str(products.index[0])
    extra = (["--backbone", backbone] + (["--models", models] if models else [])
             + (["--header-timeout", str(header_timeout_s)] if header_timeout_s is not None else []))
    result: dict = {"catalog": catalog, "connections": n, "header_timeout_s": header_timeout_s or "default (5)"}
    with _Started(catalog, extra) as service:
        wait_ready(service.url, service.proc, service.log, 900.0)
        held: list[socket.socket] = []
        t0 = time.perf_counter()
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", service.port))
            if i % 2 == 0:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            sock.setblocking(False)
            held.append(sock)
        result["opened_s"] = round(time.perf_counter() - t0, 2)
        timeline = []
        with httpx.Client(base_url=service.url, timeout=10.0, trust_env=False) as client:
            while True:
                t = time.perf_counter() - t0
                still = sum(_still_open(s) for s in held)
                start = time.perf_counter()
                try:
                    status = client.get(f"/products/{existing}", headers={"connection": "close"}).status_code
                except httpx.HTTPError as e:
                    status = e.__class__.__name__
                timeline.append({"t_s": round(t, 1), "held": still, "ordinary_status": status,
                                 "ordinary_ms": round((time.perf_counter() - start) * 1000, 1)})
                if t >= watch_s:
                    break
                time.sleep(1.0)
        for sock in held:
            sock.close()
        service.check_alive()
        result["timeline"] = timeline
        result["held_at_end"] = timeline[-1]["held"]
        result["all_closed_after_s"] = next((p["t_s"] for p in timeline if p["held"] == 0), None)
        result["ordinary_statuses"] = dict(Counter(str(p["ordinary_status"]) for p in timeline))
        result["server_log"] = str(service.log)
    return result


def bombs_command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_bombs(args.catalog or "synthetic:200:0", args.backbone, args.models)


def connections_command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_connections(args.catalog or "synthetic:200:0", args.backbone, args.models)
