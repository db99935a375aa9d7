"""``offline-lit``: the frozen towers and the catalogue's trained heads behind the Backbone interface."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from core.cache import ArtefactCache, RowStore, digest
from core.embeddings.backbone import Backbone
from core.embeddings.lit.features import attribute_captions
from core.embeddings.lit.heads import LitConfig, LitHeads, fit_heads_on, training_features
from core.embeddings.lit.runtime import FeatureRunners
from core.embeddings.lit.text import TextTower
from core.embeddings.lit.towers import TOWERS_CFG
from core.embeddings.lit.views import LitImagePreprocess


class LitModel(torch.nn.Module):
    """The towers and heads behind open_clip's interface: ``encode_image`` on preprocessed (b, 3, H, W)
    tensors (:class:`LitImagePreprocess`), ``encode_text`` on strings (its ``tokenizer`` is the identity).

    It holds the loaded towers: ``runners`` (the photo tower's runner) and, once a catalogue's heads are
    trained (:meth:`LitBackbone.prepare`), ``text_tower``, both reading their exports from that build's cache."""

    def __init__(self, runners: FeatureRunners | None = None, heads: LitHeads | None = None):
        super().__init__()
        self.runners = runners or FeatureRunners()
        self.heads = heads
        self.cache: ArtefactCache | None = None  # the cache of the build that trained the heads
        self.text_tower: TextTower | None = None

    def use_cache(self, cache: ArtefactCache) -> TextTower:
        """The text tower reading its export from ``cache`` (kept while the cache stays the same)."""
        if self.text_tower is None or self.cache is not cache:
            self.cache, self.text_tower = cache, TextTower(cache)
        return self.text_tower

    def _heads(self) -> LitHeads:
        if self.heads is None or self.cache is None:
            raise RuntimeError("offline-lit: the projection heads are not trained yet; build a catalogue "
                               "first (python -m core build, or open the app)")
        return self.heads

    @torch.inference_mode()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Photos' pooled features through the runtime that featurised the catalogue (``runners``: ONNX Runtime
        when it can be had, about 3x faster than eager PyTorch on one photo), then the head."""
        heads = self._heads()
        pooled = self.runners.get(self.cache)(x)[0]
        return heads.embed_image(torch.from_numpy(pooled))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        heads = self._heads()
        return heads.embed_text(torch.from_numpy(self.text_tower(texts)))


@dataclass
class LitBackbone(Backbone):
    """``offline-lit``: ``prepare`` trains (or loads from the cache) heads for the catalogue being built."""
    cfg: LitConfig = LitConfig()
    heads_digest: str = ""

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def describe(self) -> str:
        return "offline: pretrained EfficientNet-Lite0 + MiniLM towers, heads trained on this catalogue"

    def cache_config(self) -> dict:
        return {"backbone": self.name, "heads": self.heads_digest, "version": 1}

    def prepare(self, catalog, cache, progress=None) -> tuple[int, int]:
        computed: dict[str, int] = {}
        text_tower = self.model.use_cache(cache)
        features = training_features(catalog, cache, self.cfg, progress, computed, self.model.runners, text_tower)
        image, text, has_image = features.image, features.text, features.has_image
        keys = np.array(cache.file_digests(catalog.products["image_path"].tolist()))
        text_keys = np.array([digest(s) for s in catalog.products["sentence"].tolist()])
        stage = (lambda d, n: progress("training heads", d, n)) if progress else None
        fingerprint = digest(keys[has_image], text_keys[has_image],
                             [list(np.asarray(c)[has_image]) for c in attribute_captions(catalog.products)])
        arrays = cache.get_or_compute(
            "lit-heads", {**dataclasses.asdict(self.cfg), "towers": TOWERS_CFG}, fingerprint,
            lambda: fit_heads_on(features, has_image, self.cfg, stage)[0].state_arrays())
        heads = LitHeads.from_arrays(arrays)
        self.model.heads = heads
        self.heads_digest = digest(*(arrays[k] for k in sorted(arrays)))
        # Embeddings straight from the cached features: no second pass through the towers.
        with torch.inference_mode():
            for name, rows, row_keys, ok in (("image", image, keys, has_image),
                                             ("text", text, text_keys, np.ones(len(text), dtype=bool))):
                store = RowStore(cache, name, self.cache_config())
                _, found = store.get(row_keys.tolist())
                todo = ok & ~found
                embed = heads.embed_image if name == "image" else heads.embed_text
                store.put(row_keys[todo].tolist(), embed(torch.from_numpy(rows[todo])).numpy())
        return computed["images"], computed["texts"]


def create_offline_lit(spec: str = "") -> LitBackbone:
    """The offline-lit backbone; loads nothing heavy: its towers load on first use (a build, or a query)."""
    return LitBackbone("offline-lit", LitModel(), LitImagePreprocess(), list, "pretrained",
                       ["offline-lit: EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2 from installed "
                        "packages, frozen; projection heads trained on the catalogue (LiT)"])
