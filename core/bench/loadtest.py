"""Open-loop HTTP load generator for the retrieval service (no coordinated omission).

Why open loop. A closed-loop generator (N workers, each sending its next request when its last one
returned) slows down when the service does: the requests it should have sent during a stall are never
sent, so a half-second stall shows up as a handful of slow requests instead of the dozens that real,
independent users would have waited on ("coordinated omission"; wrk2 fixes it the same way). Here every
send time is planned up front at the offered rate, the scheduler fires each request as a task at its
time whatever the earlier ones are doing, and a request's latency is its completion time minus its
PLANNED send time: a stall of the service, or of the generator itself, is charged to every request that
should have gone out during it.

Arrivals are ``"poisson"`` (exponential gaps, seeded: many independent users; :func:`plan_arrivals`)
or ``"uniform"`` (one constant rate, as wrk2). Requests sent in the warm-up (same rate) are not counted.
A send that leaves more than ``late_ms`` after its planned time is counted in ``late_sends``: if that is
more than a few percent of the requests, the generator, not the service, set the pace, and the run should
be repeated with the generator on its own core(s) (:func:`serve_and_load` pins the two apart).

The request mix (:data:`MIX`) is built from the catalogue by :func:`workload`; :func:`run_load` (async)
or :func:`load` runs it against a URL; :func:`serve_and_load` starts ``python -m core serve`` itself,
waits for ``/readyz``, runs the load and stops the service. ``python -m core bench serve`` runs it
from the command line and prints the result as JSON.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import mimetypes
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

import httpx
import numpy as np
import pandas as pd

from core.bench.command import BenchContext
from core.bench.measure import reference_s
from core.config import PROJECT_ROOT
from core.data.load import load_catalog

# Share of requests per endpoint: browsing (similar items, product pages) and the logged-in home page
# (customer recommendations) dominate; photo search is rare. Kinds the catalogue cannot supply (no
# photos, no customers) are dropped and the rest renormalised (:attr:`Workload.mix`).
MIX: dict[str, float] = {
    "similar": 0.35,        # GET /products/{id}/similar
    "customer_recs": 0.25,  # GET /customers/{id}/recommendations
    "search_text": 0.15,    # POST /search/text
    "product": 0.10,        # GET /products/{id}
    "recs_new": 0.08,       # POST /recommendations (a visitor's liked products, no purchase history)
    "image": 0.05,          # GET /products/{id}/image
    "search_image": 0.02,   # POST /search/image (multipart photo upload)
}
SIMILAR_KINDS: dict[str, float] = {"hybrid": 0.8, "image": 0.1, "text": 0.1}  # "kind" of /similar requests
N_POPULAR = 50  # popular text queries: repeated, so a query cache sees hits (the other half are fresh)
N_PHOTOS = 20  # photos read once for /search/image uploads
N_LIKED = 3  # products liked by a visitor in POST /recommendations
N_ERROR_EXAMPLES = 5
LATE_WARN = 0.05  # more late sends than this share of requests: the generator, not the service, set the pace
START_LEAD_S = 0.05  # the clock starts this far ahead so the first sends are not late by construction
DRAIN_MARGIN_S = 5.0  # after the last send, requests still open timeout_s + this later are cancelled
# --publish-during: the swap window runs from the publish to the first answer from the new version plus this
# tail (the new version's first requests: empty query caches, anything it initialises lazily)
SWAP_TAIL_S = 2.0
VERSION_FIELD = re.compile(rb'"version":\s*"([^"]{1,64})"')


# ---------------------------------------------------------------- configuration and requests

@dataclass(frozen=True)
class LoadConfig:
    qps: float = 100.0  # offered rate, requests per second, in the warm-up and the measurement
    seconds: float = 60.0  # measured window
    warmup_s: float = 5.0  # sent at the same rate before the window, not counted (connections, caches)
    arrivals: str = "poisson"  # "poisson": random (exponential) gaps, seeded; "uniform": constant rate, like wrk2
    seed: int = 0  # arrival times and the requests drawn from the workload
    timeout_s: float = 10.0  # a request not answered this long after it was sent is an error
    late_ms: float = 5.0  # a send leaving more than this after its planned time counts as late
    # Requests in flight at most: a send that would exceed it is not made and counts as an error (the
    # service is far behind by then), so the client never queues requests behind its own pool.
    max_connections: int = 256
    # Idle connections kept open after a burst (more are closed as they come back)
    keepalive: int = 32


@dataclass(frozen=True)
class Call:
    """One request: ``name`` labels its endpoint in the results; the rest is passed to ``httpx``
    (``files`` is an httpx files mapping, e.g. ``{"file": ("x.jpg", data, "image/jpeg")}``)."""
    name: str
    method: str
    path: str
    params: dict | None = None
    json: dict | None = None
    files: dict | None = None


# ---------------------------------------------------------------- the workload

def _column(products: pd.DataFrame, name: str) -> np.ndarray:
    """(n_products,) object array of str: the column lower-cased and stripped, "" where absent."""
    if name not in products.columns:
        return np.full(len(products), "", dtype=object)
    return products[name].fillna("").astype(str).str.strip().str.lower().to_numpy(dtype=object)


def _phrase(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def popular_queries(products: pd.DataFrame, n: int = N_POPULAR) -> list[str]:
    """The ``n`` most frequent "colour product_type" pairs ("black dress"), most frequent first; the most
    frequent titles when the catalogue has neither column."""
    pairs = pd.Series([_phrase(c, t) for c, t in zip(_column(products, "colour"), _column(products, "product_type"))],
                      dtype=object)
    if not (pairs != "").any():
        pairs = pd.Series(_column(products, "title"), dtype=object)
    counts = pairs[pairs != ""].value_counts(sort=False)
    # Ties broken by the text so the pool does not depend on row order.
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [text for text, _ in ranked[:n]]


def _photo_pool(paths: Sequence[str], n: int, rng: np.random.Generator) -> list[tuple[str, bytes, str]]:
    """Up to ``n`` photos as httpx file tuples (name, bytes, mime type), read once; unreadable ones skipped."""
    pool = []
    for i in rng.permutation(len(paths)):
        path = Path(paths[i])
        try:
            data = path.read_bytes()
        except OSError:
            continue
        pool.append((path.name, data, mimetypes.guess_type(path.name)[0] or "application/octet-stream"))
        if len(pool) == n:
            break
    return pool


class Workload:
    """A request mix drawn from a catalogue: ``workload(rng) -> Call``. Stateless between calls: the
    sequence of requests depends only on the generator passed in.

    Attributes: ``mix`` {name: share}, the shares actually drawn (:data:`MIX` without the kinds the data
    cannot supply, renormalised); ``popular`` the repeated text queries."""

    def __init__(self, products: pd.DataFrame, customer_ids: Sequence[str], models: Sequence[str], seed: int = 0,
                 n_popular: int = N_POPULAR, n_photos: int = N_PHOTOS):
        if len(products) == 0:
            raise ValueError("workload: the catalogue has no products")
        rng = np.random.default_rng(seed)
        self.ids = products.index.astype(str).to_numpy(dtype=object)
        paths = (products["image_path"].fillna("").astype(str).to_numpy(dtype=object)
                 if "image_path" in products.columns else np.full(len(products), "", dtype=object))
        has_photo = paths != ""
        self.photo_ids = self.ids[has_photo]
        self.photos = _photo_pool(list(paths[has_photo]), n_photos, rng)
        self.customers = np.asarray([str(c) for c in customer_ids], dtype=object)
        self.models = [str(m) for m in models]
        self.popular = popular_queries(products, n_popular)
        self._colour, self._type = _column(products, "colour"), _column(products, "product_type")
        self._title_words = [t.split() for t in _column(products, "title")]
        kinds = {k: w for k, w in SIMILAR_KINDS.items() if k != "image" or len(self.photo_ids)}
        self._similar_kinds = list(kinds)
        self._similar_cum = np.cumsum(list(kinds.values())) / sum(kinds.values())

        can = {"similar": True, "product": True,
               "customer_recs": len(self.customers) > 0 and len(self.models) > 0,
               "recs_new": len(self.models) > 0,
               "search_text": len(self.popular) > 0,
               "image": len(self.photo_ids) > 0,
               "search_image": len(self.photos) > 0}
        names = [name for name in MIX if can[name]]
        weights = np.array([MIX[name] for name in names]) / sum(MIX[name] for name in names)
        self.mix: dict[str, float] = dict(zip(names, weights.tolist()))
        self._names, self._cum = names, np.cumsum(weights)
        self._draw: dict[str, Callable[[np.random.Generator], Call]] = {
            "similar": self._similar, "customer_recs": self._customer_recs, "search_text": self._search_text,
            "product": self._product, "recs_new": self._recs_new, "image": self._image,
            "search_image": self._search_image}

    def __call__(self, rng: np.random.Generator) -> Call:
        return self._draw[self._names[_pick(self._cum, rng)]](rng)

    def _id(self, rng: np.random.Generator, ids: np.ndarray | None = None) -> str:
        ids = self.ids if ids is None else ids
        return quote(ids[rng.integers(len(ids))], safe="")

    def _similar(self, rng: np.random.Generator) -> Call:
        kind = self._similar_kinds[_pick(self._similar_cum, rng)]
        # An image-only neighbour query needs a product with a photo.
        pid = self._id(rng, self.photo_ids if kind == "image" else None)
        return Call("similar", "GET", f"/products/{pid}/similar", params={"k": 10, "kind": kind})

    def _customer_recs(self, rng: np.random.Generator) -> Call:
        cid = self._id(rng, self.customers)
        params = {"k": 12, "model": self.models[rng.integers(len(self.models))],
                  "exclude_bought": "true" if rng.random() < 0.5 else "false"}
        return Call("customer_recs", "GET", f"/customers/{cid}/recommendations", params=params)

    def _search_text(self, rng: np.random.Generator) -> Call:
        if rng.random() < 0.5:
            text = self.popular[rng.integers(len(self.popular))]
        else:
            # A fresh phrase: a random product's colour and type and a word of its title.
            i = rng.integers(len(self.ids))
            colour, kind = self._colour[i], self._type[i]
            words = [w for w in self._title_words[i] if w not in colour.split() + kind.split()]
            text = _phrase(colour, kind, words[rng.integers(len(words))] if words else "")
            text = text or self.popular[rng.integers(len(self.popular))]
        return Call("search_text", "POST", "/search/text", json={"text": text, "k": 10, "kind": "hybrid"})

    def _product(self, rng: np.random.Generator) -> Call:
        return Call("product", "GET", f"/products/{self._id(rng)}")

    def _recs_new(self, rng: np.random.Generator) -> Call:
        liked = rng.choice(len(self.ids), size=min(N_LIKED, len(self.ids)), replace=False)
        body = {"liked": [str(self.ids[i]) for i in liked], "k": 12,
                "model": self.models[rng.integers(len(self.models))]}
        return Call("recs_new", "POST", "/recommendations", json=body)

    def _image(self, rng: np.random.Generator) -> Call:
        return Call("image", "GET", f"/products/{self._id(rng, self.photo_ids)}/image")

    def _search_image(self, rng: np.random.Generator) -> Call:
        photo = self.photos[rng.integers(len(self.photos))]
        return Call("search_image", "POST", "/search/image", files={"file": photo})


def _pick(cumulative: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with the probabilities whose running sum is ``cumulative`` (last entry 1)."""
    return min(int(np.searchsorted(cumulative, rng.random(), side="right")), len(cumulative) - 1)


