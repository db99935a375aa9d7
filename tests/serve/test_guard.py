"""The service's ASGI middleware: the size limit, per-route counts, the nosniff header."""
from __future__ import annotations

import types

import pytest
from fastapi.testclient import TestClient

from core.serve.api import create_app
from core.serve.guard import Guard
from core.serve.metrics import Metrics
from tests.serve import test_faults_client
from tests.serve.test_faults_client import loaded

cache = test_faults_client.cache  # its fixture: a published synthetic:60:0 version (two_tower)


@pytest.mark.faults  # issue 20, as in test_faults_client.py
def test_a_413_by_content_length_is_counted_under_its_route(cache):
    service = loaded(cache, max_upload_bytes=10_000)
    with TestClient(create_app(service, start=False)) as client:
        got = client.post("/search/image", files={"file": ("big.jpg", b"\xff" * 200_000, "image/jpeg")})
        assert got.status_code == 413
        text = client.get("/metrics").text
    assert 'atelier_requests_total{endpoint="/search/image",method="POST",status="413"} 1.0' in text
    assert 'endpoint="unmatched"' not in text


class _Service:
    """What the guard reads of a service: the upload limit and the metrics."""

    def __init__(self, max_upload_bytes: int = 100):
        self.cfg = types.SimpleNamespace(max_upload_bytes=max_upload_bytes)
        self.metrics = Metrics()

    def count(self, name: str, **labels) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


async def _hello(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello"})


async def _broken(scope, receive, send):
    raise RuntimeError("boom")


def test_the_guard_marks_nosniff_counts_refuses_big_bodies_and_turns_a_crash_into_a_500():
    service = _Service(max_upload_bytes=100)
    client = TestClient(Guard(_hello, service))  # no lifespan: the bare apps answer only http
    got = client.get("/anything")
    assert (got.status_code, got.text, got.headers["x-content-type-options"]) == (200, "hello", "nosniff")
    big = client.post("/anything", content=b"x" * (100 + 64 * 1024 + 1))  # over the photo + the form's fields
    assert big.status_code == 413 and big.json() == {"detail": "upload over the limit of 100 bytes"}
    assert service.count("atelier_requests_total", endpoint="unmatched", method="GET", status="200") == 1.0
    assert service.count("atelier_requests_total", endpoint="unmatched", method="POST", status="413") == 1.0
    assert service.count("atelier_request_errors_total", endpoint="unmatched", kind="client") == 1.0
    service = _Service()
    got = TestClient(Guard(_broken, service)).get("/anything")
    assert got.status_code == 500 and got.json() == {"detail": "internal error: RuntimeError"}
    assert service.count("atelier_request_errors_total", endpoint="unmatched", kind="server") == 1.0
