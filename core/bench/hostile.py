"""What the hostile-client benchmarks share: a retrieval service started for the attack, its memory measured
during it, and ordinary requests to check it still answers. The attacks: decompression-bomb uploads
(:mod:`core.bench.bombs`) and connections that never finish their headers (:mod:`core.bench.connections`).

Each starts ``python -m core serve`` as :func:`core.bench.loadtest.serve_and_load` does (its own artefact cache and
store unless ``ATELIER_CACHE`` is set: a synthetic catalogue's version is built on first start), waits for
``/readyz``, runs the attack, checks that ordinary requests are still answered, stops the service and
returns one JSON-able dict of absolute numbers.
"""
from __future__ import annotations

import io
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import httpx
from PIL import Image

from core.config import CACHE_ENV
from core.config import PROJECT_ROOT
from core.bench.process import free_port, log_tail, server_command, stop_process
from core.serve.store import STORE_ENV


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


def memory_during(pid: int, attack) -> tuple[object, dict]:
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

class StartedService:
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


def ordinary_statuses(url: str, product_id: str, photo: bytes) -> dict[str, int]:
    """Status of ordinary requests: health, a product, a small photo search."""
    with httpx.Client(base_url=url, timeout=30.0, trust_env=False) as client:
        return {"/healthz": client.get("/healthz").status_code,
                "/products/{id}": client.get(f"/products/{product_id}").status_code,
                "/search/image": client.post("/search/image", files={"file": ("q.png", photo, "image/png")}
                                             ).status_code}


def grey_png(side: int, mode: str = "RGB") -> bytes:
    """A flat grey ``side`` x ``side`` PNG."""
    out = io.BytesIO()
    Image.new(mode, (side, side), (128,) * len(mode)).save(out, format="PNG")  # an int alone fills one band
    return out.getvalue()
