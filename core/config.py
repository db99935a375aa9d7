"""Where Atelier keeps things: the project folder and the artefact cache's root."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_ENV = "ATELIER_CACHE"


def cache_root() -> Path:
    """``$ATELIER_CACHE``, else ``cache/`` in the project."""
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else PROJECT_ROOT / "cache"
