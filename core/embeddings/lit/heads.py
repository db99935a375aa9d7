"""offline-lit's trained part: linear heads from the frozen towers' features into one space, and their fit."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from core.cache import ArtefactCache
from core.embeddings.lit.features import caption_features, catalog_features
from core.embeddings.lit.runtime import FeatureRunners
from core.embeddings.lit.text import TextTower
from core.embeddings.lit.towers import IMAGE_FEATURES, TEXT_FEATURES
from core.embeddings.finetune import clip_loss  # the CLIP loss, shared with open_clip fine-tuning


@dataclass(frozen=True)
class LitConfig:
    dim: int = 256  # shared space; small heads train in seconds and generalise from ~15k pairs
    # At most this many epochs. With ``patience``, fewer: as many as a validation share of the products' groups
    # needs (see :func:`choose_epochs`). On H&M the validation recall stopped rising after 9-12 epochs of 40.
    epochs: int = 40
    patience: int = 3  # epochs without a better validation recall before stopping; 0: always ``epochs``
    # "Better" is by at least this much (validation Recall@10, mean of both directions): on H&M it crept up by
    # 0.001-0.005 an epoch well past epoch 9 (0.28 -> 0.29 by epoch 20) while the held-out test recall did not
    # follow (text-to-image Recall@10 0.286 at epoch 9, 0.288 after 40; image-to-text 0.247 against 0.235).
    min_gain: float = 0.01
    validation: float = 0.1  # share of the groups held out to choose the epochs on
    # Held-out products at most, whole groups drawn at random past it (the others train): every epoch compares each
    # held-out sentence with every held-out photo, which grows as their number squared (a tenth of a million
    # products: 10^10 similarities an epoch). The H&M sample holds out about 2,500.
    validation_products: int = 10_000
    batch_size: int = 1024  # in-batch negatives: larger batches give a harder, better contrastive task
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07  # initial; learned (CLIP's init)
    # Also pair each photo with short attribute captions ("a striped dress"): on the H&M sample this
    # lifted held-out zero-shot type accuracy from 0.34 to 0.52 at the same text-to-image recall.
    captions: bool = True
    seed: int = 0


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


def random_heads_like(heads: LitHeads, seed: int = 0) -> LitHeads:
    """Untrained heads of the same shape: the floor trained heads must clearly beat."""
    return LitHeads(int(heads.image.out_features), seed=seed).eval()


class TrainingPairs:
    """The heads' (photo, text) pairs of selected products, gathered a batch at a time rather than copied: pair j is
    the photo of the (j mod m)-th of the m selected products with text kind j div m of the same product (its sentence,
    then each caption). Memory stays the features' own: a copy of every pair would hold the photos once per text kind
    (15 GB for a million products with two captions)."""

    def __init__(self, image: np.ndarray, texts: list[np.ndarray], rows: np.ndarray | None = None):
        self.image, self.texts = image, texts
        self.rows = np.arange(len(image)) if rows is None else np.arange(len(image))[rows]  # a mask or rows

    def __len__(self) -> int:
        return len(self.rows) * len(self.texts)

    def batch(self, pairs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, 1280) photo and (b, 384) text float32 features of the pairs numbered ``pairs`` (b,)."""
        pairs = np.asarray(pairs)
        rows, kinds = self.rows[pairs % len(self.rows)], pairs // len(self.rows)
        texts = np.empty((len(pairs), self.texts[0].shape[1]), dtype=np.float32)
        for kind in np.unique(kinds):
            texts[kinds == kind] = self.texts[kind][rows[kinds == kind]]
        return torch.from_numpy(np.asarray(self.image[rows], dtype=np.float32)), torch.from_numpy(texts)


def fit_heads(image_features: np.ndarray, text_features: np.ndarray, cfg: LitConfig = LitConfig(),
              progress: Callable[[int, int], None] | None = None,
              stop: Callable[[int, LitHeads], bool] | None = None) -> tuple[LitHeads, list[float]]:
    """Train heads on aligned pairs: image_features (n, 1280), text_features (n, 384) float32 (:func:`fit_pairs`)."""
    return fit_pairs(TrainingPairs(image_features, [text_features]), cfg, progress, stop)


