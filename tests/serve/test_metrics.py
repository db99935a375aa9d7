"""The service's Prometheus metrics."""
from __future__ import annotations

import pytest

from core.serve.metrics import Metrics


def test_a_stage_is_timed_even_when_it_fails_and_each_service_has_its_own_registry():
    one, other = Metrics(), Metrics()
    with one.stage("/search/text", "encode"):
        pass
    with pytest.raises(ValueError), one.stage("/search/text", "encode"):
        raise ValueError
    labels = {"endpoint": "/search/text", "stage": "encode"}
    assert one.registry.get_sample_value("atelier_stage_seconds_count", labels) == 2.0
    assert other.registry.get_sample_value("atelier_stage_seconds_count", labels) is None
