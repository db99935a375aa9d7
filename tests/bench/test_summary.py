"""A load test's numbers from hand-built request records: (name, latency_s, send_lag_s, done, error, version,
planned)."""
import numpy as np
import pytest

from core.bench.summary import summary, swap_summary
from core.bench.workload import LoadConfig


def test_summary_counts_rates_errors_and_percentiles_by_hand():
    records = [("a", 0.010, 0.000, 1.0, None, "v1", 0.99),
               ("a", 0.030, 0.000, 2.0, None, "v1", 1.97),
               ("b", 0.020, 0.010, 3.0, "HTTP 500", None, 2.98),  # 10 ms late
               ("b", np.nan, 0.000, 3.5, "not sent (full)", None, 3.5)]
    out = summary(records, 4, 0.0, LoadConfig(seconds=4.0, late_ms=5.0))
    assert (out["offered_qps"], out["achieved_qps"]) == (1.0, round(2 / 3.5, 3))
    assert (out["requests"], out["errors"], out["late_sends"], out["max_send_lag_ms"]) == (4, 2, 1, 10.0)
    assert list(out["endpoints"]) == ["a", "b"]
    assert out["endpoints"]["a"] == {"count": 2, "errors": 0, "p50_ms": 20.0, "p90_ms": 28.0, "p99_ms": 29.8,
                                     "max_ms": 30.0}
    assert out["endpoints"]["b"]["errors"] == 2 and out["endpoints"]["b"]["max_ms"] == 20.0  # not sent: no latency
    assert (out["latency_ms"]["p50_ms"], out["latency_ms"]["max_ms"]) == (20.0, 30.0)
    assert out["error_examples"] == ["b: HTTP 500", "b: not sent (full)"]
    assert len(out["warnings"]) == 1 and "late" in out["warnings"][0]  # 1 of 4 late: over 5%


def test_the_swap_window_runs_from_the_publish_to_the_first_new_answer_plus_the_tail():
    records = [("a", 0.01, 0.0, 5.0, None, "v1", 4.99),     # before the publish
               ("a", 0.01, 0.0, 11.0, None, "v1", 10.99),   # after it, still the old version
               ("a", 0.05, 0.0, 12.0, None, "v2", 11.95),   # the first answer from the new one
               ("a", 0.01, 0.0, 20.0, None, "v2", 19.99)]   # planned after the window (12 + 2 s tail)
    out = swap_summary(records, 10.0, "v2", 0.0)
    assert (out["old_version"], out["new_version"]) == ("v1", "v2")
    assert (out["published_at_s"], out["first_new_answer_s"], out["publish_to_served_s"],
            out["window_end_s"]) == (10.0, 12.0, 2.0, 14.0)
    assert out["window"]["requests"] == out["rest"]["requests"] == 2
    assert out["p99_ratio_window_to_rest"]["a"] == pytest.approx(49.6 / 10.0, abs=0.01)
