"""The retrieval service: an HTTP API (FastAPI) over a catalogue's current artefact version.

Products, their photos and embeddings, similar products, text and photo search, recommendations for
known and new customers, and new products added without retraining. Text and photo queries share
encoder passes (:class:`core.serve.batching.MicroBatcher`) and are remembered (:class:`core.serve.batching.LRUCache`);
numerical work runs on worker threads, off the event loop. A watcher swaps to a newly published version
(:mod:`core.serve.release`) without a restart: a request keeps the version it started with to the end.
Prometheus metrics at ``/metrics``. ``python -m core serve`` runs it on uvicorn.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import faiss
import numpy as np
from fastapi import FastAPI, File, Form, HTTPException, Query, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from PIL import Image, UnidentifiedImageError
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               disable_created_metrics, generate_latest)
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.serve.batching import LRUCache, MicroBatcher, background_pool, lower_priority
from core.cache import ArtefactCache, digest
from core.data.load import default_catalog_spec
from core.embeddings.backbone import ImageError, ImageTooLarge, check_pixels, load_image
from core.embeddings.pipeline import BuildConfig
from core.serve.release import SERVED_MODELS, Hit, Release, added_products, current, load, prepare, publish
from core.serve.store import DamagedPhoto

log = logging.getLogger(__name__)

MAX_K = 100
MAX_PROBLEMS = 20  # problems listed by /readyz (n_problems counts them all)
MAX_TEXT = 500  # characters of a text query
MAX_IDS = 1000  # products per /embeddings call
PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The photo formats an upload may be in, and the suffix it is stored under (which sets its served content-type).
# Others (TIFF, GIF, BMP, ...) are refused with 415: fewer decoders facing the network, and none a shop needs.
# MPO: a JPEG with a multi-picture segment (many phones' photos), which Pillow names apart; stored as the JPEG it is
PHOTO_TYPES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "WEBP": ".webp"}
PHOTO_FORMATS = "JPEG, PNG or WebP"
PHOTO_DRAFT_SIDE = 1024  # a JPEG query photo is decoded at a reduced scale keeping both sides >= this (Image.draft)
ECHO_CHARS = 80  # at most this much of a client's input is echoed in an error message
ECHO_ITEMS = 10  # and at most this many of its ids (or validation errors)


@dataclass(frozen=True)
class ServiceConfig:
    catalog: str | None = None  # catalogue spec; None: default_catalog_spec()
    limit: int | None = None
    # what a first start builds and publishes when the catalogue has no published version yet
    backbone: str = "auto"
    models: tuple[str, ...] = SERVED_MODELS
    build: BuildConfig = BuildConfig()
    max_upload_bytes: int = 10 * 2**20
    # An uploaded photo with more pixels than this is refused (413) from its header, never decoded. The models
    # see 224-260 px and an H&M photo has 2 MP; 25 MP keeps a 24 MP camera's 6000x4000 and a 12 MP phone's
    # photos, and bounds one decode and its preprocessing to ~200 MB (measured: bench bombs, at_limit), where
    # PIL's own limit (179 MP) lets a 125 KB GIF take 1.5 GB.
    max_photo_pixels: int = 25_000_000
    # Photo decodes in flight (uploads, query photos); a request that finds them all taken waits up to
    # decode_wait_s for one, then gets 503 with Retry-After. Two: the heavy workers' number.
    max_decodes: int = 2
    decode_wait_s: float = 2.0
    # Micro-batching: a query waits at most this long for others to share its encoder pass. A pass over one
    # text takes milliseconds, so a few ms of waiting costs little and halves the passes at 100 QPS.
    batch_window_ms: float = 3.0
    max_batch: int = 32
    query_cache: int = 20_000  # text and photo query vectors remembered (LRU); ~2 KB each
    # Heavy work (encoders, searches of text and photo queries, new customers' lists) runs on threads this
    # many nice steps down, so the cheap lookups (/similar, products, known customers) never queue behind it.
    background_nice: int = 10
    background_workers: int = 2
    # Once serving, the watcher loads new versions this many nice steps down (below the heavy threads too): on
    # a busy core, loading a version is what waits, never a request.
    swap_nice: int = 19
    poll_s: float = 2.0  # how often the current version is checked; 0: never (no hot swap)
    retry_s: float = 5.0  # a failed first load is tried again after this long, doubling up to 5 min; 0: never


# ---------------------------------------------------------------- metrics

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


# ---------------------------------------------------------------- the service

class NotReady(Exception):
    pass


class Busy(Exception):
    """Every photo decode slot stayed taken for ``ServiceConfig.decode_wait_s``: answered 503, Retry-After."""


class Service:
    """The current :class:`Release` of one catalogue, its encoders' batchers and caches, and the watcher
    that swaps versions. ``release`` is replaced whole, never changed in place, by a swap."""

    def __init__(self, cfg: ServiceConfig = ServiceConfig(), cache: ArtefactCache | None = None):
        self.cfg, self.cache = cfg, cache or ArtefactCache()
        self.spec = cfg.catalog or default_catalog_spec()
        self.metrics = Metrics()
        self.release: Release | None = None
        self.load_error: str | None = None
        self.added = added_products(self.cache, self.spec)
        # added products re-added with less than they were stored with (or not at all), in words, for /readyz
        self.added_problems: list[str] = []
        self._adding = threading.Lock()  # one product added at a time, and never during a swap
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._failed_version: str | None = None
        # the published version last loaded: what the watcher compares current.json with (the version served
        # differs from it when the catalogue changed after the build; comparing with that reloaded every poll)
        self._published: str | None = None
        self._new_caches()
        self.text_batcher = MicroBatcher(self._encode_texts, cfg.max_batch, cfg.batch_window_ms,
                                         lambda n, _s: self.metrics.batch.labels("text").observe(n),
                                         cfg.background_nice)
        self.photo_batcher = MicroBatcher(self._encode_photos, cfg.max_batch, cfg.batch_window_ms,
                                          lambda n, _s: self.metrics.batch.labels("photo").observe(n),
                                          cfg.background_nice)
        self.heavy = background_pool(cfg.background_workers, "heavy", cfg.background_nice)
        self._decodes = threading.BoundedSemaphore(cfg.max_decodes)

    @contextlib.contextmanager
    def decoding(self):
        """One of ``cfg.max_decodes`` photo decode slots, held for the block; :class:`Busy` if none frees up
        within ``cfg.decode_wait_s``. Blocks the calling thread: never enter it on the event loop."""
        if not self._decodes.acquire(timeout=self.cfg.decode_wait_s):
            raise Busy(f"{self.cfg.max_decodes} photo(s) are being decoded; try again in a second")
        try:
            yield
        finally:
            self._decodes.release()

    def _new_caches(self) -> None:
        # keyed by text or photo digest; a new version may come with a new backbone, so it gets new caches
        self.text_cache: LRUCache[np.ndarray] = LRUCache(self.cfg.query_cache)
        self.photo_cache: LRUCache[np.ndarray] = LRUCache(self.cfg.query_cache // 10)

    # ------------------------------------------------------------ loading and swapping

    def start(self) -> None:
        """Load the current version (building and publishing one if there is none) in the background,
        then watch for new ones."""
        self._watcher = threading.Thread(target=self._run, name="release-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        self.text_batcher.close()
        self.photo_batcher.close()
        self.heavy.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        wait = self.cfg.retry_s
        while True:
            try:
                self.load_current()
                self.load_error = None
                break
            except Exception as e:  # the service stays up, not ready, says why in /readyz, and tries again
                log.exception("loading the artefact version failed; trying again in %.0f s", wait)
                self.load_error = f"{e.__class__.__name__}: {e} (trying again every {wait:.0f} s)"
            if wait <= 0 or self._stop.wait(wait):
                return
            wait = min(wait * 2, 300.0)
        # From now on this thread loads versions while requests are served: at the lowest priority, and its
        # FAISS searches on one core (OpenMP's thread count is the calling thread's own).
        lower_priority(self.cfg.swap_nice)
        faiss.omp_set_num_threads(1)
        while self.cfg.poll_s > 0 and not self._stop.wait(self.cfg.poll_s):
            try:
                self.check_for_new_version()
            except Exception:  # the watcher outlives any error: it is what brings the next version in
                log.exception("checking for a new version failed; still serving %s", self.release.version)

    def load_current(self) -> Release:
        """Load the catalogue's current version; with none published, build one and publish it."""
        m = current(self.cache, self.spec)
        if m is None:
            log.warning("no published version of %s: building one (python -m core build does this ahead)", self.spec)
            release = prepare(self.spec, self.cfg.limit, self.cfg.backbone, self.cfg.build, self.cfg.models,
                              self.cache)
            publish(self.cache, release.manifest)
        else:
            release = load(m, self.cache)
        self._swap_to(release)
        self._published = m["version"] if m is not None else release.version
        return release

    def check_for_new_version(self) -> bool:
        """Swap to the current version if it is newer than the one served; True if it swapped. A version
        that fails to load is logged and not tried again until another one is published."""
        m = current(self.cache, self.spec)
        if m is None or self.release is None or m["version"] in (self._published, self._failed_version):
            return False
        try:
            self._swap_to(load(m, self.cache, backbone=self.release.backbone))
            self._published = m["version"]
        except Exception:
            log.exception("version %s failed to load; still serving %s", m["version"], self.release.version)
            self._failed_version = m["version"]
            self.metrics.swap_failures.inc()
            return False
        self.metrics.swaps.inc()
        return True

    def _swap_to(self, release: Release) -> None:
        release.warm_up()
        problems = self._re_add(release)  # the bulk, while POST /products goes on adding to the served version
        with self._adding:
            problems += self._re_add(release)  # the products added meanwhile (the others are in: skipped)
            old, self.release = self.release, release
            self.added_problems = list(dict.fromkeys(problems + self.added.damage))
            self._new_caches()
        if old is not None:
            self.metrics.version.remove(old.version)
        self.metrics.version.labels(release.version).set(1)
        log.warning("serving version %s of %s%s", release.version, self.spec,
                    f" ({release.models_note})" if release.models_note else "")

    def _re_add(self, release: Release) -> list[str]:
        """Products added to earlier versions, added to this one (unless its catalogue now has them). One
        whose photo is gone or damaged is added without it; one that cannot be added at all is left out of
        this version (its record stays stored). Returns what went wrong, in words (also logged)."""
        problems = []
        try:
            records = self.added.records()
        except Exception as e:  # the store cannot be read at all (a folder not there, no permission...)
            message = f"added products cannot be read ({e.__class__.__name__}: {e}); none is served by this version"
            log.exception(message)
            return [message]
        for record in records:
            if release.has_product(record["id"]):
                continue
            try:
                vectors, path, problem = self._encode_stored(release, record)
                release.add_product({**record, "image_path": path}, vectors)
                if problem:
                    log.error(problem)
            except Exception as e:
                problem = (f"added product '{record['id']}' left out of version {release.version}: "
                           f"{e.__class__.__name__}: {e}")
                log.exception(problem)
            if problem:
                problems.append(problem)
        return problems

    def _encode_stored(self, release: Release, record: dict) -> tuple[dict, str, str | None]:
        """A stored product's vectors (see :meth:`Release.encode_product`), its photo's path, and what went
        wrong in words: a photo that is gone, damaged or over the upload limits is left out (path "")."""
        path = self.added.photo_path(record)
        try:
            photo = self.added.photo(record)
            if photo is not None:  # one stored before the upload limits is held to them too
                _photo_suffix(photo, self.cfg.max_photo_pixels)
            return release.encode_product(record, photo), path, None
        except (DamagedPhoto, ImageError, HTTPException) as e:
            why = (e if isinstance(e, DamagedPhoto) else f"photo {path}: {e.detail}" if isinstance(e, HTTPException)
                   else f"photo {path} cannot be decoded ({e.__cause__ or e})")
            return (release.encode_product(record, None), "",
                    f"added product '{record['id']}': {why}; served without its photo")

    def ready(self) -> Release:
        if self.release is None:
            raise NotReady(self.load_error or "loading the artefact version")
        return self.release

    # ------------------------------------------------------------ encoders (micro-batched, cached)

    @staticmethod
    def _grouped(items: list[tuple[Release, object]], encode) -> list[np.ndarray]:
        """Encode (release, input) pairs one pass per release (a swap can split a batch)."""
        out: list[np.ndarray | None] = [None] * len(items)
        for release in {id(r): r for r, _ in items}.values():
            positions = [i for i, (r, _) in enumerate(items) if r is release]
            vectors = encode(release, [items[i][1] for i in positions])
            for i, v in zip(positions, vectors):
                out[i] = v
        return out

    def _encode_texts(self, items: list[tuple[Release, str]]) -> list[np.ndarray]:
        return self._grouped(items, lambda r, texts: r.backbone.encode_text(texts))

    def _encode_photos(self, items: list[tuple[Release, object]]) -> list[np.ndarray]:
        import torch
        return self._grouped(items, lambda r, tensors: r.backbone.encode_image(torch.stack(tensors)))

    async def background(self, fn, *args):
        """``fn(*args)`` on a heavy-work thread (see ``ServiceConfig.background_nice``), awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.heavy, functools.partial(fn, *args))

    async def text_vector(self, release: Release, text: str) -> np.ndarray:
        key = (release.version, text)
        vector = self.text_cache.get(key)
        self.metrics.query_cache.labels("text", "hit" if vector is not None else "miss").inc()
        if vector is None:
            vector = await self.text_batcher.submit((release, text))
            self.text_cache.put(key, vector)
        return vector

    def _photo_tensor(self, release: Release, photo: bytes):
        with self.decoding():
            return release.backbone.preprocess(load_image(io.BytesIO(photo), self.cfg.max_photo_pixels,
                                                          PHOTO_DRAFT_SIDE))

    def photo_descriptor(self, release: Release, photo: bytes) -> np.ndarray:
        with self.decoding():
            return release.built.photo_descriptor(io.BytesIO(photo))

    async def photo_vector(self, release: Release, photo: bytes) -> np.ndarray:
        key = (release.version, digest(photo))
        vector = self.photo_cache.get(key)
        self.metrics.query_cache.labels("photo", "hit" if vector is not None else "miss").inc()
        if vector is None:
            tensor = await self.background(self._photo_tensor, release, photo)
            vector = await self.photo_batcher.submit((release, tensor))
            self.photo_cache.put(key, vector)
        return vector


# ---------------------------------------------------------------- request bodies

Kind = Literal["image", "text", "hybrid", "texture"]


class TextQuery(BaseModel):
    text: str = Field(description="what to look for, e.g. 'red striped summer dress'", max_length=MAX_TEXT)
    k: int = Field(10, ge=1, le=MAX_K, strict=True)  # strict: true is not 1
    kind: Kind = Field("hybrid", description="the embedding space searched")

    @field_validator("text")
    @classmethod
    def _not_empty(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("empty query: type a few words, e.g. 'red striped dress'")
        return text.strip()


class NewCustomer(BaseModel):
    liked: list[str] = Field(default_factory=list, max_length=MAX_IDS, description="ids of products they like")
    text: str | None = Field(None, max_length=MAX_TEXT, description="what they are looking for, in words")
    k: int = Field(12, ge=1, le=MAX_K, strict=True)
    model: str | None = Field(None, description="a served recommender; default the version's first")

    @field_validator("text")
    @classmethod
    def _strip(cls, text: str | None) -> str | None:
        return text.strip() or None if text is not None else None


class EmbeddingQuery(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=MAX_IDS)
    kind: str = Field("hybrid", description="an embedding kind (image, text, hybrid, texture) or a served "
                                            "recommender's name (its item vectors)")


# ---------------------------------------------------------------- responses

def _hits(release: Release, hits: list[Hit]) -> list[dict]:
    return [{"id": h.id, "score": round(h.score, 6), "title": release.title(h.id)} for h in hits]


def _product(record: dict) -> dict:
    out = {k: v for k, v in record.items() if k != "image_path"}
    out["image_url"] = f"/products/{record['id']}/image" if record["image_path"] else None
    return out


def _echo(text: str, n: int = ECHO_CHARS) -> str:
    """A client's text as an error message may quote it: at most ``n`` characters, always encodable."""
    text = str(text)
    short = text[:n].encode("utf-8", "backslashreplace").decode("utf-8")
    return short if len(text) <= n else f"{short}... ({len(text):,} characters)"


