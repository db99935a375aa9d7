"""The retrieval service's state: the current :class:`core.serve.release.Release` of one catalogue, loaded and
swapped for newer ones by a watcher thread, its encoders' batchers and query caches, and the products added.

:mod:`core.serve.api` is the HTTP API over it."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import threading
from dataclasses import dataclass

import faiss
import numpy as np
from fastapi import HTTPException

from core.serve.batching import LRUCache, MicroBatcher, background_pool, lower_priority
from core.cache import ArtefactCache, digest
from core.data.load import default_catalog_spec
from core.embeddings.backbone import ImageError, encode_by_shape, load_image
from core.embeddings.pipeline import BuildConfig
from core.serve.metrics import Metrics
from core.serve.photos import PHOTO_DRAFT_SIDE, photo_suffix
from core.serve.release import SERVED_MODELS, Release, added_products, current, load, prepare, publish
from core.serve.store import DamagedPhoto

log = logging.getLogger(__name__)

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


class NotReady(Exception):
    pass


class Busy(Exception):
    """Every photo decode slot stayed taken for ``ServiceConfig.decode_wait_s``: answered 503, Retry-After."""


class Service:
    """The current :class:`core.serve.release.Release` of one catalogue, its encoders' batchers and caches,
    and the watcher that swaps versions. ``release`` is replaced whole, never changed in place, by a swap."""

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
                photo_suffix(photo, self.cfg.max_photo_pixels)
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
        return self._grouped(items, lambda r, tensors: encode_by_shape(r.backbone.encode_image, tensors))

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
