"""Artefact cache: content-keyed, atomically written, self-checking files under cache/.

An artefact is a dict of numpy arrays stored as one ``.npz`` file at
``<root>/<kind>/<key>.npz``; its key hashes its config and a fingerprint of exactly
the inputs it depends on. Writes go to a temporary file that is renamed into place,
so readers never see half a file; a truncated or corrupt file fails the zip CRC
check on load, is deleted and recomputed. A per-artefact ``flock`` makes a second
process wait for the first one's result instead of computing it again.

:class:`RowStore` keeps per-product rows (embeddings) keyed by a digest of each
product's content, so adding or changing 100 products computes those 100 only.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import pandas as pd

from core.config import cache_root

LEGACY_USER_DATA = ("added-products", "uploads")  # folders older versions kept user data in; never cleared
META = "__meta__"
log = logging.getLogger(__name__)


# Bytes hashed per call. One call over a large array keeps the GIL for seconds (a 740 MB array: 2.4 s), so
# a service loading a new version would answer nothing meanwhile; between calls the GIL changes hands.
DIGEST_SLICE = 1 << 18


@dataclass(frozen=True)
class RowBlocks:
    """An array given as consecutive blocks of its rows (each C-contiguous, of ``dtype`` or castable to it
    without loss, together ``shape``). :func:`digest` hashes it exactly as it would the whole array, a
    block at a time: the whole is never in memory, and no one step holds the GIL long."""
    blocks: list[np.ndarray]
    dtype: np.dtype
    shape: tuple[int, ...]


def _update(h, array: np.ndarray) -> None:
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for start in range(0, len(flat), DIGEST_SLICE):
        h.update(flat[start:start + DIGEST_SLICE])


def digest(*parts: object) -> str:
    """A short stable hash of strings, bytes, numpy arrays (:class:`RowBlocks` hash as the array they make)
    and JSON-able values."""
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            _update(h, p)
        elif isinstance(p, RowBlocks):
            h.update(str((p.dtype, p.shape)).encode())
            for block in p.blocks:
                _update(h, block.astype(p.dtype, copy=False))
        elif isinstance(p, bytes):
            h.update(p)
        elif isinstance(p, str):
            h.update(p.encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x1f")
    return h.hexdigest()


def file_digest(path: str | os.PathLike) -> str:
    """Hash of a file's bytes ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=12)).hexdigest()
    except OSError:
        return ""


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file in the same folder, then rename, so ``path`` is never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; what we write is read by whoever serves or uses it
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_npz(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes files private; artefacts are as readable as the rest of cache/
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{META: np.array(json.dumps(meta, default=str))})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# RuntimeError (and its subclass NotImplementedError): zipfile raises them for a damaged header that reads
# as "encrypted" or as an unknown compression method / zip version.
CORRUPT = (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, json.JSONDecodeError, RuntimeError)


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a complete file; None if it is missing, or corrupt (then it is deleted, so the
    caller recomputes it: a damaged file is never served)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}  # reading every member checks its CRC
        json.loads(str(arrays.pop(META)))
        return arrays
    except CORRUPT as e:
        log.warning("cache: %s is corrupt (%s); deleting it so it is recomputed", path, e)
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def frame_arrays(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """A frame of numbers and strings as artefact arrays (``arrays_frame`` reads it back)."""
    arrays = {f"col_{i}": frame[c].to_numpy() if frame[c].dtype.kind in "biuf" else frame[c].astype(str).to_numpy(str)
              for i, c in enumerate(frame.columns)}
    return {**arrays, "columns": np.asarray([str(c) for c in frame.columns], dtype=str)}


def arrays_frame(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame({c: arrays[f"col_{i}"] for i, c in enumerate(arrays["columns"].tolist())})


def json_arrays(value, name: str = "report") -> dict[str, np.ndarray]:
    """A JSON-able value (a report: dicts, lists, numbers, strings) as the arrays of one artefact: ``{name: 0-d
    str array}``. The inverse is :func:`json_value`. ``name`` is the array's name inside the ``.npz``."""
    return {name: np.array(json.dumps(value))}


def json_value(arrays: dict[str, np.ndarray] | None, name: str = "report"):
    """The value :func:`json_arrays` stored, or None for a missing artefact (``arrays`` None)."""
    return None if arrays is None else json.loads(str(arrays[name]))


@dataclass
class Entry:
    kind: str
    key: str
    path: Path
    bytes: int
    modified: float
    meta: dict


class ArtefactCache:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else cache_root()

    @staticmethod
    def key(cfg: dict, fingerprint: str) -> str:
        return digest(cfg, fingerprint)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.npz"

    @contextlib.contextmanager
    def lock(self, kind: str, key: str, shared: bool = False) -> Iterator[None]:
        """An advisory lock between processes on one artefact (``flock``, Linux/macOS)."""
        lock_path = self.root / kind / f".{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def load(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        """The artefact's arrays, or None if absent; a corrupt file is deleted and reported as absent."""
        return _read_npz(self.path(kind, key))

    def save(self, kind: str, key: str, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Path:
        path = self.path(kind, key)
        _write_npz(path, arrays, {"kind": kind, "key": key, "created": time.time(), **(meta or {})})
        return path

    def get_or_compute(self, kind: str, cfg: dict, fingerprint: str,
                       compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Load the artefact for (cfg, fingerprint), computing and saving it once on a miss."""
        key = self.key(cfg, fingerprint)
        hit = self.load(kind, key)
        if hit is not None:
            return hit
        with self.lock(kind, key):
            hit = self.load(kind, key)  # another process may have built it while we waited
            if hit is not None:
                return hit
            arrays = compute()
            self.save(kind, key, arrays, {"config": cfg, "fingerprint": fingerprint})
            return arrays

    def entries(self) -> list[Entry]:
        out = []
        if not self.root.is_dir():
            return out
        for path in sorted(self.root.rglob("*.npz")):
            if path.name.startswith("."):
                continue
            try:
                with np.load(path, allow_pickle=False) as z:
                    meta = json.loads(str(z[META])) if META in z.files else {}
            except CORRUPT:
                meta = {"corrupt": True}
            st = path.stat()
            kind = str(path.parent.relative_to(self.root))
            out.append(Entry(kind, path.stem, path, st.st_size, st.st_mtime, meta))
        return out

    def file_digests(self, paths: list[str]) -> list[str]:
        """:func:`file_digest` of each path ("" for "" or an unreadable file), re-reading only files whose
        size or modification time changed since they were last hashed (a memo kept in the cache, as git's
        index does), so a warm rebuild stats the photos instead of reading them all."""
        memo_arrays = self.load("file-digests", "memo")
        memo = {}
        if memo_arrays is not None:
            memo = dict(zip(memo_arrays["path"].tolist(), zip(memo_arrays["size"].tolist(),
                                                             memo_arrays["mtime"].tolist(),
                                                             memo_arrays["digest"].tolist())))
        out, changed = [], False
        for p in paths:
            try:
                st = os.stat(p) if p else None
            except OSError:
                st = None
            if st is None:
                out.append("")
                continue
            hit = memo.get(p)
            if hit is not None and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                out.append(hit[2])
                continue
            d = file_digest(p)
            memo[p] = (st.st_size, st.st_mtime_ns, d)
            out.append(d)
            changed = True
        if changed:
            keys = list(memo)
            self.save("file-digests", "memo", {
                "path": np.asarray(keys, dtype=str),
                "size": np.asarray([memo[k][0] for k in keys], dtype=np.int64),
                "mtime": np.asarray([memo[k][1] for k in keys], dtype=np.int64),
                "digest": np.asarray([memo[k][2] for k in keys], dtype=str)})
        return out

    def usage(self) -> tuple[int, int]:
        """(number of artefact files, total bytes), without opening them."""
        sizes = [p.stat().st_size for p in self.root.rglob("*.npz")] if self.root.is_dir() else []
        return len(sizes), sum(sizes)

    def clear(self, kind: str | None = None) -> int:
        """Delete every artefact (or one kind's); returns the number of files removed. Products added through
        the service before they had a store of their own (``added-products``, ``uploads``) are user data, not
        artefacts: they stay until :mod:`core.serve.store` has copied them."""
        if kind:
            targets = [self.root / kind]
        else:
            targets = list(self.root.iterdir()) if self.root.exists() else []
        targets = [t for t in targets if t.exists() and t.name not in LEGACY_USER_DATA]
        n = 0
        for target in targets:
            if target.is_dir():
                n += sum(1 for p in target.rglob("*") if p.is_file())
                shutil.rmtree(target)
            else:
                n += 1
                target.unlink()
        return n


def _size(path: Path) -> int:
    """A file's size in bytes; 0 when it has gone (another process merged it)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


class RowStore:
    """Rows of one model's output per content key, e.g. image embeddings keyed by the photo's digest.

    Stored as shards ``<root>/rows/<name>/<config key>/shard-*.npz`` (arrays ``keys``
    (n,) str and ``rows`` (n, d) float32); new rows go into a new shard, and the shards smaller than
    ``merge_bytes`` are merged into one once there are more than ``max_shards`` of them. A merged shard
    past ``merge_bytes`` is left as it is, so a merge reads and writes at most about ``merge_bytes`` plus
    the small shards, whatever the store holds: rows are rewritten a bounded number of times (merging
    every shard each time rewrote the whole store every ``max_shards`` puts, n² over a build) and a
    merge's memory does not grow with the catalogue.
    """

    def __init__(self, cache: ArtefactCache, name: str, cfg: dict, max_shards: int = 8,
                 merge_bytes: int = 64 * 2 ** 20):
        self.cache = cache
        self.kind = f"rows/{name}/{ArtefactCache.key(cfg, '')}"
        self.dir = cache.root / self.kind
        self.cfg = cfg
        self.max_shards = max_shards
        self.merge_bytes = merge_bytes

    def _shards(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz")) if self.dir.is_dir() else []

    def _load_all(self, shards: list[Path] | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        keys, rows = [], []
        for path in self._shards() if shards is None else shards:
            got = _read_npz(path)
            if got is not None:
                keys.append(got["keys"])
                rows.append(got["rows"])
        return keys, rows

    def get(self, keys: list[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """Rows for ``keys`` in order, (n, d) float32 (None if the store is empty), and a (n,) bool
        mask of the keys found; rows of missing keys are zero."""
        codes, distinct = pd.factorize(np.asarray(keys, dtype=str))  # a key asked for twice is looked up once
        distinct = pd.Index(distinct)
        out, hit = None, np.zeros(len(distinct), dtype=bool)
        with self.cache.lock(self.kind, "store", shared=True):
            for path in self._shards():  # one shard in memory at a time beside the output
                got = _read_npz(path)
                if got is None:
                    continue
                if out is None:
                    out = np.zeros((len(distinct), got["rows"].shape[1]), dtype=np.float32)
                at = distinct.get_indexer(got["keys"])
                mine = at >= 0
                out[at[mine]] = got["rows"][mine]  # a key in two shards: the later one's row, as merges keep
                hit[at[mine]] = True
        if out is None:
            return None, np.zeros(len(keys), dtype=bool)
        if len(distinct) == len(keys):
            return out, hit  # factorize numbers distinct keys in order: codes are 0..n-1
        return out[codes], hit[codes]

    def put(self, keys: list[str], rows: np.ndarray) -> None:
        """Add rows (n, d) for ``keys``; merges shards when there are too many."""
        if len(keys) == 0:
            return
        with self.cache.lock(self.kind, "store"):
            _write_npz(self.dir / f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz",
                       {"keys": np.asarray(keys, dtype=str), "rows": np.asarray(rows, dtype=np.float32)},
                       {"config": self.cfg})
            shards = [p for p in self._shards() if _size(p) < self.merge_bytes]
            if len(shards) > self.max_shards:
                skeys, srows = self._load_all(shards)
                if skeys:
                    all_keys = np.concatenate(skeys)
                    _, first = np.unique(all_keys, return_index=True)
                    _write_npz(self.dir / f"shard-{time.time_ns():020d}-merged.npz",
                               {"keys": all_keys[first], "rows": np.concatenate(srows)[first]}, {"config": self.cfg})
                for p in shards:
                    p.unlink(missing_ok=True)  # _load_all already deleted corrupt ones

    def fill(self, keys: list[str], dim: int,
             encode: Callable[[list[int], Callable[[int, int], None] | None], tuple[np.ndarray, dict[int, str]]],
             chunk: int = 1024, progress: Callable[[int, int], None] | None = None
             ) -> tuple[np.ndarray, np.ndarray, int, dict[int, str]]:
        """Rows for ``keys``, computing only those the store lacks with ``encode(rows, progress)`` ->
        ((len(rows), dim) array, {position in rows: error}), and saving them chunk by chunk so an
        interrupted run resumes. "" keys (no input) stay zero rows. Returns the (n, dim) float32 rows,
        an (n,) bool mask of rows present, how many were computed, and {row: error} for failed inputs."""
        matrix, found = self.get(keys)
        if matrix is None:
            matrix = np.zeros((len(keys), dim), dtype=np.float32)
        todo = [i for i, k in enumerate(keys) if k and not found[i]]
        computed, errors = 0, {}
        for start in range(0, len(todo), chunk):
            part = todo[start:start + chunk]
            step = (lambda done, _n, start=start: progress(start + done, len(todo))) if progress else None
            rows, failed = encode(part, step)
            good = [j for j in range(len(part)) if j not in failed]
            matrix[[part[j] for j in good]] = rows[good]
            found[[part[j] for j in good]] = True
            self.put([keys[part[j]] for j in good], rows[good])
            computed += len(good)
            errors |= {part[j]: m for j, m in failed.items()}
            if progress:
                progress(start + len(part), len(todo))
        return matrix, found, computed, errors

    def __len__(self) -> int:
        keys, _ = self._load_all()
        return int(sum(len(k) for k in keys))