def _listed(items, n: int = ECHO_ITEMS) -> str:
    shown = ", ".join(f"'{_echo(i)}'" for i in items[:n])
    return shown + (f" and {len(items) - n:,} more" if len(items) > n else "")


def _unknown_products(ids: list[str]) -> HTTPException:
    return HTTPException(404, f"unknown product id{'s' if len(ids) > 1 else ''} {_listed(ids)}")


def _check_kind(release: Release, kind: str) -> None:
    if kind not in release.kinds:
        raise HTTPException(422, f"kind '{_echo(kind)}' is not built in version {release.version}; one of "
                                 f"{', '.join(release.kinds)}")


def _model(release: Release, name: str | None) -> str:
    if not release.models:  # e.g. a catalogue without purchases: nothing was fitted, nothing will be until rebuilt
        raise HTTPException(503, f"no recommendations in version {release.version}: {release.models_note}; similar "
                                 "products and search work")
    name = name or next(iter(release.models), None)
    if name not in release.models:
        raise HTTPException(422, f"model '{_echo(name)}' is not served; served: "
                                 f"{', '.join(release.models) or 'none'}")
    return name


def _photo_error(e: ImageError) -> HTTPException:
    """413 for a photo over the pixel limit, 415 for an upload that is not an image at all, 422 for an image
    that cannot be decoded."""
    if isinstance(e, ImageTooLarge):
        return HTTPException(413, f"the photo is {e}: send a smaller one")
    if isinstance(e.__cause__, UnidentifiedImageError):
        return HTTPException(415, f"the upload is not a {PHOTO_FORMATS} image")
    return HTTPException(422, f"the photo cannot be decoded (damaged or truncated?): {_echo(e.__cause__, 200)}")