def workload(products: pd.DataFrame, customer_ids: Sequence[str], models: Sequence[str], seed: int = 0) -> Workload:
    """The service's request mix (:data:`MIX`) over a catalogue. ``products`` is indexed by product_id with
    columns title, colour, product_type, image_path (absolute, "" when none); ``customer_ids`` are customers
    with purchases; ``models`` the recommender names to spread requests over. ``seed`` fixes the photo pool;
    which requests come out is decided by the generator passed to each call."""
    return Workload(products, customer_ids, models, seed)


# ---------------------------------------------------------------- the open loop

def plan_arrivals(cfg: LoadConfig) -> tuple[np.ndarray, int]:
    """(n_warmup + n_measured,) float64 planned send times in seconds from the start, increasing, and
    n_warmup. The warm-up fills [0, warmup_s), the measured window [warmup_s, warmup_s + seconds).
    Each window gets round(qps * duration) sends: "uniform" evenly spaced; "poisson" at times drawn
    uniformly and sorted, i.e. a Poisson process of rate ``qps`` conditioned on that count (exponential
    gaps and their bursts, but the offered rate is exactly ``qps`` in every run), seeded by ``cfg.seed``."""
    if cfg.qps <= 0 or cfg.seconds < 0 or cfg.warmup_s < 0:
        raise ValueError(f"LoadConfig: qps must be > 0 and seconds, warmup_s >= 0, got {cfg}")
    n_warm, n = round(cfg.warmup_s * cfg.qps), round(cfg.seconds * cfg.qps)
    if cfg.arrivals == "uniform":
        warm, measured = np.arange(n_warm) / cfg.qps, np.arange(n) / cfg.qps
    elif cfg.arrivals == "poisson":
        rng = np.random.default_rng([cfg.seed, 0])
        warm, measured = np.sort(rng.uniform(0, cfg.warmup_s, n_warm)), np.sort(rng.uniform(0, cfg.seconds, n))
    else:
        raise ValueError(f"LoadConfig.arrivals: expected 'poisson' or 'uniform', got {cfg.arrivals!r}")
    return np.concatenate([warm, cfg.warmup_s + measured]), n_warm


