"""The connections benchmark: connections to a started service that never finish their headers
(``python -m core bench connections``); how many it still holds, and whether it answers others meanwhile."""
from __future__ import annotations

import argparse
import socket
import time
from collections import Counter

import httpx

from core.bench.command import BenchContext
from core.bench.hostile import StartedService
from core.bench.process import wait_ready
from core.data.load import load_catalog


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
    with StartedService(catalog, extra) as service:
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


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_connections(args.catalog or "synthetic:200:0", args.backbone, args.models)