def _check_upload(data: bytes) -> None:
    if not data:
        raise HTTPException(422, f"the upload is empty: attach a photo ({PHOTO_FORMATS})")


def _photo_suffix(data: bytes, max_pixels: int) -> str:
    """The file suffix of an uploaded photo, from its header alone (``Image.open`` decodes nothing): 415 if
    it is not one of PHOTO_TYPES, 413 if it has more than ``max_pixels`` pixels (see :func:`_photo_error`).
    Whether it decodes is found when it is decoded, under a decode slot."""
    _check_upload(data)
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "WEBP"]) as img:  # JPEG's opener finds MPO
            fmt, (width, height) = img.format, img.size
    except UnidentifiedImageError:
        raise HTTPException(415, f"the upload is not a {PHOTO_FORMATS} image") from None
    except Image.DecompressionBombError:  # over twice Pillow's own limit, refused by Image.open itself
        raise HTTPException(413, f"the photo has far more pixels than the limit of {max_pixels:,}: send a smaller "
                                 "one") from None
    except (OSError, ValueError) as e:
        raise HTTPException(422, f"the photo's header cannot be read (damaged?): {_echo(e, 200)}") from None
    try:
        check_pixels(width, height, max_pixels)
    except ImageTooLarge as e:
        raise _photo_error(e) from None
    if fmt not in PHOTO_TYPES:
        raise HTTPException(415, f"the upload is a {_echo(fmt, 20)} image, not {PHOTO_FORMATS}")
    return PHOTO_TYPES[fmt]