def encode_call(call: Call, url: str) -> bytes:
    """The HTTP/1.1 request of ``call`` as bytes (httpx builds the query string, JSON and multipart bodies)."""
    request = httpx.Request(call.method, url.rstrip("/") + call.path, params=call.params, json=call.json,
                            files=call.files)
    body = request.read()
    target = request.url.raw_path.decode()
    headers = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "connection")
    return f"{call.method} {target} HTTP/1.1\r\n{headers}\r\n".encode() + body


class Connections:
    """Keep-alive HTTP/1.1 connections to one host over asyncio streams: a request is written whole and its
    response read by Content-Length (or chunks). A few lines of asyncio instead of httpx's client, whose
    pool costs ~3 ms of CPU a request (measured at 100 QPS): the generator must not be what is measured."""

    def __init__(self, url: str, keepalive: int = 32):
        parsed = httpx.URL(url)
        self.keepalive = keepalive
        self.host, self.port = parsed.host, parsed.port or 80
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def request(self, data: bytes) -> tuple[int, str | None]:
        """Send one encoded request; its response's status and the ``version`` a JSON body names (None
        when it names none; the body is otherwise dropped). A kept-alive
        connection the server has closed meanwhile (uvicorn closes idle ones after 5 s) is retried once on
        a new connection, as browsers and HTTP clients do."""
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, data)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                if isinstance(e, asyncio.IncompleteReadError) and e.partial:
                    raise  # the server had started answering: a real error
        return await self._exchange(*await asyncio.open_connection(self.host, self.port), data)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
                        ) -> tuple[int, str | None]:
        try:
            writer.write(data)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = b""
            if headers.get("transfer-encoding", "").lower() == "chunked":
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    body += (await reader.readexactly(size + 2))[:-2]
                await reader.readuntil(b"\r\n")
            else:
                body = await reader.readexactly(int(headers.get("content-length", "0")))
        except BaseException:
            writer.close()
            raise
        if headers.get("connection", "").lower() == "close" or len(self.idle) >= self.keepalive:
            writer.close()
        else:
            self.idle.append((reader, writer))
        found = VERSION_FIELD.search(body) if "json" in headers.get("content-type", "") else None
        return status, found.group(1).decode("latin-1") if found else None

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


