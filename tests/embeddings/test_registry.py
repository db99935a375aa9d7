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


@pytest.mark.parametrize("name", ["clip:ViT-B-32", "ViT-B-32", ""])
def test_unknown_backbone_kind_raises(name):
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone(name)
