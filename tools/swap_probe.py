"""A swap probe: one GET /products/{id}/similar every 10 ms through a version swap, nothing else.

Starts ``python -m core serve`` pinned to the last core (this process on the first), waits until it is
ready, publishes :func:`core.bench.loadtest.another_version` of the catalogue's current version 5 s in, keeps
probing for ``--seconds`` and prints one JSON object: the latencies, the stalls (merged intervals where
requests took over 50 ms) and when the new version first answered. The version published before is
published again at the end. Where ``bench serve --publish-during`` measures the whole request mix, this
isolates what a swap alone does to a lookup.

    ATELIER_OFFLINE=1 python tools/swap_probe.py --catalog ../shared/data/hm
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.cache import ArtefactCache  # noqa: E402
from core.config import PROJECT_ROOT
from core.data.load import default_catalog_spec, load_catalog
from core.bench.client import Connections, encode_call
from core.bench.loadtest import another_version  # noqa: E402
from core.bench.process import free_port, server_command, stop_process, wait_ready  # noqa: E402
from core.bench.workload import Call  # noqa: E402
from core.serve.release import current, publish  # noqa: E402

STALL_MS = 50.0


async def probe(url: str, ids: list[str], seconds: float, publish_at: float, new) -> tuple[list, float]:
    client = Connections(url)
    records: list[tuple[float, float, int, str | None]] = []  # (planned s, latency s, status, version)
    t0 = time.perf_counter()
    published = None

    async def one(pid: str, planned: float) -> None:
        status, version = await client.request(encode_call(Call("similar", "GET", f"/products/{pid}/similar"), url))
        records.append((planned - t0, time.perf_counter() - planned, status, version))

    tasks, i = [], 0
    while time.perf_counter() - t0 < seconds:
        if published is None and time.perf_counter() - t0 >= publish_at:
            new()
            published = time.perf_counter() - t0
        tasks.append(asyncio.create_task(one(ids[i % len(ids)], time.perf_counter())))
        i += 1
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks, return_exceptions=True)
    client.close()
    return records, published


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default=None)
    parser.add_argument("--seconds", type=float, default=45.0)
    args = parser.parse_args()
    spec = args.catalog or default_catalog_spec()
    cache = ArtefactCache()
    old = current(cache, spec)
    if old is None:
        sys.exit(f"error: {spec} has no published version (python -m core build publishes one)")
    variant = another_version(old)
    cpus = sorted(os.sched_getaffinity(0))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="atelier-probe-", suffix=".log")[1])
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[-1]})
    try:
        proc = subprocess.Popen(server_command(spec, port), cwd=PROJECT_ROOT, stdout=log.open("wb"),
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        os.sched_setaffinity(0, saved)
    if len(cpus) > 1:
        os.sched_setaffinity(0, set(cpus[:-1]))
    try:
        ids = [str(p) for p in load_catalog(spec).products.index[:200]]
        wait_ready(url, proc, log, 900)
        records, published = asyncio.run(probe(url, ids, args.seconds, 5.0,
                                               lambda: publish(cache, variant | {"published": time.time()})))
    finally:
        stop_process(proc)
        publish(cache, old)
    latency = np.array([r[1] for r in records])
    slow = sorted((a, a + b) for a, b, _, _ in records if b * 1e3 > STALL_MS)
    stalls: list[list[float]] = []
    for a, b in slow:
        if stalls and a <= stalls[-1][1]:
            stalls[-1][1] = max(stalls[-1][1], b)
        else:
            stalls.append([a, b])
    served = min((r[0] for r in records if r[3] == variant["version"]), default=None)
    print(json.dumps({"requests": len(records), "errors": sum(r[2] >= 400 for r in records),
                      "p50_ms": round(float(np.percentile(latency, 50)) * 1e3, 2),
                      "p99_ms": round(float(np.percentile(latency, 99)) * 1e3, 2),
                      "max_ms": round(float(latency.max()) * 1e3, 2), "published_at_s": round(published, 2),
                      "first_new_answer_s": None if served is None else round(served, 2),
                      "stalls_over_50ms": [{"at_s": round(a, 2), "s": round(b - a, 3)} for a, b in stalls],
                      "server_log": str(log)}))


if __name__ == "__main__":
    main()