def _validation_errors(errors: list[dict]) -> list[dict]:
    """FastAPI's validation errors with what they echo bounded: the first ECHO_ITEMS errors, each input
    as a short, encodable stand-in (a list or object by its size), messages trimmed."""
    out = []
    for e in errors[:ECHO_ITEMS]:
        value = e.get("input")
        if isinstance(value, (list, tuple, dict)):
            value = f"({'an object' if isinstance(value, dict) else 'a list'} of {len(value):,} items)"
        elif isinstance(value, float) and not np.isfinite(value):
            value = str(value)  # NaN is not JSON
        elif not isinstance(value, (int, float, bool, type(None))):
            value = _echo(value)
        out.append({"type": e.get("type"), "loc": [_echo(p) if isinstance(p, str) else p for p in e.get("loc", ())],
                    "msg": _echo(e.get("msg", ""), 300), "input": value})
    if len(errors) > ECHO_ITEMS:
        out.append({"type": "more", "loc": [], "msg": f"and {len(errors) - ECHO_ITEMS:,} more errors", "input": None})
    return out


# ---------------------------------------------------------------- the guard: size limit, timing, headers

class Guard:
    """ASGI middleware: refuses a body over the service's size limit with 413 (by its Content-Length, or
    as it streams in), counts and times every request per route, and marks responses ``nosniff``.
    ``router``: the app's, to name the route of a request refused before it reaches it."""

    def __init__(self, app, service: Service, router=None):
        self.app, self.service, self.router = app, service, router

    def _route_path(self, scope) -> str:
        """The path template of the route ``scope`` is for (as the router would match it), or 'unmatched'."""
        partial = None
        for route in getattr(self.router, "routes", ()):
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return getattr(route, "path", "unmatched")
            if match == Match.PARTIAL and partial is None:
                partial = getattr(route, "path", None)
        return partial or "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t = time.perf_counter()
        limit = self.service.cfg.max_upload_bytes + 64 * 1024  # the photo plus the form's other fields
        status = 500
        started = False

        async def reply(code: int, detail: str) -> None:
            await JSONResponse({"detail": detail}, code)(scope, receive, send_)

        async def send_(message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message = {**message, "headers": [*message.get("headers", []), (b"x-content-type-options",
                                                                                 b"nosniff")]}
            await send(message)

        received = 0

        async def receive_():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, f"upload over the limit of {self.service.cfg.max_upload_bytes} bytes")
            return message

        length = dict(scope.get("headers", [])).get(b"content-length", b"0")
        try:
            if int(length or 0) > limit:
                await reply(413, f"upload over the limit of {self.service.cfg.max_upload_bytes} bytes")
            else:
                await self.app(scope, receive_, send_)
        except Exception as e:  # never let one request take the process down
            log.exception("request %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await reply(500, f"internal error: {e.__class__.__name__}")
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or self._route_path(scope)
            m = self.service.metrics
            m.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
            if status >= 400:
                m.errors.labels(endpoint, "client" if status < 500 else "server").inc()
            m.latency.labels(endpoint).observe(time.perf_counter() - t)


# ---------------------------------------------------------------- the app

def create_app(service: Service | None = None, start: bool = True) -> FastAPI:
    """The FastAPI app over ``service`` (a new one of the default config if None). With ``start`` the
    service loads its version and watches for new ones while the app runs (lifespan)."""
    service = service or Service()

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if start:
            service.start()
        yield
        service.stop()

    # FastAPIOffline: FastAPI with /docs and /redoc served from assets shipped in the package, not a CDN
    app = FastAPIOffline(title="Atelier retrieval service", lifespan=lifespan, version="1",
                  description="Products, similar products, text and photo search, recommendations for known and "
                              "new customers, and products added without retraining, over the catalogue's "
                              "current artefact version (published by `python -m core build`).")
    app.state.service = service
    app.add_middleware(Guard, service=service, router=app.router)
    metrics = service.metrics

    @app.exception_handler(NotReady)
    async def not_ready(_request, e: NotReady):
        return JSONResponse({"detail": f"not ready: {e}"}, 503, headers={"Retry-After": "5"})

    @app.exception_handler(Busy)
    async def busy(_request, e: Busy):
        return JSONResponse({"detail": str(e)}, 503, headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, e: RequestValidationError):
        return JSONResponse({"detail": _validation_errors(e.errors())}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, e: StarletteHTTPException):
        # FastAPI answers 400 for a JSON body it cannot decode as text (not UTF-8) or that is nested too deeply
        # for its parser, and 422 for one that is not JSON: all three are malformed JSON, 422.
        if e.status_code == 400 and isinstance(e.__cause__, (UnicodeDecodeError, RecursionError)):
            why = "not UTF-8" if isinstance(e.__cause__, UnicodeDecodeError) else "nested too deeply"
            return JSONResponse({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": f"JSON decode error: "
                                             f"the body is {why}", "input": None}]}, 422)
        if isinstance(e.detail, str):
            e = StarletteHTTPException(e.status_code, _echo(e.detail, 1000), e.headers)
        return await http_exception_handler(request, e)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="A version is loaded, and which")
    def readyz():
        release = service.release
        if release is None:
            return JSONResponse({"ready": False, "detail": service.load_error or "loading the artefact version"},
                                503, headers={"Retry-After": "5"})
        m = release.manifest
        return {"ready": True, "version": release.version, "catalog": release.catalog.name,
                "backbone": m["backbone"], "models": list(release.models), "models_note": release.models_note,
                "kinds": list(release.kinds),
                "cutoff": m["cutoff"], "products": len(release.product_ids), "added_products": len(release.added),
                "problems": service.added_problems[:MAX_PROBLEMS], "n_problems": len(service.added_problems),
                "published": m.get("published"), "loaded_at": release.loaded_at}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # The lookups below (a product, its precomputed neighbours, a known customer's precomputed list) take
    # microseconds, so they run on the event loop and answer with JSON directly: a thread hop and FastAPI's
    # response validation would cost them more than the work. What is not a lookup goes to a heavy thread.

    @app.get("/products/{product_id}", summary="A product's title, description and attributes")
    async def product(product_id: str) -> JSONResponse:
        release = service.ready()
        with metrics.stage("/products/{product_id}", "lookup"):
            try:
                return JSONResponse({**_product(release.product(product_id)), "version": release.version})
            except KeyError:
                raise _unknown_products([product_id]) from None

    @app.get("/products/{product_id}/image", summary="A product's photo", response_class=FileResponse)
    def image(product_id: str):
        release = service.ready()
        try:
            path = release.product(product_id)["image_path"]
        except KeyError:
            raise _unknown_products([product_id]) from None
        if not path:
            raise HTTPException(404, f"product '{product_id}' has no photo")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/products/{product_id}/similar", summary="Products most similar to one product")
    async def similar(product_id: str, k: Annotated[int, Query(ge=1, le=MAX_K)] = 10, kind: Kind = "hybrid"
                      ) -> JSONResponse:
        release = service.ready()
        _check_kind(release, kind)
        with metrics.stage("/products/{product_id}/similar", "search"):
            try:
                hits = (release.similar(product_id, kind, k) if release.similar_is_lookup(product_id, kind, k)
                        else await service.background(release.similar, product_id, kind, k))
            except KeyError:
                raise _unknown_products([product_id]) from None
        with metrics.stage("/products/{product_id}/similar", "lookup"):
            out = {"id": product_id, "kind": kind, "version": release.version, "results": _hits(release, hits)}
        if not hits and kind in ("image", "texture"):
            out["note"] = f"product '{product_id}' has no photo, so no place in the {kind} space"
        return JSONResponse(out)

    @app.post("/search/text", summary="Products matching a text query")
    async def search_text(query: TextQuery) -> dict:
        release = service.ready()
        _check_kind(release, query.kind)
        with metrics.stage("/search/text", "encode"):
            vector = await service.text_vector(release, query.text)
        with metrics.stage("/search/text", "search"):
            hits = await service.background(release.search, vector, query.kind, query.k)
        with metrics.stage("/search/text", "lookup"):
            return {"text": query.text, "kind": query.kind, "version": release.version,
                    "results": _hits(release, hits)}

    @app.post("/search/image", summary="Products matching an uploaded photo (multipart field 'file')")
    async def search_image(file: Annotated[UploadFile, File(description=f"a photo: {PHOTO_FORMATS}")],
                           k: Annotated[int, Form(ge=1, le=MAX_K)] = 10, kind: Annotated[Kind, Form()] = "image"
                           ) -> dict:
        release = service.ready()
        _check_kind(release, kind)
        data = await file.read()
        # the header (format, size) before any decoding; off the event loop: PNG text chunks are inflated
        await service.background(_photo_suffix, data, service.cfg.max_photo_pixels)
        with metrics.stage("/search/image", "encode"):
            try:
                vector = await service.photo_vector(release, data)
                descriptor = (await service.background(service.photo_descriptor, release, data)
                              if kind == "texture" else None)
            except ImageError as e:
                raise _photo_error(e) from None
        with metrics.stage("/search/image", "search"):
            hits = await service.background(release.search, vector, kind, k, descriptor)
        with metrics.stage("/search/image", "lookup"):
            return {"kind": kind, "version": release.version, "results": _hits(release, hits)}

    @app.get("/customers/{customer_id}/recommendations", summary="Top-k products for a known customer")
    async def customer_recommendations(customer_id: str, k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
                                       model: str | None = None, exclude_bought: bool = False) -> JSONResponse:
        release = service.ready()
        name = _model(release, model)
        with metrics.stage("/customers/{customer_id}/recommendations", "search"):
            try:
                hits = (release.recommend(customer_id, name, k, exclude_bought)
                        if release.recommend_is_lookup(name, k, exclude_bought)
                        else await service.background(release.recommend, customer_id, name, k, exclude_bought))
            except KeyError:
                raise HTTPException(404, f"unknown customer id '{_echo(customer_id)}' (a new customer: POST "
                                         "/recommendations with the products they like)") from None
        with metrics.stage("/customers/{customer_id}/recommendations", "lookup"):
            return JSONResponse({"customer_id": customer_id, "model": name, "exclude_bought": exclude_bought,
                                 "purchases": int(len(release.data.history(customer_id))),
                                 "version": release.version, "results": _hits(release, hits)})

    @app.post("/recommendations", summary="Top-k products for a new or anonymous customer")
    async def new_customer_recommendations(body: NewCustomer) -> dict:
        release = service.ready()
        name = _model(release, body.model)
        if not body.liked and not body.text:
            raise HTTPException(422, "say what the customer likes: 'liked' product ids, a 'text', or both")
        missing = release.missing(body.liked)
        if missing:
            raise _unknown_products(missing)
        vector = None
        if body.text:
            with metrics.stage("/recommendations", "encode"):
                vector = await service.text_vector(release, body.text)
        with metrics.stage("/recommendations", "search"):
            hits = await service.background(release.recommend_new, body.liked, vector, name, body.k)
        with metrics.stage("/recommendations", "lookup"):
            return {"model": name, "liked": body.liked, "text": body.text, "version": release.version,
                    "results": _hits(release, hits)}

    @app.post("/embeddings", summary="Products' vectors in an embedding space or a recommender's item space")
    def embeddings(body: EmbeddingQuery) -> dict:
        release = service.ready()
        if body.kind not in release.kinds and body.kind not in release.models:
            raise HTTPException(422, f"unknown kind '{body.kind}'; one of {', '.join(release.kinds)}, or a served "
                                     f"model: {', '.join(release.models) or f'none ({release.models_note})'}")
        missing = release.missing(body.ids)
        if missing:
            raise _unknown_products(missing)
        with metrics.stage("/embeddings", "lookup"):
            vectors = release.vectors(body.ids, body.kind)
        dim = next((len(v) for v in vectors if v is not None), 0)
        return {"kind": body.kind, "dim": dim, "version": release.version,
                "embeddings": [{"id": i, "vector": None if v is None else np.round(v.astype(np.float64), 6).tolist()}
                               for i, v in zip(body.ids, vectors)]}

    @app.post("/products", status_code=201, summary="Add a product: embedded by the frozen models, no retraining")
    def add_product(product_id: Annotated[str, Form(alias="id", description="new product id")],
                    title: Annotated[str, Form(max_length=200)],
                    description: Annotated[str, Form(max_length=2000)] = "",
                    attributes: Annotated[str, Form(description='JSON object, e.g. {"colour": "Black"}')] = "{}",
                    variant_of: Annotated[str, Form(description="id of a catalogue product this one is a colour "
                                                                "variant of (the recommenders link the two)")] = "",
                    photo: Annotated[UploadFile | None, File(description=PHOTO_FORMATS)] = None) -> dict:
        release = service.ready()
        product_id, title = product_id.strip(), title.strip()
        if not PRODUCT_ID.match(product_id):
            raise HTTPException(422, f"product id '{_echo(product_id)}' is not valid: 1-64 letters, digits, '.', "
                                     "'_' or '-', starting with a letter or digit")
        if not title:
            raise HTTPException(422, "a product needs a title")
        record = {"id": product_id, "title": title, "description": description.strip(),
                  "attributes": _attributes(attributes, release.attribute_columns)}
        if variant_of.strip():
            group = release.group_of(variant_of.strip())
            if group is None:
                raise HTTPException(422, f"variant_of: '{_echo(variant_of.strip())}' is not a product of the "
                                         "catalogue")
            record["attributes"]["group_id"] = group
        if release.has_product(product_id):  # before the photo is looked at: a duplicate costs no decoding
            raise HTTPException(409, f"product id '{product_id}' already exists")
        data = photo.file.read() if photo is not None else b""
        suffix = _photo_suffix(data, service.cfg.max_photo_pixels) if photo is not None else ""
        with service._adding:
            release = service.ready()  # a swap may have happened while we waited
            if release.has_product(product_id):
                raise HTTPException(409, f"product id '{product_id}' already exists")
            with metrics.stage("/products", "encode"), service.decoding():
                try:
                    vectors = release.encode_product(record, data or None)
                except ImageError as e:
                    raise _photo_error(e) from None
            try:
                stored = service.added.append(record, data or None, suffix)
            except ValueError:  # stored before, but not in this version (see /readyz problems)
                raise HTTPException(409, f"product id '{product_id}' was already added; it is not served by "
                                         "this version: GET /readyz lists why under 'problems'") from None
            except OSError as e:
                log.exception("storing added product %s failed", product_id)
                raise HTTPException(503, f"the product could not be stored ({e.strerror or e.__class__.__name__}); "
                                         "nothing was added: try again later") from None
            release.add_product({**record, "image_path": service.added.photo_path(stored)}, vectors)
        metrics.added.inc()
        nearest = release.similar(product_id, "hybrid", 5) if "hybrid" in release.kinds else []
        return {**_product(release.product(product_id)), "version": release.version,
                "sentence": vectors["sentence"], "kinds": [k for k in release.kinds if product_id in
                                                           release.built.indexes[k].row],
                "models": [m for m in release.models if release.models[m].supports("add_product")],
                "nearest": _hits(release, nearest)}

    return app


