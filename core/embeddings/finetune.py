"""Fine-tuning an open_clip model's text tower on a catalogue's (photo, sentence) pairs, image tower frozen.

The image tower stays fixed, so the catalogue's photos are encoded once
(:func:`image_embeddings`) and the text tower learns to put each product's sentence next
to its photo with the CLIP loss (:func:`clip_loss`). By default only the last text
transformer blocks, the final layer norm, the text projection and the logit scale are
trained, as for pretrained weights a small step on the top of the tower is enough and
keeps what the rest of it knows.

:class:`TextTowerFinetuner` changes ``backbone.model`` in place. :func:`finetuned_state`
returns the changed tensors as numpy arrays (what the artefact cache stores) and
:func:`load_finetuned_state` puts them onto another backbone built from the same weights.

Supports open_clip's ``CLIP`` class (a ``transformer`` text tower, as every ViT-*/RN*
model from ``open_clip.create_model`` has); ``CustomTextCLIP`` (Hugging Face text towers)
is refused with a clear error. The loss is CLIP's softmax loss, not SigLIP's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from core.embeddings.backbone import Backbone, encode_text_tokens, encode_images
from core.progress import Ticks

MAX_LOGIT_SCALE = math.log(100)  # open_clip's clamp: a temperature of at least 1/100
FINETUNED_ATTR = "atelier_finetuned"  # on backbone.model: names of the parameters fine-tuning changed


def clip_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP) loss of a batch of matching pairs; row i of ``image`` goes with row i of ``text``.

    ``image``, ``text``: (b, d), rows L2-normalised. ``logit_scale``: scalar, the log of the
    inverse temperature. Returns a scalar: the mean of the image->text and text->image
    cross-entropies of ``logit_scale.exp() * image @ text.T`` against ``arange(b)``;
    ``log(b)`` when the logits carry no information, towards 0 as pairs separate.
    """
    if image.ndim != 2 or image.shape != text.shape:
        raise ValueError(f"image and text must both be (b, d); got {tuple(image.shape)} and {tuple(text.shape)}")
    logits = logit_scale.exp() * image @ text.T
    labels = torch.arange(len(image), device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 5
    batch_size: int = 128  # in-batch negatives: larger batches give a harder, more useful loss
    lr: float = 1e-5  # small: pretrained weights are close to good, a large step forgets what they know
    weight_decay: float = 0.1  # on matrices only; gains, biases, embeddings and the logit scale are not decayed
    # Final text transformer blocks to train; ln_final, text_projection and logit_scale are always
    # trained. 0 trains only those; -1 trains the whole text tower (token and position embeddings too).
    train_last_layers: int = 2
    seed: int = 0  # batch order (and dropout, if the model has any)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2 (the loss contrasts pairs in a batch), "
                             f"got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.train_last_layers < -1:
            raise ValueError(f"train_last_layers must be -1 (whole text tower) or >= 0, got {self.train_last_layers}")


def _check_clip(model: torch.nn.Module) -> None:
    from open_clip.model import CLIP
    if not isinstance(model, CLIP):
        raise TypeError(f"text-tower fine-tuning supports open_clip's CLIP models (a 'transformer' text tower); "
                        f"got {type(model).__name__}")


def trainable_parameter_names(model: torch.nn.Module, train_last_layers: int) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the text-tower parameters ``train_last_layers`` trains.

    ``k >= 0``: the last ``k`` blocks of ``model.transformer.resblocks`` plus ``ln_final``,
    ``text_projection`` and ``logit_scale``; ``-1``: every parameter outside the image tower
    ``visual`` (token and position embeddings, all blocks, ln_final, text_projection, logit_scale).
    """
    _check_clip(model)
    n_blocks = len(model.transformer.resblocks)
    if train_last_layers == -1:
        prefixes = ("",)
    elif 0 <= train_last_layers <= n_blocks:
        blocks = range(n_blocks - train_last_layers, n_blocks)
        prefixes = ("ln_final.", "text_projection", "logit_scale") + tuple(
            f"transformer.resblocks.{i}." for i in blocks)
    else:
        raise ValueError(f"train_last_layers={train_last_layers}, but the text tower has {n_blocks} blocks; "
                         f"use 0..{n_blocks}, or -1 for the whole text tower")
    return [n for n, _ in model.named_parameters()
            if not n.startswith("visual.") and n != "logit_bias" and n.startswith(prefixes)]


def image_embeddings(backbone: Backbone, paths: Sequence[str], batch_size: int = 32
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Photos through the (frozen) image tower, once, for :meth:`TextTowerFinetuner.fit`.

    Returns ``(embeddings, ok)``: (n, d) float32, rows L2-normalised (zero rows where the photo
    is missing or unreadable), and (n,) bool, False there. Fit on ``embeddings[ok]`` and the
    sentences of those rows only.
    """
    emb, errors = encode_images(backbone, list(paths), batch_size=batch_size)
    ok = np.ones(len(paths), dtype=bool)
    ok[list(errors)] = False
    return emb, ok


def _param_groups(named: list[tuple[str, torch.nn.Parameter]], weight_decay: float) -> list[dict]:
    """AdamW groups as open_clip trains: weight decay on matrices only. Embeddings are not decayed
    either, so the token rows a catalogue never uses are left as they were."""
    def no_decay(n: str, p: torch.Tensor) -> bool:
        return p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n or "embedding" in n
    groups = [{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A seeded shuffle cut into batches; a last batch of one row is dropped (it has no negatives)."""
    order = rng.permutation(n)
    return [b for b in np.array_split(order, range(batch_size, n, batch_size)) if len(b) >= 2]


class TextTowerFinetuner:
    """Fine-tunes ``backbone.model``'s text tower, in place, towards fixed image embeddings.

    Attributes after :meth:`fit`:
        history_             list[float], mean training loss of each epoch (per pair, over the epoch)
        trained_parameters_  list[str], names of the parameters trained (``model.named_parameters()``)
    """

    def __init__(self, cfg: FinetuneConfig = FinetuneConfig()):
        self.cfg = cfg

    def fit(self, backbone: Backbone, image_embeddings: np.ndarray, sentences: Sequence[str],
            progress: Ticks | None = None) -> "TextTowerFinetuner":
        """Train on pairs (``image_embeddings[i]``, ``sentences[i]``).

        ``image_embeddings``: (n, d) float32, rows L2-normalised, from this backbone's image tower
        (see :func:`image_embeddings`). ``progress(done, total)`` is called after each batch.
        The model is left in eval mode with no parameter requiring grad, also when training fails.
        """
        cfg, model = self.cfg, backbone.model
        image = np.asarray(image_embeddings, dtype=np.float32)
        sentences = list(sentences)
        if image.ndim != 2 or len(image) != len(sentences):
            raise ValueError(f"need (n, d) image embeddings and n sentences; got {image.shape} and {len(sentences)}")
        if len(sentences) < 2:
            raise ValueError(f"need at least 2 pairs to contrast, got {len(sentences)}")
        names = trainable_parameter_names(model, cfg.train_last_layers)
        params = dict(model.named_parameters())
        trained = [(n, params[n]) for n in names]

        tokens = backbone.tokenizer(sentences)  # (n, context_length) int64, once
        image_t = torch.from_numpy(image)
        rng = np.random.default_rng(cfg.seed)
        epochs = [_batches(len(sentences), cfg.batch_size, rng) for _ in range(cfg.epochs)]
        total, done = sum(map(len, epochs)), 0
        self.history_: list[float] = []
        self.trained_parameters_ = names

        _mark_finetuned(backbone, names)  # before any step, so a run that fails halfway is still recorded
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            for _, p in trained:
                p.requires_grad_(True)
            opt = torch.optim.AdamW(_param_groups(trained, cfg.weight_decay), lr=cfg.lr)
            model.train()
            # create_backbone turns autograd off for the whole process; it is needed here only.
            with torch.enable_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                for batches in epochs:
                    loss_sum = 0.0
                    for rows in batches:
                        text = F.normalize(encode_text_tokens(model, tokens[rows]).float(), dim=-1)
                        loss = clip_loss(image_t[rows], text, model.logit_scale)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        with torch.no_grad():
                            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                        loss_sum += float(loss.detach()) * len(rows)
                        done += 1
                        if progress:
                            progress(done, total)
                    self.history_.append(loss_sum / sum(map(len, batches)))
        finally:
            model.eval()
            for p in model.parameters():
                p.requires_grad_(False)
                p.grad = None
        backbone.notes.append(f"text tower fine-tuned on {len(sentences)} catalogue pairs "
                              f"({cfg.epochs} epochs, train_last_layers={cfg.train_last_layers})")
        return self


def _mark_finetuned(backbone: Backbone, names: Sequence[str]) -> None:
    before = getattr(backbone.model, FINETUNED_ATTR, ())
    setattr(backbone.model, FINETUNED_ATTR, tuple(sorted(set(before) | set(names))))


def finetuned_state(backbone: Backbone) -> dict[str, np.ndarray]:
    """The parameters fine-tuning changed on this backbone ({name: array}, float32 or the model's
    dtype), for the artefact cache. Raises ValueError if it was never fine-tuned."""
    names = getattr(backbone.model, FINETUNED_ATTR, ())
    if not names:
        raise ValueError(f"backbone '{backbone.name}' has not been fine-tuned; nothing to save")
    params = dict(backbone.model.named_parameters())
    return {n: params[n].detach().cpu().numpy().copy() for n in names}


def load_finetuned_state(backbone: Backbone, state: dict[str, np.ndarray]) -> None:
    """Copy :func:`finetuned_state`'s arrays into ``backbone.model`` (same architecture and base weights)."""
    params = dict(backbone.model.named_parameters())
    unknown = [n for n in state if n not in params]
    if unknown:
        raise ValueError(f"fine-tuned state does not fit '{backbone.name}': no parameters named {unknown[:5]}")
    wrong = [f"{n} {tuple(np.shape(a))} vs {tuple(params[n].shape)}" for n, a in state.items()
             if tuple(np.shape(a)) != tuple(params[n].shape)]
    if wrong:
        raise ValueError(f"fine-tuned state does not fit '{backbone.name}': shapes differ: {wrong[:5]}")
    with torch.no_grad():
        for n, a in state.items():
            params[n].copy_(torch.from_numpy(np.asarray(a)).to(params[n].dtype))
    _mark_finetuned(backbone, list(state))
    backbone.notes.append(f"text tower fine-tuned: {len(state)} tensors loaded")
