"""The backbone contract (an image-text model with one joint space), photo loading, and batched encoding."""
from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from core.cache import digest
from core.progress import Ticks

WHITE = (255, 255, 255)
log = logging.getLogger(__name__)

class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be loaded; the message says what was tried and what to do, ``why`` says
    why not in a few words ("no internet"; "" when the message is short already)."""

    def __init__(self, message: str, why: str = ""):
        super().__init__(message)
        self.why = why


class ImageError(ValueError):
    """A file that is not a readable image."""


class ImageTooLarge(ImageError):
    """An image with more pixels than the caller allows; found from its header, before it is decoded."""


# ---------------------------------------------------------------- images

def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """:class:`ImageTooLarge` for an image of more than ``max_pixels`` pixels."""
    if width * height > max_pixels:
        raise ImageTooLarge(f"{width}x{height} pixels ({width * height / 1e6:.1f} MP), over the limit of "
                            f"{max_pixels:,} pixels")


def load_image(source: str | os.PathLike | IO[bytes], max_pixels: int | None = None,
               draft: int | None = None) -> Image.Image:
    """Open and decode an image as RGB; transparency is composited onto white.

    ``max_pixels``: refuse (:class:`ImageTooLarge`) an image whose header declares more pixels, before
    decoding it (``Image.open`` reads only the header). ``draft``: decode a JPEG at the smallest of 1/2, 1/4,
    1/8 scale that keeps both sides at least this many pixels (``Image.draft``: the decoder scales, so the
    full-size image is never in memory); other formats decode whole."""
    try:
        with Image.open(source) as img:
            if max_pixels is not None:
                check_pixels(img.width, img.height, max_pixels)
            if draft is not None and img.format in ("JPEG", "MPO"):  # MPO: a phone's multi-picture JPEG
                img.draft("RGB", (draft, draft))
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                canvas = Image.new("RGB", img.size, WHITE)
                canvas.paste(img, mask=img.getchannel("A"))
                return canvas
            return img.convert("RGB")
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        name = getattr(source, "name", source)
        raise ImageError(f"{name}: not a readable image ({e.__class__.__name__}: {e})") from e


def pad_to_square(img: Image.Image, fill: tuple[int, int, int] = WHITE) -> Image.Image:
    """Pad to a square on ``fill`` so a centre crop keeps the whole garment (the photos are 2:3)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


class PadThen:
    """``pad_to_square`` followed by a model's own preprocessing: PIL image -> (3, H, W) tensor."""

    def __init__(self, preprocess: Callable[[Image.Image], torch.Tensor]):
        self.preprocess = preprocess

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.preprocess(pad_to_square(img))


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero); float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


# ---------------------------------------------------------------- backbones

@dataclass
class Backbone:
    """An image-text model with one joint space, as open_clip gives it."""
    name: str
    model: torch.nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    weights: str  # "pretrained" or "random"
    notes: list[str] = field(default_factory=list)  # how it was chosen, warnings to show users
    checkpoint_digest: str = ""  # for a local checkpoint file: its content, so a replaced file is re-embedded
    # Why it stands in for the backbone asked for, in one line ("" when it is the one asked for); notes say it in full.
    fallback: str = ""

    @functools.cached_property
    def dim(self) -> int:
        return int(self.encode_text(["x"]).shape[1])

    @property
    def warning(self) -> str | None:
        if self.weights == "random":
            return (f"'{self.name}' has RANDOM weights: its neighbours and clusters are not meaningful. "
                    "Use pretrained weights for real results (see README, 'Backbones').")
        return None

    def describe(self) -> str:
        return "real pretrained weights" if self.weights == "pretrained" else "RANDOM weights"

    def prepare(self, catalog, cache, progress=None) -> tuple[int, int]:
        """Anything the backbone must learn from a catalogue before encoding it (nothing, for open_clip).
        Returns how many photos and sentences it ran through its towers."""
        return 0, 0

    def cache_config(self) -> dict:
        """What identifies this backbone's outputs in the artefact cache."""
        cfg = {"backbone": self.name, "preprocess": "pad-square-white", "version": 1}
        if self.checkpoint_digest:
            cfg["checkpoint"] = self.checkpoint_digest
        finetuned = getattr(self.model, "atelier_finetuned", ())  # set by core.embeddings.finetune
        if finetuned:
            params = dict(self.model.named_parameters())
            cfg["finetuned"] = digest(*(params[n].detach().numpy() for n in finetuned))
        return cfg

    @torch.inference_mode()
    def encode_image(self, batch: torch.Tensor) -> np.ndarray:
        """(b, 3, H, W) preprocessed images -> (b, d) float32, rows L2-normalised."""
        return l2_normalise(self.model.encode_image(batch).float().numpy())

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """b strings -> (b, d) float32, rows L2-normalised."""
        return l2_normalise(encode_text_tokens(self.model, self.tokenizer(list(texts))).float().numpy())