def fit_pairs(pairs: TrainingPairs, cfg: LitConfig = LitConfig(), progress: Callable[[int, int], None] | None = None,
              stop: Callable[[int, LitHeads], bool] | None = None) -> tuple[LitHeads, list[float]]:
    """Train heads on ``pairs``, ``cfg.epochs`` epochs, or fewer when ``stop(epochs done, heads)`` (heads in eval mode)
    says so after an epoch. Returns the heads (eval mode) and the mean loss per epoch."""
    torch.manual_seed(cfg.seed)
    heads = LitHeads(cfg.dim, cfg.temperature, cfg.seed)
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    with torch.enable_grad():
        for epoch in range(cfg.epochs):
            heads.train()
            order = torch.randperm(len(pairs), generator=g).numpy()
            losses = []
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                if len(batch) < 2:
                    continue
                img, txt = pairs.batch(batch)
                loss = clip_loss(heads.embed_image(img), heads.embed_text(txt), heads.logit_scale)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    heads.logit_scale.clamp_(0, np.log(100))  # CLIP's cap on the inverse temperature
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)) if losses else float("nan"))
            if progress:
                progress(epoch + 1, cfg.epochs)
            if stop is not None:
                with torch.no_grad():
                    if stop(epoch + 1, heads.eval()):
                        break
    return heads.eval(), history


VALIDATION_ROWS = 1024  # sentences compared with every photo at once: (1024, n) similarities, not (n, n)


def validation_recall(heads: LitHeads, image_features: np.ndarray, text_features: np.ndarray, k: int = 10) -> float:
    """Mean of text-to-image and image-to-text recall@k of matching (n, 1280) photo and (n, 384) sentence
    features (row i with row i) through ``heads``: what :func:`choose_epochs` watches. The similarities are
    computed :data:`VALIDATION_ROWS` sentences at a time (twice: once for each pair's own), so memory grows as n,
    not n^2."""
    with torch.no_grad():
        img = heads.embed_image(torch.from_numpy(np.ascontiguousarray(image_features, dtype=np.float32)))
        txt = heads.embed_text(torch.from_numpy(np.ascontiguousarray(text_features, dtype=np.float32)))
        n = len(img)
        blocks = range(0, n, VALIDATION_ROWS)
        # each pair's own similarity, from the same products as the comparisons below (a row-wise dot product rounds
        # differently, and a duplicate photo or sentence would then beat its twin's pair by an ulp): a first pass
        true = torch.cat([(txt[s:s + VALIDATION_ROWS] @ img.T).diagonal(s) for s in blocks]) if n else img[:, 0]
        t2i_beaten, i2t_beaten = torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long)
        for s in blocks:
            block = txt[s:s + VALIDATION_ROWS] @ img.T
            t2i_beaten[s:s + len(block)] = (block > true[s:s + len(block), None]).sum(dim=1)
            i2t_beaten += (block > true[None, :]).sum(dim=0)  # photo i beaten by the sentences of this block
    t2i = t2i_beaten < k  # fewer than k photos beat the sentence's own
    i2t = i2t_beaten < k
    return float((t2i.float().mean() + i2t.float().mean()) / 2)


@dataclass(frozen=True)
class EpochChoice:
    """:func:`choose_epochs`' answer: the epochs, and the validation recall after each epoch trained."""
    epochs: int
    scores: list[float]