async def _send(client: Connections, call: Call, data: bytes, planned: float, timeout_s: float,
                out: list | None) -> None:
    """Send ``call`` (encoded as ``data``); append (name, latency_s, send_lag_s, completion time, error or
    None, the version the answer names or None, planned send time) to ``out`` (None for a warm-up request),
    also when cancelled. Times are event-loop clock seconds; latency counts from ``planned``."""
    loop = asyncio.get_running_loop()
    lag = loop.time() - planned
    error, version = "CancelledError", None  # unless the request ends
    try:
        async with asyncio.timeout(timeout_s):
            status, version = await client.request(data)
        error = f"HTTP {status}" if status >= 400 else None
    except Exception as e:  # noqa: BLE001 - any failure of the request is an error to count, not to raise
        error = type(e).__name__
    finally:
        if out is not None:
            done = loop.time()
            out.append((call.name, done - planned, lag, done, error, version, planned))


def _ms(seconds: np.ndarray, q: float | None = None) -> float | None:
    """Percentile ``q`` (None: the maximum) of the finite entries, in ms; None when there are none."""
    seconds = seconds[np.isfinite(seconds)]
    if not len(seconds):
        return None
    return round(float(seconds.max() if q is None else np.percentile(seconds, q)) * 1e3, 3)


def _latencies(latency: np.ndarray) -> dict:
    return {"p50_ms": _ms(latency, 50), "p90_ms": _ms(latency, 90), "p99_ms": _ms(latency, 99), "max_ms": _ms(latency)}


