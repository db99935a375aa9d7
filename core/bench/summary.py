"""A load test's numbers from its requests' records: rates, errors, latency percentiles per endpoint, a swap window."""
from __future__ import annotations

from collections import Counter

import numpy as np

from core.bench.workload import LoadConfig

N_ERROR_EXAMPLES = 5
LATE_WARN = 0.05  # more late sends than this share of requests: the generator, not the service, set the pace
# --publish-during: the swap window runs from the publish to the first answer from the new version plus this
# tail (the new version's first requests: empty query caches, anything it initialises lazily)
SWAP_TAIL_S = 2.0


def _ms(seconds: np.ndarray, q: float | None = None) -> float | None:
    """Percentile ``q`` (None: the maximum) of the finite entries, in ms; None when there are none."""
    seconds = seconds[np.isfinite(seconds)]
    if not len(seconds):
        return None
    return round(float(seconds.max() if q is None else np.percentile(seconds, q)) * 1e3, 3)


def _latencies(latency: np.ndarray) -> dict:
    return {"p50_ms": _ms(latency, 50), "p90_ms": _ms(latency, 90), "p99_ms": _ms(latency, 99), "max_ms": _ms(latency)}


def summary(records: list[tuple], n_planned: int, start: float, cfg: LoadConfig) -> dict:
    """The result dict of :func:`core.bench.loadtest.run_load` from the measured requests' records (see
    :func:`core.bench.loadtest._send`; a request never sent has latency NaN)."""
    names = np.array([r[0] for r in records], dtype=object)
    latency = np.array([r[1] for r in records], dtype=float)
    lag = np.array([r[2] for r in records], dtype=float)
    done = np.array([r[3] for r in records], dtype=float)
    failed = np.array([r[4] is not None for r in records], dtype=bool)
    n_ok = int((~failed).sum())
    span = float(done.max() - start) if len(done) else 0.0
    endpoints = {}
    for name, count in sorted(Counter(names.tolist()).items(), key=lambda kv: (-kv[1], kv[0])):
        mine = names == name
        endpoints[name] = {"count": count, "errors": int((failed & mine).sum())} | _latencies(latency[mine])
    examples: list[str] = []
    for name, _, _, _, error, *_ in records:
        example = f"{name}: {error}"
        if error is not None and example not in examples and len(examples) < N_ERROR_EXAMPLES:
            examples.append(example)
    late = int((lag * 1e3 > cfg.late_ms).sum())
    warnings = []
    if late > LATE_WARN * max(len(records), 1):
        warnings.append(f"{late} of {len(records)} sends left more than {cfg.late_ms:g} ms late: the generator "
                        "did not keep up (too high a rate, or short of CPU), so the latencies partly measure it")
    return {
        "offered_qps": round(n_planned / cfg.seconds, 3) if cfg.seconds else 0.0,
        "achieved_qps": round(n_ok / span, 3) if span > 0 else 0.0,
        "requests": len(records),
        "errors": int(failed.sum()),
        "late_sends": late,
        "max_send_lag_ms": round(float(lag.max()) * 1e3, 3) if len(lag) else 0.0,
        "seconds": cfg.seconds,
        "latency_ms": _latencies(latency),
        "endpoints": endpoints,
        "error_examples": examples,
        "warnings": warnings,
    }


def swap_summary(records: list[tuple], published_at: float, new_version: str, start: float) -> dict:
    """The requests around a version swap (see :func:`core.bench.loadtest.run_load`'s ``publish``) against
    the others. The swap window runs from ``published_at`` (the new version's manifest in place) to the
    first answer naming another version than the answers before (normally ``new_version``) plus
    SWAP_TAIL_S; a request is in it if it was in flight at any time of it. Times are event-loop seconds; ``start`` is the start of the measured window."""
    def part(rs: list[tuple]) -> dict:
        s = summary(rs, len(rs), start, LoadConfig(seconds=1.0))
        return {key: s[key] for key in ("requests", "errors", "latency_ms", "endpoints", "error_examples")}

    before = Counter(r[5] for r in records if r[5] is not None and r[3] < published_at)
    old = before.most_common(1)[0][0] if before else None
    # The first answer from another version than the one served before: the one published, unless the
    # service computed the version's name otherwise (it then logs that the catalogue changed)
    first = min(((r[3], r[5]) for r in records if r[3] >= published_at and r[5] is not None
                 and (r[5] != old if old is not None else r[5] == new_version)), default=None)
    served, new_version = (first[0], first[1]) if first else (None, new_version)
    end = served + SWAP_TAIL_S if served is not None else np.inf
    inside = [r[3] >= published_at and r[6] <= end for r in records]
    window = part([r for r, i in zip(records, inside) if i])
    rest = part([r for r, i in zip(records, inside) if not i])
    ratio = {}
    for name in window["endpoints"]:
        a, b = window["endpoints"][name]["p99_ms"], rest["endpoints"].get(name, {}).get("p99_ms")
        ratio[name] = round(a / b, 2) if a is not None and b else None
    return {"old_version": old, "new_version": new_version,
            "published_at_s": round(published_at - start, 3),
            "first_new_answer_s": round(served - start, 3) if served is not None else None,
            "publish_to_served_s": round(served - published_at, 3) if served is not None else None,
            "window_end_s": round(end - start, 3) if served is not None else None,
            "window": window, "rest": rest, "p99_ratio_window_to_rest": ratio}
