"""The service's Prometheus metrics: requests, errors, latency per endpoint and stage, encoder batches, swaps."""
from __future__ import annotations

import contextlib
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # no *_created series: they double the output and no dashboard reads them
LATENCY_BUCKETS = (.0005, .001, .0025, .005, .0075, .01, .015, .025, .05, .075, .1, .25, .5, 1, 2.5, 5, 10)


class Metrics:
    """The service's Prometheus metrics, in a registry of its own (several services may share a process)."""

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("atelier_requests", "HTTP requests answered", ["endpoint", "method", "status"],
                                registry=r)
        self.errors = Counter("atelier_request_errors", "requests answered with an error status (4xx: the "
                              "client's, 5xx: the service's)", ["endpoint", "kind"], registry=r)
        self.latency = Histogram("atelier_request_seconds", "request latency, first byte in to response out",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.stages = Histogram("atelier_stage_seconds", "time per stage of a request: encode (text or photo "
                                "to a vector, including the micro-batch wait), search (index or model), "
                                "lookup (ids to records)", ["endpoint", "stage"], buckets=LATENCY_BUCKETS,
                                registry=r)
        self.batch = Histogram("atelier_encoder_batch_size", "queries per encoder pass", ["encoder"],
                               buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.query_cache = Counter("atelier_query_cache", "query vector cache lookups", ["encoder", "result"],
                                   registry=r)
        self.version = Gauge("atelier_artefact_version", "1 for the artefact version being served",
                             ["version"], registry=r)
        self.swaps = Counter("atelier_version_swaps", "swaps to a newly published version", registry=r)
        self.swap_failures = Counter("atelier_version_swap_failures", "newly published versions that could not be "
                                     "loaded or swapped in (the version served before goes on)", registry=r)
        self.added = Counter("atelier_products_added", "products added by POST /products", registry=r)

    @contextlib.contextmanager
    def stage(self, endpoint: str, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.stages.labels(endpoint, name).observe(time.perf_counter() - t)
