"""Fixtures shared by the embeddings tests."""
from __future__ import annotations

import socket

import pytest


@pytest.fixture
def no_cached_weights(tmp_path, monkeypatch) -> list:
    """An empty Hugging Face cache, and a record of DNS look-ups (there should be none offline)."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    lookups: list = []

    def record(*args, **kwargs):
        lookups.append(args)
        raise OSError("no network in tests")

    monkeypatch.setattr(socket, "getaddrinfo", record)
    return lookups