def encode_text_tokens(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text over only the batch's longest sequence instead of all 77 positions.

    The text transformer is causal and pools at the end-of-text token, so positions after the
    longest sequence's end never reach the output: the result is the same, 2-4x faster for
    short product sentences. Other model classes go through their own encode_text.
    """
    from open_clip.model import CLIP, text_global_pool
    if type(model) is not CLIP or model.text_pool_type != "argmax" or model.attn_mask is None:
        return model.encode_text(tokens)
    length = int((tokens != 0).sum(dim=1).max())  # 0 pads the tokenizer's output
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = text_global_pool(model.ln_final(x), tokens, "argmax")
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection if model.text_projection is not None else x


# ---------------------------------------------------------------- encoding

def _prepare(backbone: Backbone, path: str) -> torch.Tensor | ImageError:
    try:
        return backbone.preprocess(load_image(path))
    except ImageError as e:
        return e


def encode_by_shape(encode: Callable[[torch.Tensor], np.ndarray], tensors: Sequence[torch.Tensor]) -> np.ndarray:
    """``encode`` ((b, 3, H, W) -> (b, d)) of each group of same-shaped preprocessed photos, stacked: (n, d), rows
    in the order given. A preprocessing that keeps a photo's shape (offline-lit's canvas) can give a batch of
    several shapes; a batch of one shape is one call. ``tensors``: at least one."""
    if len(tensors) == 0:
        raise ValueError("encode_by_shape: no tensors to encode")
    shapes: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        shapes.setdefault(tuple(t.shape), []).append(i)
    if len(shapes) == 1:
        return np.asarray(encode(torch.stack(list(tensors))))
    out = None
    for rows in shapes.values():
        part = np.asarray(encode(torch.stack([tensors[i] for i in rows])))
        if out is None:
            out = np.zeros((len(tensors), *part.shape[1:]), dtype=part.dtype)
        out[rows] = part
    return out


def encode_images(backbone: Backbone, paths: Sequence[str], batch_size: int = 64, workers: int = 2,
                  progress: Ticks | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """Encode image files in batches, decoding the next batch in threads while the model runs.

    Returns (n, d) float32 rows L2-normalised (zero rows for unreadable files) and
    {row: error message} for those files.
    """
    n = len(paths)
    out: np.ndarray | None = None
    errors: dict[int, str] = {}
    starts = list(range(0, n, batch_size))

    def submit(pool: ThreadPoolExecutor, start: int) -> list[Future]:
        return [pool.submit(_prepare, backbone, p) for p in paths[start:start + batch_size]]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = submit(pool, 0) if starts else []
        for b, start in enumerate(starts):
            ready = [f.result() for f in pending]
            pending = submit(pool, starts[b + 1]) if b + 1 < len(starts) else []
            good = [i for i, t in enumerate(ready) if isinstance(t, torch.Tensor)]
            for i, t in enumerate(ready):
                if not isinstance(t, torch.Tensor):
                    errors[start + i] = str(t)
            if good:
                emb = encode_by_shape(backbone.encode_image, [ready[i] for i in good])
                if out is None:
                    out = np.zeros((n, emb.shape[1]), dtype=np.float32)
                out[[start + i for i in good]] = emb
            if progress:
                progress(min(start + batch_size, n), n)
    if out is None:
        out = np.zeros((n, backbone.dim), dtype=np.float32)
    return out, errors


def encode_texts(backbone: Backbone, texts: Sequence[str], batch_size: int = 256,
                 progress: Ticks | None = None) -> np.ndarray:
    """(n, d) float32 rows L2-normalised. Texts are batched by length, so short ones are not padded
    to the longest of the whole set (see :func:`encode_text_tokens`)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), backbone.dim), dtype=np.float32)
    for start in range(0, len(texts), batch_size):
        rows = order[start:start + batch_size]
        out[rows] = backbone.encode_text([texts[i] for i in rows])
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return out


def fuse(image: np.ndarray, text: np.ndarray, weight: float, has_image: np.ndarray | None = None) -> np.ndarray:
    """Hybrid embedding: normalise(weight * image + (1 - weight) * text), rows (n, d) L2-normalised.
    Rows without a photo (``has_image`` False) are the text embedding alone."""
    hybrid = l2_normalise(weight * image + (1.0 - weight) * text)
    if has_image is not None:
        hybrid[~has_image] = text[~has_image]
    return hybrid
