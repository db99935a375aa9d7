"""The shop's own data: products added through the service and their photos, kept apart from the cache.

``cache/`` holds what can be recomputed and is safe to delete; a product added by ``POST /products`` cannot
be recomputed, so it lives here, under ``store/`` beside the cache (or ``$ATELIER_STORE``). Records are
appended to a JSON Lines log, one line each with a CRC-32 of its text, and fsynced before the service
answers 201. A line that fails its checksum (a torn write when the process was killed mid-append, or a
damaged disk) costs that record only: the file is first copied aside whole (``<log>.damaged-<time>``), then
rewritten with the good lines, and the damage is named in the log and in :attr:`ProductStore.damage`.
Nothing here is ever deleted. Photos are files named by the digest of their bytes, so a damaged photo is
recognised by its name.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from core.cache import digest

STORE_ENV = "ATELIER_STORE"
log = logging.getLogger(__name__)
_ID = re.compile(r'"id":\s*"([^"]{1,80})')  # the id of a damaged line, when it can still be read


def store_root(cache_root: Path) -> Path:
    """``$ATELIER_STORE``, else ``store/`` beside the cache folder (the project's ``store/`` by default)."""
    env = os.environ.get(STORE_ENV, "").strip()
    return Path(env).expanduser() if env else Path(cache_root).parent / "store"


class DamagedPhoto(Exception):
    """A stored photo that is missing or whose bytes no longer match the digest it was stored under."""


def _line(record: dict) -> bytes:
    text = json.dumps(record, ensure_ascii=True, sort_keys=True)
    return f"{zlib.crc32(text.encode()):08x} {text}\n".encode()


def _parse(line: bytes) -> dict:
    """The record of one log line; ValueError if it is incomplete or fails its checksum."""
    if not line.endswith(b"\n"):
        raise ValueError("incomplete (the write was cut off)")
    crc, _, text = line.rstrip(b"\n").partition(b" ")
    if not re.fullmatch(rb"[0-9a-f]{8}", crc) or zlib.crc32(text) != int(crc, 16):
        raise ValueError("checksum mismatch")
    record = json.loads(text)
    if not isinstance(record, dict) or not isinstance(record.get("id"), str):
        raise ValueError("not a product record")
    return record


def _write_all(fd: int, data: bytes) -> None:
    """Every byte of ``data`` to ``fd`` (``os.write`` may write fewer, e.g. on a full disk)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"wrote {written} of {len(view)} bytes")
        view = view[written:]


def _write_durable(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary file, fsynced, then renamed (and the folder fsynced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)  # a buffered file writes it all or raises
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ProductStore:
    """Products added to one catalogue (``scope``: its :func:`core.serve.release.catalog_scope`) and their photos.
    Safe to share between threads and processes (a file lock around every read-repair and append)."""

    def __init__(self, root: str | os.PathLike, scope: str, legacy_root: str | os.PathLike | None = None):
        self.root, self.scope = Path(root), scope
        self.log_path = self.root / "added-products" / f"{scope}.jsonl"
        self.photo_dir = self.root / "uploads"
        self.legacy_root = Path(legacy_root) if legacy_root is not None else None
        self.damage: list[str] = []  # what could not be read, in words, since this store was opened
        self._thread_lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._thread_lock, open(self.log_path.with_name(f".{self.log_path.name}.lock"), "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------ reading

    def records(self) -> list[dict]:
        """Every readable record, in the order added: id, title, description, attributes, photo (file name,
        "" without one). Damaged lines are set aside as the module docstring says."""
        if not self.log_path.exists() and not self._legacy_pending():
            return []  # nothing stored yet: no folder is made for a read
        with self._locked():
            return self._read_and_repair()

    def _read_and_repair(self) -> list[dict]:
        if self._legacy_pending():
            self._import_legacy()
        if not self.log_path.exists():
            return []
        raw = self.log_path.read_bytes()
        records, good, bad = [], [], []
        for number, line in enumerate(raw.splitlines(keepends=True), 1):
            try:
                record = _parse(line)
            except ValueError as e:
                found = _ID.search(line.decode("utf-8", "replace"))
                bad.append(f"record {number}{f' (product {found.group(1)!r})' if found else ''}: {e}")
                continue
            records.append(record)
            good.append(line)
        if bad:
            aside = self._set_aside(raw)
            _write_durable(self.log_path, b"".join(good))
            for what in bad:
                self._report(f"added products: {what} could not be read; the file as it was is kept at {aside}")
        return records

    def _set_aside(self, raw: bytes) -> Path:
        """``raw`` (the log as it was) durably to a new file beside the log, never over an earlier one."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for n in range(10**6):
            aside = self.log_path.with_name(f"{self.log_path.name}.damaged-{stamp}{f'-{n}' if n else ''}")
            try:
                fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                continue
            try:
                _write_all(fd, raw)
                os.fsync(fd)
            finally:
                os.close(fd)
            return aside
        raise OSError(f"no free name beside {self.log_path} to keep its damaged copy")

    def _report(self, message: str) -> None:
        if message not in self.damage:
            log.error(message)
            self.damage.append(message)

    def _legacy(self) -> Path | None:
        return self.legacy_root / "added-products" / f"{self.scope}.npz" if self.legacy_root is not None else None

    def _legacy_pending(self) -> bool:
        """Whether products added before the store existed wait to be copied in (an ``added-products``
        artefact in the cache folder, not yet imported: until an import succeeds it is tried on every read)."""
        old = self._legacy()
        return old is not None and old.is_file() and not self.log_path.with_name(f".{self.log_path.name}.imported").exists()

    def _import_legacy(self) -> None:
        """Products added before they had a store of their own (an ``added-products`` artefact and
        ``uploads/`` in the cache folder) are copied here, those whose id is not stored yet; the old files
        are left as they were. A marker beside the log records a successful import."""
        old = self._legacy()
        try:
            with np.load(old, allow_pickle=False) as z:
                columns = {f: z[f].tolist() for f in ("id", "title", "description", "attributes", "photo")}
            records = [{"id": i, "title": t, "description": d, "attributes": json.loads(a), "photo": p}
                       for i, t, d, a, p in zip(*columns.values())]
        except Exception as e:  # the old file is damaged: say so, leave it for a person, try again next time
            self._report(f"added products: the old store {old} cannot be read ({e}); it is left in place and "
                         "imported once it can be read")
            return
        self.photo_dir.mkdir(parents=True, exist_ok=True)
        for r in records:
            source = self.legacy_root / "uploads" / r["photo"]
            if r["photo"] and source.is_file() and not (self.photo_dir / r["photo"]).exists():
                _write_durable(self.photo_dir / r["photo"], source.read_bytes())
        stored = self.log_path.read_bytes() if self.log_path.exists() else b""
        known = set()
        for line in stored.splitlines(keepends=True):
            with contextlib.suppress(ValueError):  # a damaged line: the repair after this import deals with it
                known.add(_parse(line)["id"])
        new = [r for r in records if r["id"] not in known]
        _write_durable(self.log_path, stored + b"".join(_line(r) for r in new))
        _write_durable(self.log_path.with_name(f".{self.log_path.name}.imported"), str(old).encode())
        log.warning("added products: %d copied from %s to %s", len(new), old, self.log_path)

    def photo_path(self, record: dict) -> str:
        return str(self.photo_dir / record["photo"]) if record["photo"] else ""

    def photo(self, record: dict) -> bytes | None:
        """The bytes of a record's photo (None without one). DamagedPhoto when the file is gone or its
        bytes are not the ones stored."""
        if not record["photo"]:
            return None
        path = self.photo_dir / record["photo"]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DamagedPhoto(f"photo {path} cannot be read ({e.strerror or e})") from None
        if digest(data) != Path(record["photo"]).stem:
            raise DamagedPhoto(f"photo {path} is damaged (its bytes changed since it was stored)")
        return data

    # ------------------------------------------------------------ writing

    def append(self, record: dict, photo: bytes | None, suffix: str = ".jpg") -> dict:
        """Store a record (id, title, description, attributes) and its photo's bytes, durably (both fsynced
        before this returns); returns the stored record (``photo``: the file name, "" without one).
        ValueError for an id already stored."""
        record = {**record, "photo": ""}
        if photo:
            self.photo_dir.mkdir(parents=True, exist_ok=True)
            record["photo"] = f"{digest(photo)}{suffix}"
            path = self.photo_dir / record["photo"]
            if not path.exists() or digest(path.read_bytes()) != digest(photo):
                _write_durable(path, photo)
        with self._locked():
            if any(r["id"] == record["id"] for r in self._read_and_repair()):
                raise ValueError(f"product id '{record['id']}' was already added")
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, _line(record))
                os.fsync(fd)
            except OSError:  # a full disk: take the partial line back, so the next record starts clean
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
                raise
            finally:
                os.close(fd)
        return record