def _not_a_number(name: str):
    raise ValueError(f"{name} is not a number JSON allows: give a text value")


def _attributes(text: str, columns: list[str]) -> dict[str, str]:
    """The attributes form field: a JSON object of the catalogue's attribute columns to short texts or finite
    numbers, as strings; 422 else (NaN and +-Infinity too, which Python's JSON reads, and true/false)."""
    try:
        value = json.loads(text or "{}", parse_constant=_not_a_number)
    except RecursionError:
        raise HTTPException(422, 'attributes is nested too deeply: give a flat JSON object, e.g. {"colour": '
                                 '"Black"}') from None
    except ValueError as e:
        raise HTTPException(422, f"attributes is not JSON: {_echo(e, 200)}") from None
    if not isinstance(value, dict):
        raise HTTPException(422, 'attributes must be a JSON object, e.g. {"colour": "Black"}')
    unknown = [k for k in value if k not in columns]
    if unknown:
        raise HTTPException(422, f"unknown attribute(s) {_listed(unknown)}; this catalogue has "
                                 f"{', '.join(columns)}")
    bad = [k for k, v in value.items() if not isinstance(v, (str, int, float)) or isinstance(v, bool)
           or (isinstance(v, float) and not np.isfinite(v)) or len(str(v)) > 200]  # 1e400 reads as inf
    if bad:
        raise HTTPException(422, f"attribute(s) {', '.join(bad)}: give each a short text value")
    return {k: str(v) for k, v in value.items()}

