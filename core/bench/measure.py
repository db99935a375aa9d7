"""What every benchmark measures with: percentiles of timed calls, a reference workload, peak memory."""
from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np


def percentiles(seconds: list[float], prefix: str) -> dict[str, float]:
    """``{prefix}_p50_ms`` and ``{prefix}_p99_ms`` of ``seconds``, in milliseconds rounded to 4 places."""
    ms = np.asarray(seconds) * 1e3
    return {f"{prefix}_p50_ms": round(float(np.percentile(ms, 50)), 4),
            f"{prefix}_p99_ms": round(float(np.percentile(ms, 99)), 4)}


def timed(fn, args) -> list[float]:
    """Seconds of ``fn(a)`` for each of ``args``, after one untimed warm-up call."""
    fn(args[0])
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return times


def reference_s(repeats: int = 5, n: int = 1024, seed: int = 0) -> float:
    """Seconds of a fixed workload, measured in the same run as a benchmark so its timings can be read
    as ratios that travel between machines (and between a busy and an idle one): the median of
    ``repeats`` runs of four (n, n) @ (n, n) float32 numpy matmuls (8.6 GFLOP at n = 1024)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: BLAS threads start
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MB (ru_maxrss: KB on Linux) of this process, or with RUSAGE_CHILDREN of
    its largest finished child."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def own_peak_rss_mb() -> float:
    """This process's own peak resident memory in MB: VmHWM, which starts anew at exec (``ru_maxrss`` of a
    process started by fork and exec keeps the peak of the process it was forked from), else ``ru_maxrss``."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else peak_rss_mb()


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field (e.g. "VmRSS") in MB; None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mb() -> float | None:
    """This process's resident memory now (VmRSS) in MB; None where ``/proc`` does not tell it."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> tuple[float, bool]:
    """Start this process's peak RSS (VmHWM) anew from its current RSS (Linux: ``5`` into ``/proc/self/clear_refs``),
    so :func:`own_peak_rss_mb` then counts from here: a stage's memory apart from what it loaded first. Returns the
    current RSS in MB and whether the reset took (the peak fell to the current RSS; a kernel or sandbox may refuse
    or ignore the write)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    now, peak = _status_mb("VmRSS"), _status_mb("VmHWM")
    if now is None or peak is None:
        return own_peak_rss_mb(), False
    return now, peak <= now + 1.0