def _summary(records: list[tuple], n_planned: int, start: float, cfg: LoadConfig) -> dict:
    """The result dict of :func:`run_load` from the measured requests' records (see :func:`_send`; a request
    never sent has latency NaN)."""
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


def _swap_summary(records: list[tuple], published_at: float, new_version: str, start: float) -> dict:
    """The requests around a version swap (see :func:`run_load`'s ``publish``) against the others. The swap
    window runs from ``published_at`` (the new version's manifest in place) to the first answer naming
    another version than the answers before (normally ``new_version``) plus SWAP_TAIL_S; a request is in it if it was in flight at any time of it. Times are
    event-loop seconds; ``start`` is the start of the measured window."""
    def part(rs: list[tuple]) -> dict:
        s = _summary(rs, len(rs), start, LoadConfig(seconds=1.0))
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


async def run_load(url: str, next_call: Callable[[np.random.Generator], Call], cfg: LoadConfig,
                   publish: tuple[float, Callable[[], str]] | None = None) -> dict:
    """Offer ``cfg.qps`` requests per second drawn from ``next_call`` to the service at ``url``, open loop.

    Every send time is planned up front (:func:`plan_arrivals`); the scheduler sleeps until each, fires the
    request as a task and moves on, never waiting for answers. Latency = completion - planned send time,
    for every measured request, errors included (a timeout counts as at least ``timeout_s``). Errors are
    exceptions (connection refused, timeout) and HTTP statuses >= 400, and requests not sent: one that
    would have been the ``max_connections + 1``-th in flight, and all the rest once the generator is more
    than ``timeout_s`` behind its plan (the run stops there rather than going on for minutes). Requests
    still open ``timeout_s`` + 5 s after the last send are cancelled (errors).

    Returns {offered_qps (planned measured requests / seconds), achieved_qps (successful measured
    responses / (last completion - measurement start)), requests, errors, late_sends (send lag >
    late_ms), max_send_lag_ms, seconds, latency_ms {p50_ms, p90_ms, p99_ms, max_ms} over all endpoints
    (requests not sent have none; None if no request was sent), endpoints {name: {count, errors, p50_ms,
    p90_ms, p99_ms, max_ms}} (most requested first), error_examples (up to 5 distinct "name: HTTP status",
    "name: ExceptionType" or "name: not sent (why)"), warnings (a list, e.g. the generator sent more than 5%
    of requests late), warmup_requests, generator_cpu_s (CPU seconds of this whole process over the run,
    warm-up included), wall_s}.

    ``publish`` = (seconds into the measured window, fn): ``fn()`` runs then, on a thread (the sends go on),
    publishes a new version and returns its name; the result then has ``swap`` (:func:`_swap_summary`:
    latencies of the swap window and of the rest, apart, and when the new version first answered)."""
    times, n_warm = plan_arrivals(cfg)
    rng = np.random.default_rng([cfg.seed, 1])  # a stream of its own: the arrivals do not shift the requests
    records: list[tuple] = []
    abandoned = ""
    cpu0, wall0 = _self_cpu_s(), time.perf_counter()
    client = Connections(url, cfg.keepalive)
    try:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task] = set()
        start = loop.time() + START_LEAD_S
        published: list[tuple[float, str]] = []

        async def publish_at(at_s: float, fn: Callable[[], str]) -> None:
            await asyncio.sleep(max(0.0, start + cfg.warmup_s + at_s - loop.time()))
            version = await loop.run_in_executor(None, fn)
            published.append((loop.time(), version))

        publisher = asyncio.create_task(publish_at(*publish)) if publish is not None else None
        for i, t in enumerate(times):
            call = next_call(rng)  # drawn and encoded before the sleep, so their cost does not delay the send
            data = encode_call(call, url)
            planned = start + t
            delay = planned - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            out = records if i >= n_warm else None
            if not abandoned and loop.time() - planned > cfg.timeout_s:
                abandoned = f"not sent (the generator fell more than {cfg.timeout_s:g} s behind its plan)"
            if abandoned or len(pending) >= cfg.max_connections:
                if out is not None:
                    now = loop.time()
                    why = abandoned or f"not sent ({cfg.max_connections} requests in flight)"
                    out.append((call.name, np.nan, now - planned, now, why, None, planned))
                continue
            task = asyncio.create_task(_send(client, call, data, planned, cfg.timeout_s, out))
            pending.add(task)  # the loop holds tasks weakly: keep each until it is done
            task.add_done_callback(pending.discard)
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=cfg.timeout_s + DRAIN_MARGIN_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if publisher is not None:
            await publisher  # raises what publishing raised
    finally:
        client.close()
    result = _summary(records, len(times) - n_warm, start + cfg.warmup_s, cfg)
    if publish is not None:
        swap = result["swap"] = _swap_summary(records, *published[0], start + cfg.warmup_s)
        if swap["first_new_answer_s"] is None:
            result["warnings"].append(f"no answer named the new version {swap['new_version']} before the run "
                                      "ended: publish earlier or run longer (the window runs to the end)")
    if abandoned:
        result["warnings"].append(f"the generator fell more than {cfg.timeout_s:g} s behind its plan and stopped "
                                  "sending: lower qps or give it more CPU")
    result.update(warmup_requests=n_warm, generator_cpu_s=round(_self_cpu_s() - cpu0, 3),
                  wall_s=round(time.perf_counter() - wall0, 3))
    return result