def choose_epochs(features: "TrainingFeatures", rows: np.ndarray, cfg: LitConfig,
                  progress: Callable[[int, int], None] | None = None) -> EpochChoice:
    """How many epochs the heads need: trained on the pairs of ``rows`` ((n,) bool) outside a validation share
    (``cfg.validation`` of their groups, :func:`core.embeddings.groupsplit.held_out_split`, so colour variants stay
    on one side), :func:`validation_recall` on the validation products' (photo, sentence) pairs after each
    epoch, stopped once ``cfg.patience`` epochs in a row have not beaten the best by ``cfg.min_gain``; the epoch of
    that best (at most ``cfg.validation_products`` of them are held out). At most ``cfg.epochs``; all of them with no
    groups, no patience, or too few products to hold out."""
    from core.embeddings.groupsplit import held_out_split, some_groups
    if features.groups is None or cfg.patience <= 0 or cfg.validation <= 0:
        return EpochChoice(cfg.epochs, [])
    # Drawn among the rows' own groups: over all groups, the same seed would hold out exactly the groups the
    # held-out evaluation (split_by_group, also a tenth) leaves out of ``rows``.
    among = np.flatnonzero(rows)
    part = held_out_split(np.asarray(features.groups)[among], (1 - cfg.validation, cfg.validation, 0.0), cfg.seed)
    held = np.zeros(len(rows), dtype=bool)
    held[among[part == "validation"]] = True
    held = some_groups(features.groups, held, cfg.validation_products, cfg.seed)
    fit = rows & ~held
    if held.sum() < 2 or fit.sum() < 2:
        return EpochChoice(cfg.epochs, [])
    scores: list[float] = []
    held_image, held_text = features.image[held], features.text[held]  # copied once, not at every epoch
    best = 0  # the epoch (1-based) that last beat the best before it by cfg.min_gain

    def stop(epoch: int, heads: LitHeads) -> bool:
        nonlocal best
        scores.append(validation_recall(heads, held_image, held_text))
        if best == 0 or scores[-1] >= scores[best - 1] + cfg.min_gain:
            best = epoch
        return epoch - best >= cfg.patience

    fit_pairs(training_pairs(features.image, features.text, features.captions, fit), cfg, progress, stop)
    return EpochChoice(best, scores)


def training_pairs(image: np.ndarray, text: np.ndarray, captions: list[np.ndarray], rows: np.ndarray) -> TrainingPairs:
    """(photo, text) pairs for the heads: each selected photo with its sentence and with each caption."""
    return TrainingPairs(image, [text, *captions], rows)


@dataclass
class TrainingFeatures:
    """What the heads of a catalogue learn from, rows aligned with its products."""
    image: np.ndarray  # (n, 1280) float32 pooled photo features; zero rows without a readable photo
    text: np.ndarray  # (n, 384) float32 sentence features
    has_image: np.ndarray  # (n,) bool
    captions: list[np.ndarray]  # per caption kind (n, 384) float32; empty when LitConfig.captions is off
    errors: dict[int, str]  # {row: error} for unreadable photos
    groups: np.ndarray | None = None  # (n,) the products' group ids (colour variants share one); None: unknown


def training_features(catalog, cache: ArtefactCache, cfg: LitConfig, progress=None,
                      computed: dict[str, int] | None = None, runners: FeatureRunners | None = None,
                      text: TextTower | None = None) -> TrainingFeatures:
    """The catalogue's cached tower features (:func:`catalog_features`) and, when ``cfg.captions``, its caption
    features (:func:`caption_features`). ``computed``, ``runners``, ``text``: as for :func:`catalog_features`."""
    text = text or TextTower(cache)
    image, sentences, has_image, errors = catalog_features(catalog, cache, progress, computed, runners, text)
    captions = caption_features(catalog, cache, progress, text) if cfg.captions else []
    return TrainingFeatures(image, sentences, has_image, captions, errors,
                            catalog.products["group_id"].to_numpy(dtype=str))


def fit_heads_on(features: TrainingFeatures, rows: np.ndarray, cfg: LitConfig,
                 progress: Callable[[int, int], None] | None = None) -> tuple[LitHeads, list[float]]:
    """Heads trained on the pairs of the products selected by ``rows`` ((n,) bool: all with a photo for the
    build, the training products for a held-out measurement): each photo with its sentence and captions, for
    the epochs :func:`choose_epochs` finds on a validation share of those products (a first fit, stopped
    early), then on all of them. Returns the heads (eval mode) and the mean loss per epoch of the final fit;
    ``progress`` sees both fits (the first one's total is ``cfg.epochs``)."""
    epochs = choose_epochs(features, rows, cfg, progress).epochs
    return fit_pairs(training_pairs(features.image, features.text, features.captions, rows),
                     dataclasses.replace(cfg, epochs=epochs), progress)
