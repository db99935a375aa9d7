"""Shared fixtures: an isolated artefact cache, no network, the tiny random backbone, small catalogues."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HM_DIR = PROJECT_ROOT.parent / "shared" / "data" / "hm"
TINY = "random:atelier-tiny"  # a 64-d open_clip model with random weights: fast, for plumbing only


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Every test gets its own artefact cache (and store of added products) and never touches the network."""
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "atelier-cache"))
    monkeypatch.delenv("ATELIER_STORE", raising=False)  # added products go beside that cache: tmp_path / "store"
    monkeypatch.setenv("ATELIER_OFFLINE", "1")
    monkeypatch.delenv("ATELIER_CATALOG", raising=False)
    monkeypatch.setenv("ATELIER_WARM", "0")  # the app warms no page after its build unless a test asks it to
    return tmp_path / "atelier-cache"


@pytest.fixture(scope="session")
def tiny_backbone():
    from core.embeddings.registry import create_backbone
    return create_backbone(TINY)


@pytest.fixture(scope="session")
def synthetic_catalog(tmp_path_factory):
    """60 synthetic products with PNG photos. Shared: tests must not modify it or its files."""
    from core.data.synthetic import make_catalog
    return make_catalog(60, seed=0, image_dir=tmp_path_factory.mktemp("synthetic-60"))


@pytest.fixture
def hm_dir() -> Path:
    if not (HM_DIR / "articles.csv").is_file():
        pytest.skip(f"H&M sample not found at {HM_DIR}")
    return HM_DIR


@pytest.fixture(scope="session")
def published_synthetic(tmp_path_factory):
    """An artefact cache holding one published version of ``synthetic:120:0`` (tiny backbone, the served
    recommenders), as after ``python -m core build``: what the service tests load. Shared by the session
    (building it takes ~30 s): tests that change it work on a copy."""
    from core.cache import ArtefactCache
    from core.serve.release import prepare, publish
    cache = ArtefactCache(tmp_path_factory.mktemp("published") / "cache")
    publish(cache, prepare("synthetic:120:0", backbone=TINY, cache=cache).manifest)
    return cache
