"""The measuring helpers: percentiles in milliseconds, timed calls after a warm-up, the reference workload."""
import pytest

from core.bench.measure import peak_rss_mb, percentiles, reference_s, timed


def test_percentiles_are_milliseconds_under_the_prefix():
    out = percentiles([0.001] * 99 + [0.101], "query")  # 99 calls of 1 ms, one of 101 ms
    assert set(out) == {"query_p50_ms", "query_p99_ms"}
    assert out["query_p50_ms"] == 1.0
    assert out["query_p99_ms"] == pytest.approx(1.0 + 0.01 * 100, abs=1e-3)  # numpy's linear interpolation


def test_timed_times_every_argument_after_one_untimed_warm_up():
    calls = []
    times = timed(calls.append, [1, 2, 3])
    assert calls == [1, 1, 2, 3] and len(times) == 3 and all(t >= 0 for t in times)


def test_reference_and_peak_memory_are_positive():
    assert reference_s(repeats=1, n=64) > 0
    assert peak_rss_mb() > 0
