"""Photos by URL, fetched into the artefact cache: a bounded pool of concurrent downloads (httpx, asyncio) with a
limit per host, timeouts, retries with backoff on 429 and 5xx (``Retry-After`` respected), a size cap, a pixel
cap, the content checked to be an image; keyed by URL and content, not asked again within an hour, and after that
only conditionally (``ETag`` / ``Last-Modified``), so a second build downloads nothing that has not changed."""
from __future__ import annotations

import asyncio
import email.utils
import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from core.config import cache_root
from core.progress import Progress

MAX_PHOTO_PIXELS = 25_000_000  # the service's cap on an uploaded photo (ServiceConfig.max_photo_pixels)
SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif",
            "MPO": ".jpg"}


@dataclass(frozen=True)
class FetchConfig:
    workers: int = 16  # downloads in flight at most
    per_host: int = 8  # of them on one host (a stalled host holds at most these)
    connect_s: float = 5.0
    read_s: float = 10.0  # the longest wait for the next bytes of an answer
    total_s: float = 60.0  # the longest one try may take in all (a server trickling a byte every few seconds)
    attempts: int = 4  # tries per photo when the server answers 429 or 5xx
    timeout_attempts: int = 2  # tries per photo when it does not answer in time (a stall holds a slot each try)
    failure_ttl_s: float = 3600.0  # a photo that failed is not asked again for this long (its failure is reported)
    fresh_s: float = 3600.0  # a photo fetched or confirmed unchanged this recently is not asked about again
    backoff_s: float = 0.5  # before the second try; doubling after
    max_wait_s: float = 30.0  # the longest Retry-After obeyed (a longer one is cut to this)
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = MAX_PHOTO_PIXELS


@dataclass(frozen=True)
class Fetched:
    """What became of one URL: ``path`` of the photo on disk ("" when it failed), ``cause`` of a failure in a
    few words ("not found (404)", "timed out", "not an image", "too large", ...; "" when fetched),
    ``downloaded`` whether its bytes came over the network this time (not from the cache), ``detail`` more."""
    url: str
    path: str
    cause: str = ""
    downloaded: bool = False
    detail: str = ""


class _Failure(Exception):
    def __init__(self, cause: str, detail: str = "", retry: bool = False, wait: float | None = None):
        super().__init__(cause)
        self.cause, self.detail, self.retry, self.wait = cause, detail, retry, wait


