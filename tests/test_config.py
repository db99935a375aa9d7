"""Where Atelier keeps things."""
from __future__ import annotations

from pathlib import Path

import pytest

from core.config import CACHE_ENV, PROJECT_ROOT, cache_root


def test_cache_root_is_the_environment_s_else_the_project_s(monkeypatch, tmp_path):
    assert PROJECT_ROOT == Path(__file__).resolve().parents[1] and (PROJECT_ROOT / "core").is_dir()
    monkeypatch.setenv(CACHE_ENV, f"  {tmp_path / 'elsewhere'}  ")  # stray spaces are trimmed
    assert cache_root() == tmp_path / "elsewhere"
    monkeypatch.setenv(CACHE_ENV, "~/atelier-cache")
    assert cache_root() == Path.home() / "atelier-cache"
    for unset in ("", "   "):
        monkeypatch.setenv(CACHE_ENV, unset)
        assert cache_root() == PROJECT_ROOT / "cache"
    monkeypatch.delenv(CACHE_ENV)
    assert cache_root() == PROJECT_ROOT / "cache"


def test_a_url_as_cache_root_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("ATELIER_CACHE", "s3://bucket/atelier")
    with pytest.raises(ValueError, match="s3:// URL.*shared filesystem"):
        cache_root()