def load(url: str, next_call: Callable[[np.random.Generator], Call], cfg: LoadConfig,
         publish: tuple[float, Callable[[], str]] | None = None) -> dict:
    """:func:`run_load` from synchronous code (runs its own event loop)."""
    return asyncio.run(run_load(url, next_call, cfg, publish))


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- a service started here

def server_command(catalog: str | None, port: int) -> list[str]:
    """The command that starts the service on 127.0.0.1:``port`` (run from the project root)."""
    return ([sys.executable, "-m", "core", "serve", "--port", str(port), "--host", "127.0.0.1"]
            + (["--catalog", catalog] if catalog else []))


# ---------------------------------------------------------------- the floor: a service that does nothing

NULL_BODY = b'{"ready":true,"version":"null","results":[]}'
NULL_RESPONSE = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                 % len(NULL_BODY) + NULL_BODY)


async def _null_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Every request on a kept-alive connection, read whole (headers and body), answered at once with the
    same small JSON body."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            writer.write(NULL_RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        writer.close()


async def null_service(port: int) -> None:
    """A service that answers every request with 200 and no work, on 127.0.0.1:``port``, forever: loaded
    with the same schedule, it measures the latency the generator, the loopback and an event loop add by
    themselves (``bench serve --floor``)."""
    server = await asyncio.start_server(_null_connection, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def null_command(_catalog: str | None, port: int) -> list[str]:
    return [sys.executable, "-m", "core.bench.loadtest", "null", str(port)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, n_bytes: int = 4000) -> str:
    try:
        return path.read_bytes()[-n_bytes:].decode("utf-8", "replace")
    except OSError:
        return "(log unreadable)"


def _wait_ready(url: str, proc: subprocess.Popen | None, log: Path | None, timeout_s: float,
                interval_s: float = 0.5) -> dict:
    """Poll GET /readyz every ``interval_s`` until it answers 200; its JSON (or {}). Raises RuntimeError if
    ``proc`` exits first, TimeoutError after ``timeout_s``, both with the end of the service's log."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as client:
        while True:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the service exited with code {proc.returncode} before it was ready "
                                   f"(command: {' '.join(proc.args)}); its log {log} ends:\n{_tail(log)}")
            try:
                response = client.get("/readyz")
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError:
                        body = {}
                    return body if isinstance(body, dict) else {}
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                tail = f"; its log {log} ends:\n{_tail(log)}" if log else ""
                raise TimeoutError(f"{url}/readyz did not answer 200 within {timeout_s:.0f} s{tail}")
            time.sleep(interval_s)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, 10 s to exit, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (sched_setaffinity(pid) moves only the thread whose id is ``pid``)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass  # a thread that ended meanwhile


def _process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid``, all threads (from /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


MANIFEST_BODY = ("catalog", "limit", "backbone", "build", "models", "cutoff", "fingerprint")  # what a version hashes


def another_version(m: dict) -> dict:
    """The manifest a build of ``m``'s catalogue would publish with its recommenders in the other order (with
    fewer than two: with ``popularity`` added, or removed): a new version, loaded by the service as any new
    one is (catalogue, indexes, every model, warm-up), whose artefacts are all in the cache already."""
    from core.cache import digest
    models = list(m["models"])
    if len(models) >= 2:
        models = models[::-1]
    else:
        models = [x for x in models if x != "popularity"] if "popularity" in models else models + ["popularity"]
    body = {key: m[key] for key in MANIFEST_BODY} | {"models": models}
    return {"version": digest(body)[:16], **body, "published": time.time()}


def serve_and_load(catalog: str | None, cfg: LoadConfig = LoadConfig(), url: str | None = None,
                   models: Sequence[str] = ("graphsage", "two_tower"), port: int | None = None,
                   ready_timeout_s: float = 900.0, pin: bool = True, floor: bool = False,
                   publish_at_s: float | None = None) -> dict:
    """Load-test the service on catalogue ``catalog`` (a :func:`core.data.load.load_catalog` spec; None: the
    default). With ``url`` None, start it here (:func:`server_command` on ``port`` or a free one, output to
    a temporary log), wait until GET /readyz answers 200, run :func:`run_load` with the :func:`workload` of
    the catalogue, then stop it (SIGTERM, then SIGKILL after 10 s). With a ``url``, load that service.

    Pinning (``pin``, the service started here, at least two usable cores): the service runs on the last
    core and this process (the generator) on the others, so the two do not compete; the generator's
    affinity is restored afterwards.

    Returns the :func:`run_load` dict plus url, server_started, catalog, models, config (the LoadConfig as a
    dict), mix (the request shares drawn), reference_s (:func:`core.bench.measure.reference_s`, measured first,
    before the service starts), pinning ({"server": [cpu], "generator": [cpus]} or {"note": why not}),
    version (when /readyz gives one), and for a service started here server_log (its log file) and
    server_cpu_s (its CPU seconds during the run, warm-up included).

    ``floor``: start :func:`null_service` instead of the service (same pinning, same schedule, ``models``
    as given): the latencies are then the measurement's own, the floor under the service's.

    ``publish_at_s`` (``bench serve --publish-during``; the service started here, on the cache this process
    sees, ``$ATELIER_CACHE``): that many seconds into the measured window, publish :func:`another_version` of
    the catalogue's current version, so the service swaps to it under the load; the result's ``swap`` says
    how the requests of the swap window fared against the rest (:func:`run_load`). The version published
    before is published again once the service has stopped."""
    start_here = url is None
    restore = publish_fn = None
    if publish_at_s is not None:
        from core.cache import ArtefactCache
        from core.data.load import default_catalog_spec
        from core.serve.release import current, publish
        if not start_here or floor:
            raise ValueError("publish_at_s: only with the service started here (no url, no floor)")
        if not 0 <= publish_at_s < cfg.seconds:
            raise ValueError(f"publish_at_s: {publish_at_s} is not within the measured {cfg.seconds} s")
        cache = ArtefactCache()
        restore = current(cache, catalog or default_catalog_spec())
        if restore is None:
            raise ValueError(f"publish_at_s: {catalog or default_catalog_spec()} has no published version in "
                             f"{cache.root} (python -m core build publishes one)")
        variant = another_version(restore)

        def publish_fn() -> str:
            publish(cache, variant | {"published": time.time()})
            return variant["version"]
    if start_here:
        port = port or _free_port()
        url = f"http://127.0.0.1:{port}"
    result: dict = {"url": url, "server_started": start_here, "catalog": catalog, "models": list(models),
                    "config": dataclasses.asdict(cfg), "reference_s": reference_s()}
    if floor:
        result["floor"] = "a null service (200 at once, no work) stood in for the service"
    saved = os.sched_getaffinity(0)
    allowed = sorted(saved)
    pinned = start_here and pin and len(allowed) >= 2
    proc: subprocess.Popen | None = None
    log: Path | None = None
    try:
        if start_here:
            fd, name = tempfile.mkstemp(prefix="atelier-serve-", suffix=".log")
            log = Path(name)
            with os.fdopen(fd, "wb") as out:
                # The child inherits this thread's mask at fork, so every thread it ever starts is pinned.
                if pinned:
                    os.sched_setaffinity(0, {allowed[-1]})
                try:
                    command = (null_command if floor else server_command)(catalog, port)
                    proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                finally:
                    os.sched_setaffinity(0, saved)
            if pinned:
                _set_affinity(os.getpid(), set(allowed[:-1]))
                result["pinning"] = {"server": allowed[-1:], "generator": allowed[:-1]}
            else:
                result["pinning"] = {"note": "pinning off" if not pin else f"only {len(allowed)} usable core"}
            result["server_log"] = str(log)
        else:
            result["pinning"] = {"note": "service not started here (url given): not pinned"}
        data = load_catalog(catalog)  # while the service loads
        customers = data.purchases["customer_id"].astype(str).unique().tolist()
        ready = _wait_ready(url, proc, log, ready_timeout_s)
        if "version" in ready:
            result["version"] = ready["version"]
        if not floor:
            models = result["models"] = list(ready.get("models", models))  # what the service serves (maybe none)
        work = workload(data.products, customers, models, cfg.seed)
        result["mix"] = {name: round(share, 4) for name, share in work.mix.items()}
        cpu0 = _process_cpu_s(proc.pid) if proc is not None else None
        result.update(load(url, work, cfg, (publish_at_s, publish_fn) if publish_fn else None))
        cpu1 = _process_cpu_s(proc.pid) if proc is not None else None
        if cpu0 is not None and cpu1 is not None:
            result["server_cpu_s"] = round(cpu1 - cpu0, 3)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode} during the load; "
                               f"its log {log} ends:\n{_tail(log)}")
    finally:
        if proc is not None:
            _stop(proc)
        if pinned:
            _set_affinity(os.getpid(), saved)
        if restore is not None:
            publish(cache, restore)
    return result


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    """Starts `python -m core serve` itself (or loads --url) and loads it open-loop."""
    if args.qps <= 0 or args.seconds <= 0:
        sys.exit("error: --qps and --seconds must be positive")
    cfg = LoadConfig(qps=args.qps, seconds=args.seconds, warmup_s=args.warmup)
    if args.floor and args.url:
        sys.exit("error: --floor starts a null service of its own; it cannot load --url")
    if args.publish_during and (args.floor or args.url):
        sys.exit("error: --publish-during publishes into the cache of the service it starts: not with --floor "
                 "or --url")
    publish_at = (args.seconds / 2 if args.publish_at is None else args.publish_at) if args.publish_during else None
    try:
        return serve_and_load(ctx.spec, cfg, url=args.url, pin=not args.no_pin, floor=args.floor,
                              publish_at_s=publish_at)
    except ValueError as e:  # --publish-at outside the run, or no version published to start from
        sys.exit(f"error: {e}")


if __name__ == "__main__":  # python -m core.bench.loadtest null PORT: the null service (see serve_and_load's floor)
    if sys.argv[1:2] != ["null"] or len(sys.argv) != 3:
        sys.exit("usage: python -m core.bench.loadtest null PORT")
    asyncio.run(null_service(int(sys.argv[2])))
