"""Where Atelier keeps things: the project folder and the artefact cache's root."""
from __future__ import annotations

import os
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "ATELIER_CACHE"


def url_scheme(location: str) -> str | None:
    """``s3`` of ``s3://bucket/x``, also as a Path folds it (``s3:/bucket/x``); None for a path."""
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):/", location)
    return found.group(1) if found else None


def cache_root() -> Path:
    """``$ATELIER_CACHE``, else ``cache/`` in the project. A URL there (``s3://...``) is refused: the cache is a
    folder, written with atomic renames and file locks."""
    env = os.environ.get(CACHE_ENV, "").strip()
    scheme = url_scheme(env)
    if scheme:
        raise ValueError(f"{CACHE_ENV}={env!r} is a {scheme}:// URL: the artefact cache is a folder (atomic renames, "
                         f"file locks). Set it to a path; for a cluster, a shared filesystem every node mounts at "
                         f"that path (NFS, EFS, Filestore, Azure Files)")
    return Path(env).expanduser() if env else PROJECT_ROOT / "cache"
