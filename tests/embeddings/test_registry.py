"""Backbones by name: "auto" and unknown kinds."""
from __future__ import annotations

import pytest

from core.embeddings.registry import create_backbone
from core.embeddings.openclip import DEFAULT_BACKBONE


def test_auto_offline_uses_offline_lit_and_says_why(no_cached_weights):
    backbone = create_backbone("auto")
    assert backbone.name == "offline-lit" and backbone.weights == "pretrained"
    assert any("offline-lit because" in n and DEFAULT_BACKBONE in n for n in backbone.notes)
    assert backbone.warning is None  # pretrained towers: no random-weights warning
    assert no_cached_weights == []
    assert backbone.fallback == ("open_clip weights for ViT-B-32 could not be downloaded (ATELIER_OFFLINE is set); "
                                 "using offline-lit")


def test_auto_without_internet_says_so_in_one_line(no_cached_weights, monkeypatch):
    monkeypatch.delenv("ATELIER_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    backbone = create_backbone("auto")
    assert no_cached_weights  # it looked the hub up, and the look-up failed
    assert backbone.fallback == "open_clip weights for ViT-B-32 could not be downloaded (no internet); using offline-lit"
    full = next(n for n in backbone.notes if "offline-lit because" in n)
    assert "cannot resolve" in full and "Fix:" in full and len(full) > 2 * len(backbone.fallback)  # the details


def test_a_backbone_asked_for_by_name_stands_in_for_nothing(tiny_backbone):
    assert tiny_backbone.fallback == ""


@pytest.mark.parametrize("name", ["clip:ViT-B-32", "ViT-B-32", ""])
def test_unknown_backbone_kind_raises(name):
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone(name)
