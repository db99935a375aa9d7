"""Fault drills on a real service process: kill -9 while products are being added, a damaged store, restarts.

``python -m core bench drill`` runs :func:`kill_drill` and prints what survived. The service runs as
``python -m core serve`` in a scratch cache and store (never the user's), on a small synthetic catalogue with
the tiny random backbone: the drill exercises the process, the store and the restart, not the models.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from core.bench.command import BenchContext
from core.config import PROJECT_ROOT
from core.bench.process import free_port, stop_process, wait_ready


@dataclass(frozen=True)
class DrillConfig:
    catalog: str = "synthetic:120:0"
    backbone: str = "random:atelier-tiny"
    rounds: int = 3  # service processes killed with SIGKILL while clients add products
    clients: int = 4  # threads adding products at once
    min_run_s: float = 1.0  # each round kills the service after a random time in [min_run_s, max_run_s)
    max_run_s: float = 4.0
    seed: int = 0


def _photo(i: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 48), (i * 37 % 256, i * 91 % 256, i * 53 % 256)).save(out, format="PNG")
    return out.getvalue()


def _add_until(url: str, stop: threading.Event, next_id, confirmed: dict[str, bytes], lock: threading.Lock) -> None:
    """POST /products until ``stop``; ids answered 201 go to ``confirmed`` (id -> photo bytes)."""
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        while not stop.is_set():
            i = next_id()
            photo = _photo(i)
            try:
                got = client.post("/products", data={"id": f"drill-{i}", "title": f"Drill top {i}"},
                                  files={"photo": ("p.png", photo, "image/png")})
            except httpx.HTTPError:
                return  # the service was killed under this request
            if got.status_code == 201:
                with lock:
                    confirmed[f"drill-{i}"] = photo


def _start(cfg: DrillConfig, env: dict, log: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    command = [sys.executable, "-m", "core", "serve", "--catalog", cfg.catalog, "--backbone", cfg.backbone,
               "--port", str(port), "--poll", "0"]
    t = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc, log, timeout_s=600)
    return proc, url, time.perf_counter() - t


def _missing(url: str, confirmed: dict[str, bytes]) -> list[str]:
    """Confirmed products the service does not have, or whose photo is not the one sent."""
    lost = []
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        for pid, photo in confirmed.items():
            if client.get(f"/products/{pid}/image").content != photo:
                lost.append(pid)
    return lost


def kill_drill(cfg: DrillConfig = DrillConfig()) -> dict:
    """``cfg.rounds`` times: clients add products to the service, which is killed (SIGKILL) mid-stream and
    started again. Then one record in the middle of the store's log is damaged and the service restarted.
    Returns counts: products confirmed (201) and lost (confirmed but not served whole after a restart), the
    records stored whose 201 never arrived, what the damaged record cost, and whether the log named it."""
    rng = np.random.default_rng(cfg.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="atelier-drill-") as scratch:
        root = Path(scratch)
        env = {k: v for k, v in os.environ.items() if k != "ATELIER_STORE"}
        env.update(ATELIER_CACHE=str(root / "cache"), ATELIER_OFFLINE="1")  # the store: root / "store"
        log = root / "service.log"
        confirmed: dict[str, bytes] = {}
        lock, counter = threading.Lock(), iter(range(10**9))
        next_id = lambda: next(counter)  # noqa: E731 (itertools counters are thread-safe under the GIL)
        starts, lost_per_round = [], []
        proc, url, started = _start(cfg, env, log)
        starts.append(started)
        for _ in range(cfg.rounds):
            stop = threading.Event()
            clients = [threading.Thread(target=_add_until, args=(url, stop, next_id, confirmed, lock))
                       for _ in range(cfg.clients)]
            for c in clients:
                c.start()
            time.sleep(float(rng.uniform(cfg.min_run_s, cfg.max_run_s)))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop.set()
            for c in clients:
                c.join()
            proc, url, started = _start(cfg, env, log)
            starts.append(started)
            lost_per_round.append(len(_missing(url, confirmed)))
        with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
            served = client.get("/readyz").json()["added_products"]
        stop_process(proc)

        store = next((root / "store" / "added-products").glob("*.jsonl"))
        lines = store.read_bytes().splitlines(keepends=True)
        middle = len(lines) // 2
        damaged_id = lines[middle].split(b'"id": "', 1)[1].split(b'"', 1)[0].decode()
        lines[middle] = lines[middle].replace(b"Drill top", b"Drill tap")
        store.write_bytes(b"".join(lines))
        before = log.stat().st_size
        proc, url, started = _start(cfg, env, log)
        starts.append(started)
        after_damage = [p for p in _missing(url, confirmed) if p != damaged_id]
        with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
            problems = client.get("/readyz").json().get("problems", [])
        stop_process(proc)
        named = damaged_id in log.read_bytes()[before:].decode("utf-8", "replace")
        kept_aside = len(list(store.parent.glob(f"{store.name}.damaged-*")))
    return {"config": asdict(cfg), "confirmed": len(confirmed), "lost_after_each_restart": lost_per_round,
            "stored_without_201": served - len(confirmed),
            "damaged_record": damaged_id, "lost_after_damage_besides_it": len(after_damage),
            "damaged_named_in_log": named, "damaged_named_in_readyz": any(damaged_id in p for p in problems),
            "damaged_files_kept_aside": kept_aside, "start_s": [round(s, 1) for s in starts],
            "seconds": round(time.perf_counter() - t0, 1)}


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    """Its own scratch cache and store, a synthetic catalogue: never the user's."""
    return kill_drill(DrillConfig(rounds=args.rounds))