def photo_store() -> Path:
    """Where fetched photos live: ``photos/`` in the artefact cache (safe to delete: fetched again)."""
    return cache_root() / "photos"


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _retry_after(value: str | None, cfg: FetchConfig) -> float | None:
    """Seconds a ``Retry-After`` header asks for (a number or an HTTP date), at most ``max_wait_s``."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        if when is None:
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), cfg.max_wait_s)


def check_photo(data: bytes, max_pixels: int) -> str:
    """The file suffix of ``data`` when it is an image Atelier reads within ``max_pixels``; :class:`_Failure`
    ("not an image", "too large") otherwise. The pixel count comes from the header, before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > max_pixels:
                raise _Failure("too large", f"{img.width}x{img.height} pixels, over {max_pixels:,}")
            kind = img.format
            img.verify()
    except _Failure:
        raise
    except Image.DecompressionBombError:
        raise _Failure("too large", f"far more pixels than {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _Failure("not an image", f"cannot be decoded ({e.__class__.__name__})") from None
    if kind not in SUFFIXES:
        raise _Failure("not an image", f"a {kind} image, not one of {', '.join(sorted(SUFFIXES))}")
    return SUFFIXES[kind]


class PhotoFetcher:
    """Fetches URLs into ``root`` (default :func:`photo_store`): ``meta/<url hash>.json`` says which content a
    URL gave and its validators, ``blobs/<content hash><suffix>`` holds the photo."""

    def __init__(self, root: Path | None = None, cfg: FetchConfig = FetchConfig()):
        self.root, self.cfg = Path(root) if root is not None else photo_store(), cfg

    def _meta_path(self, url: str) -> Path:
        return self.root / "meta" / f"{_key(url)[:40]}.json"

    def _known(self, url: str) -> dict | None:
        """The stored record of ``url``: its photo still on disk, or its failure within ``failure_ttl_s``; else
        None."""
        try:
            meta = json.loads(self._meta_path(url).read_text())
            if meta.get("url") != url:
                return None
            if "failed" in meta:
                return meta if time.time() - float(meta["at"]) < self.cfg.failure_ttl_s else None
            if (self.root / "blobs" / meta["blob"]).is_file():
                return meta
        except (OSError, ValueError, KeyError, TypeError):  # absent, or damaged: fetched again
            pass
        return None

    def fetch(self, urls: list[str], progress: Progress | None = None) -> list[Fetched]:
        """One :class:`Fetched` per URL of ``urls`` (the same URL twice is fetched once), in order."""
        unique = list(dict.fromkeys(urls))
        done = asyncio.run(self._fetch_all(unique, progress))
        return [done[u] for u in urls]

    async def _fetch_all(self, urls: list[str], progress: Progress | None) -> dict[str, Fetched]:
        import httpx  # imported when a catalogue has photos at URLs

        cfg = self.cfg
        every = asyncio.Semaphore(cfg.workers)
        hosts: dict[str, asyncio.Semaphore] = {}
        out: dict[str, Fetched] = {}
        timeout = httpx.Timeout(cfg.read_s, connect=cfg.connect_s)
        limits = httpx.Limits(max_connections=cfg.workers, max_keepalive_connections=cfg.workers)
        if progress:
            progress("photos by URL", 0, len(urls))
        async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=True,
                                     headers={"User-Agent": "Atelier photo fetcher"}) as client:
            async def one(url: str) -> None:
                try:
                    netloc = urlsplit(url).netloc.lower()
                    client.build_request("GET", url)  # httpx's own reading of the address
                except (ValueError, httpx.InvalidURL) as e:
                    out[url] = Fetched(url, "", "bad address", False, f"{e.__class__.__name__}: {e}"[:200])
                    if progress:
                        progress("photos by URL", len(out), len(urls))
                    return
                host = hosts.setdefault(netloc, asyncio.Semaphore(cfg.per_host))
                async with host, every:  # a slot of the pool only once its host has one: queued work
                    # for a stalled host holds none of the others' slots
                    out[url] = await self._one(client, httpx, url)
                if progress:
                    progress("photos by URL", len(out), len(urls))
            await asyncio.gather(*(one(u) for u in urls))
        return out

    async def _one(self, client, httpx, url: str) -> Fetched:
        cfg, known = self.cfg, self._known(url)
        if known is not None and "failed" in known:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(known["at"])))
            return Fetched(url, "", known["failed"], False, f"{known.get('detail', '')}; as at {when}, not asked again")
        if known is not None and (not (known.get("etag") or known.get("last_modified"))
                                  or time.time() - float(known.get("checked", 0)) < cfg.fresh_s):
            return Fetched(url, str(self.root / "blobs" / known["blob"]))  # no way to ask, or asked lately
        headers = {}
        if known is not None:
            if known.get("etag"):
                headers["If-None-Match"] = known["etag"]
            if known.get("last_modified"):
                headers["If-Modified-Since"] = known["last_modified"]
        failure, attempt = None, 0
        while True:
            try:
                return await asyncio.wait_for(self._attempt(client, httpx, url, headers, known), cfg.total_s)
            except _Failure as f:
                failure = f
            except asyncio.TimeoutError:
                failure = _Failure("timed out", f"over {cfg.total_s:g} s in all", retry=True)
            attempt += 1
            tries = cfg.timeout_attempts if failure.cause == "timed out" else cfg.attempts
            if not failure.retry or attempt >= tries:
                break
            await asyncio.sleep(failure.wait if failure.wait is not None else cfg.backoff_s * 2 ** (attempt - 1))
        if known is not None:  # it could not be asked again: the photo it gave is kept, asked again next time
            return Fetched(url, str(self.root / "blobs" / known["blob"]))
        record = {"url": url, "failed": failure.cause, "detail": failure.detail, "at": time.time()}
        _write_atomic(self._meta_path(url), json.dumps(record).encode())
        return Fetched(url, "", failure.cause, False, failure.detail)

    async def _attempt(self, client, httpx, url: str, headers: dict, known: dict | None) -> Fetched:
        cfg = self.cfg
        try:
            async with client.stream("GET", url, headers=headers) as r:
                if r.status_code == 304 and known is not None:
                    _write_atomic(self._meta_path(url), json.dumps({**known, "checked": time.time()}).encode())
                    return Fetched(url, str(self.root / "blobs" / known["blob"]))
                if r.status_code == 429 or r.status_code >= 500:
                    raise _Failure(f"server error ({r.status_code})" if r.status_code >= 500 else
                                   "too many requests (429)", f"HTTP {r.status_code}", retry=True,
                                   wait=_retry_after(r.headers.get("retry-after"), cfg))
                if r.status_code != 200:
                    cause = "not found (404)" if r.status_code == 404 else f"refused ({r.status_code})"
                    raise _Failure(cause, f"HTTP {r.status_code}")
                kind = r.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind.startswith("text/") or kind in ("application/json", "application/xhtml+xml"):
                    raise _Failure("not an image", f"content-type {kind}")
                size = int(r.headers.get("content-length") or 0)
                if size > cfg.max_bytes:
                    raise _Failure("too large", f"{size:,} bytes, over {cfg.max_bytes:,}")
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > cfg.max_bytes:
                        raise _Failure("too large", f"over {cfg.max_bytes:,} bytes")
                validators = {"etag": r.headers.get("etag", ""), "last_modified": r.headers.get("last-modified", "")}
        except httpx.TimeoutException as e:
            raise _Failure("timed out", e.__class__.__name__, retry=True) from None
        except httpx.HTTPError as e:  # refused connection, reset, bad address, too many redirects
            raise _Failure("could not connect", f"{e.__class__.__name__}: {e}"[:200], retry=True) from None
        data = bytes(body)
        suffix = check_photo(data, cfg.max_pixels)
        blob = f"{hashlib.sha256(data).hexdigest()[:40]}{suffix}"
        path = self.root / "blobs" / blob
        if not path.is_file():
            _write_atomic(path, data)
        _write_atomic(self._meta_path(url), json.dumps({"url": url, "blob": blob, **validators,
                                                        "checked": time.time()}).encode())
        return Fetched(url, str(path), downloaded=True)
