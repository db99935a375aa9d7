"""Honest evaluation of an image-text space on held-out products: retrieval recall, zero-shot accuracy."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from core.cache import json_arrays, json_value
from core.data.catalog import PATTERN_PROMPT, TYPE_PROMPT, Catalog, pattern_phrase
from core.embeddings.index import VectorIndex
from core.embeddings.groupsplit import held_out_split

if TYPE_CHECKING:
    from core.embeddings.lit.heads import LitHeads, TrainingFeatures

MIN_CLASS = 20  # a class needs ~20 products for a per-class mean and for every fold of a 5-fold probe
LIT_EVALUATION_VERSION = 3


def split_by_group(groups: np.ndarray, holdout: float = 0.1, seed: int = 0) -> np.ndarray:
    """(n,) bool mask of held-out rows: the "test" part of :func:`held_out_split` with no validation part, a
    seeded ``holdout`` share of the distinct groups, so colour variants never straddle the split."""
    return held_out_split(groups, (1 - holdout, 0.0, holdout), seed) == "test"


def neighbours(vectors: np.ndarray, groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by cosine, leaving out the product itself and its colour variants (same group).

    vectors (n, d) L2-normalised, groups (n,). Returns rows (n, k) int64 best first, padded with -1,
    and sims (n, k) float32, padded with nan. Searches k + (largest group) so the filtered list is exact.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    groups = np.asarray(groups)
    n = len(vectors)
    rows = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), np.nan, dtype=np.float32)
    if n == 0 or k == 0:
        return rows, sims
    largest = int(np.unique(groups, return_counts=True)[1].max())
    found_sims, found = VectorIndex(vectors, np.arange(n)).search(vectors, k + largest)
    keep = (found >= 0) & (groups[np.maximum(found, 0)] != groups[:, None])
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept hits first, in rank order
    kept = np.take_along_axis(keep, order, axis=1)
    width = order.shape[1]
    rows[:, :width] = np.where(kept, np.take_along_axis(found, order, axis=1), -1)
    sims[:, :width] = np.where(kept, np.take_along_axis(found_sims, order, axis=1), np.nan)
    return rows, sims


def label_agreement(rows: np.ndarray, labels: np.ndarray, k: int = 10, min_class: int = MIN_CLASS) -> dict:
    """How often a product's k nearest neighbours share its label (pattern, or product type).

    rows (n, >=k) neighbour rows from ``neighbours`` (-1: none), labels (n,). Returns ``micro`` (mean
    over products with a neighbour of the share of its first k neighbours with its label),
    ``per_class`` {label: that mean over the label's products}, ``macro`` (mean of per_class over the
    labels held by at least ``min_class`` products), ``chance`` (sum of squared label shares: micro
    for a random embedding), ``macro_chance`` (mean label share over the same labels) and ``lift``
    (micro / chance).
    """
    labels = np.asarray(labels)
    rows = rows[:, :k]
    valid = rows >= 0
    hits = (labels[np.maximum(rows, 0)] == labels[:, None]) & valid
    has = valid.any(axis=1)
    share = hits.sum(axis=1)[has] / valid.sum(axis=1)[has]
    names, counts = np.unique(labels, return_counts=True)
    per_class = {c: float(np.mean(share[labels[has] == c])) if np.any(labels[has] == c) else float("nan")
                 for c in names.tolist()}
    big = [c for c, m in zip(names.tolist(), counts) if m >= min_class]
    fractions = dict(zip(names.tolist(), counts / max(len(labels), 1)))
    micro = float(np.mean(share)) if len(share) else float("nan")
    chance = float(np.sum(counts.astype(np.float64) ** 2) / max(len(labels), 1) ** 2)
    return {"micro": micro, "per_class": per_class,
            "macro": float(np.nanmean([per_class[c] for c in big])) if big else float("nan"),
            "chance": chance,
            "macro_chance": float(np.mean([fractions[c] for c in big])) if big else float("nan"),
            "lift": micro / chance if chance > 0 else float("nan")}


def retrieval_recall(queries: np.ndarray, gallery: np.ndarray, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Recall@k where query i's match is gallery row i; rows (n, d) L2-normalised."""
    sims = queries @ gallery.T
    rank = (sims > np.diag(sims)[:, None]).sum(axis=1)  # how many gallery rows beat the true match
    return {k: float(np.mean(rank < k)) for k in ks}


@dataclass(frozen=True)
class ZeroShot:
    """Predicting each image's label as its most similar class prompt."""
    accuracy: float
    majority_rate: float  # the accuracy of always answering the commonest label
    balanced_accuracy: float  # mean recall per class; 1 / n_classes by chance


def zero_shot(image: np.ndarray, labels: np.ndarray, class_embeddings: np.ndarray, classes: list[str],
              prior_correction: bool = False) -> ZeroShot:
    """Each image's label as its most similar class prompt, optionally after removing each prompt's mean
    similarity to the images being classified.

    image (n, d), class_embeddings (len(classes), d), both L2-normalised; labels (n,). Images whose label
    is not in ``classes`` are left out (all NaN when none is left). The correction uses no labels: a prompt
    close to everything (a "hub") stops winning every image.
    """
    labels = np.asarray(labels)
    keep = np.isin(labels, list(classes))
    if not keep.any():
        return ZeroShot(float("nan"), float("nan"), float("nan"))
    x = np.asarray(image, dtype=np.float64)[keep]
    prompts = np.asarray(class_embeddings, dtype=np.float64)
    if prior_correction:
        # A constant coordinate carries the correction: [x, 1] . [p, -mean_x(x . p)] = x . p - mean.
        mean = (x @ prompts.T).mean(axis=0)
        x = np.hstack([x, np.ones((len(x), 1))])
        prompts = np.hstack([prompts, -mean[:, None]])
    labels = labels[keep]
    predicted = np.asarray(classes)[np.argmax(x @ prompts.T, axis=1)]
    names, counts = np.unique(labels, return_counts=True)
    balanced = np.mean([np.mean(predicted[labels == c] == c) for c in names])
    return ZeroShot(float(np.mean(predicted == labels)), float(counts.max() / len(labels)), float(balanced))


def label_agreement_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest other rows (cosine) that have its label: the ``micro`` of
    :func:`label_agreement` over exact neighbours, each row its own group. vectors (n, d), labels (n,)."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    rows, _ = neighbours(v, np.arange(len(v)), k)
    return label_agreement(rows, np.asarray(labels), k)["micro"]


def frequent_classes(values: np.ndarray, min_count: int) -> list[str]:
    names, counts = np.unique(values, return_counts=True)
    return [n for n, c in zip(names, counts) if c >= min_count and n]


RECALL_KS = (1, 5, 10)  # the k of the retrieval recalls the offline-lit evaluation reports
ZERO_SHOT_LABELS = ("pattern", "type")  # its zero-shot labels: the pattern and the product type


@dataclass(frozen=True)
class HeadScores:
    """One set of offline-lit heads measured on the held-out products (values rounded to 4 digits)."""
    text_to_image_recall: dict[int, float]  # recall@k for k in RECALL_KS
    image_to_text_recall: dict[int, float]
    zero_shot_accuracy: dict[str, float]  # per zero-shot label with classes ("pattern", "type")
    zero_shot_balanced_accuracy: dict[str, float]
    image_pattern_agreement_at_10: float | None  # photo neighbours sharing the pattern; None without patterns


@dataclass(frozen=True)
class LabelClasses:
    """The classes a zero-shot label is measured on, and what guessing scores."""
    classes: int
    majority_rate: float  # accuracy of always answering the commonest label
    chance_balanced_accuracy: float  # 1 / classes


@dataclass(frozen=True)
class LitEvaluation:
    """:func:`evaluate_lit`: offline-lit heads trained on the products outside a held-out share (by
    ``group_id``), measured on the held-out ones against untrained heads and raw ImageNet features.

    Stored, and printed by ``python -m core bench backbone``, as one flat dict (:meth:`to_dict`): keys
    such as ``text_to_image_recall_at_10``, ``random_heads_zero_shot_pattern_accuracy``."""
    n_train: int
    n_test: int
    holdout_by: str
    caption_augmentation: bool
    head_training_s: float
    epochs: int
    final_train_loss: float
    trained: HeadScores
    random_heads: HeadScores
    labels: dict[str, LabelClasses]  # per zero-shot label with classes
    raw_imagenet_pattern_agreement_at_10: float | None

    def to_dict(self) -> dict:
        """The flat dict, keys in the order :func:`evaluate_lit` always gave them."""
        out = {name: getattr(self, name) for name in ("n_train", "n_test", "holdout_by", "caption_augmentation",
                                                      "head_training_s", "epochs", "final_train_loss")}
        for prefix, scores in (("", self.trained), ("random_heads_", self.random_heads)):
            out |= {f"{prefix}text_to_image_recall_at_{k}": v for k, v in scores.text_to_image_recall.items()}
            out |= {f"{prefix}image_to_text_recall_at_{k}": v for k, v in scores.image_to_text_recall.items()}
            for label, accuracy in scores.zero_shot_accuracy.items():
                classes = self.labels[label]
                out |= {f"{prefix}zero_shot_{label}_accuracy": accuracy,
                        f"{prefix}zero_shot_{label}_balanced_accuracy": scores.zero_shot_balanced_accuracy[label],
                        f"{label}_majority_rate": classes.majority_rate,
                        f"{label}_chance_balanced_accuracy": classes.chance_balanced_accuracy,
                        f"{label}_classes": classes.classes}
            if scores.image_pattern_agreement_at_10 is not None:
                out[f"{prefix}image_pattern_agreement_at_10"] = scores.image_pattern_agreement_at_10
        if self.raw_imagenet_pattern_agreement_at_10 is not None:
            out["raw_imagenet_pattern_agreement_at_10"] = self.raw_imagenet_pattern_agreement_at_10
        return out

    @classmethod
    def from_dict(cls, flat: dict) -> "LitEvaluation":
        def scores(prefix: str) -> HeadScores:
            labels = [label for label in ZERO_SHOT_LABELS if f"{prefix}zero_shot_{label}_accuracy" in flat]
            return HeadScores({k: flat[f"{prefix}text_to_image_recall_at_{k}"] for k in RECALL_KS},
                              {k: flat[f"{prefix}image_to_text_recall_at_{k}"] for k in RECALL_KS},
                              {label: flat[f"{prefix}zero_shot_{label}_accuracy"] for label in labels},
                              {label: flat[f"{prefix}zero_shot_{label}_balanced_accuracy"] for label in labels},
                              flat.get(f"{prefix}image_pattern_agreement_at_10"))
        labels = {label: LabelClasses(flat[f"{label}_classes"], flat[f"{label}_majority_rate"],
                                      flat[f"{label}_chance_balanced_accuracy"])
                  for label in ZERO_SHOT_LABELS if f"{label}_classes" in flat}
        return cls(flat["n_train"], flat["n_test"], flat["holdout_by"], flat["caption_augmentation"],
                   flat["head_training_s"], flat["epochs"], flat["final_train_loss"], scores(""),
                   scores("random_heads_"), labels, flat.get("raw_imagenet_pattern_agreement_at_10"))

    def to_arrays(self) -> dict[str, np.ndarray]:
        return json_arrays(self.to_dict(), "result")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LitEvaluation":
        return cls.from_dict(json_value(arrays, "result"))


@dataclass
class HeldOutHeads:
    """offline-lit heads that never saw the held-out products, shared by every held-out measurement (the
    backbone evaluation, the texture report), so one fit serves them all."""
    part: np.ndarray  # (n,) str "train" / "validation" / "test" per product: held_out_split of the groups
    heads: LitHeads  # trained on the "train" products with a photo
    features: TrainingFeatures  # the catalogue's tower features the heads learned from
    seconds: float  # the fit's wall time (when it was computed, if it was loaded from the cache)
    final_loss: float  # the fit's last epoch's mean training loss
    epochs: int  # epochs the fit ran


def held_out_heads(catalog: Catalog, cache, cfg=None, seed: int = 0, runners=None, text=None) -> HeldOutHeads:
    """Heads fitted on the "train" part (60% of the groups) of :func:`held_out_split`, cached; the other
    parts stay unseen: "validation" for choices, "test" for the numbers. ``runners``, ``text``: loaded towers
    to reuse (see :func:`core.embeddings.lit.heads.training_features`)."""
    from dataclasses import asdict

    from core.cache import digest
    from core.embeddings.lit.heads import LitConfig, LitHeads, fit_heads_on, training_features
    cfg = cfg or LitConfig()
    features = training_features(catalog, cache, cfg, runners=runners, text=text)
    part = held_out_split(catalog.products["group_id"].to_numpy(str), seed=seed)
    rows = features.has_image & (part == "train")

    def fit() -> dict[str, np.ndarray]:
        t = time.perf_counter()
        heads, history = fit_heads_on(features, rows, cfg)
        return {**heads.state_arrays(), "fit.seconds": np.float64(time.perf_counter() - t),
                "fit.loss": np.asarray(history, dtype=np.float64)}
    arrays = cache.get_or_compute(
        "lit-heads", {**asdict(cfg), "held_out": "train of held_out_split", "seed": seed},
        digest(features.image[rows], features.text[rows], [c[rows] for c in features.captions]), fit)
    loss = np.asarray(arrays["fit.loss"])
    heads = LitHeads.from_arrays({k: v for k, v in arrays.items() if not k.startswith("fit.")})
    return HeldOutHeads(part, heads, features, float(arrays["fit.seconds"]),
                        float(loss[-1]) if len(loss) else float("nan"), len(loss))


def evaluate_lit(catalog: Catalog, cache, cfg=None, seed: int = 0, min_class: int = 50) -> LitEvaluation:
    """offline-lit heads trained on the "train" products of :func:`held_out_heads` (by ``group_id``), measured
    on its "test" products, against untrained heads and raw ImageNet features."""
    from core.embeddings.lit.heads import LitConfig, random_heads_like
    from core.embeddings.lit.text import TextTower
    cfg = cfg or LitConfig()
    products = catalog.products
    text_tower = TextTower(cache)
    held = held_out_heads(catalog, cache, cfg, seed, text=text_tower)
    features, heads = held.features, held.heads
    image, text, has_image = features.image, features.text, features.has_image
    test, train = (held.part == "test") & has_image, (held.part == "train") & has_image
    out = {"n_train": int(train.sum()), "n_test": int(test.sum()), "holdout_by": "group_id",
           "caption_augmentation": cfg.captions, "head_training_s": round(held.seconds, 2), "epochs": held.epochs,
           "final_train_loss": round(held.final_loss, 4)}
    patterns = frequent_classes(products["pattern"].to_numpy(), min_class) if "pattern" in products else []
    types = frequent_classes(products["product_type"].to_numpy(), min_class) if "product_type" in products else []
    pattern_prompts = text_tower([PATTERN_PROMPT.format(pattern_phrase(p)) for p in patterns])
    type_prompts = text_tower([TYPE_PROMPT.format(p.lower()) for p in types])
    pattern_labels = products["pattern"].to_numpy()[test] if patterns else None

    for name, h in (("", heads), ("random_heads_", random_heads_like(heads, seed))):
        with torch.inference_mode():
            img = h.embed_image(torch.from_numpy(image[test])).numpy()
            txt = h.embed_text(torch.from_numpy(text[test])).numpy()
            pat = h.embed_text(torch.from_numpy(pattern_prompts)).numpy() if patterns else None
            typ = h.embed_text(torch.from_numpy(type_prompts)).numpy() if types else None
        for k, v in retrieval_recall(txt, img).items():
            out[f"{name}text_to_image_recall_at_{k}"] = round(v, 4)
        for k, v in retrieval_recall(img, txt).items():
            out[f"{name}image_to_text_recall_at_{k}"] = round(v, 4)
        for label, classes, prompts, col in (("pattern", patterns, pat, "pattern"),
                                             ("type", types, typ, "product_type")):
            if not classes:
                continue
            scored = zero_shot(img, products[col].to_numpy()[test], prompts, classes)
            out[f"{name}zero_shot_{label}_accuracy"] = round(scored.accuracy, 4)
            out[f"{name}zero_shot_{label}_balanced_accuracy"] = round(scored.balanced_accuracy, 4)
            out[f"{label}_majority_rate"] = round(scored.majority_rate, 4)
            out[f"{label}_chance_balanced_accuracy"] = round(1 / len(classes), 4)
            out[f"{label}_classes"] = len(classes)
        if patterns:
            out[f"{name}image_pattern_agreement_at_10"] = round(label_agreement_at_k(img, pattern_labels), 4)
    if patterns:
        out["raw_imagenet_pattern_agreement_at_10"] = round(label_agreement_at_k(image[test], pattern_labels), 4)
    return LitEvaluation.from_dict(out)


def lit_evaluation(catalog: Catalog, cache, recompute: bool = False, compute: bool = True,
                   seed: int = 0) -> LitEvaluation | None:
    """:func:`evaluate_lit` kept in the artefact cache, keyed by the catalogue's photos and sentences, so
    the app shows the numbers the benchmark measured. ``compute=False`` only looks them up."""
    import dataclasses

    from core.cache import digest
    from core.embeddings.lit.heads import LitConfig
    from core.embeddings.lit.towers import TOWERS_CFG
    # version 3: heads trained on the 60% "train" part of held_out_split and measured on its 20% "test" part, the
    # fit the texture report shares (version 2: trained on 90%, measured on 10%)
    cfg = {"evaluation": "offline-lit", "lit": dataclasses.asdict(LitConfig()), "towers": TOWERS_CFG, "seed": seed,
           "version": LIT_EVALUATION_VERSION}
    fingerprint = digest(cache.file_digests(catalog.products["image_path"].tolist()),
                         [digest(s) for s in catalog.products["sentence"].tolist()],
                         catalog.products["group_id"].tolist())
    key = cache.key(cfg, fingerprint)
    hit = None if recompute else cache.load("evaluation", key)
    if hit is not None:
        return LitEvaluation.from_arrays(hit)
    if not compute:
        return None
    result = evaluate_lit(catalog, cache, seed=seed)
    cache.save("evaluation", key, result.to_arrays(), {"config": cfg})
    return result


def evaluation_table(result: LitEvaluation):
    """The evaluation as a DataFrame: metric, trained heads, untrained heads, the reference to beat."""
    import pandas as pd
    trained, untrained = result.trained, result.random_heads
    rows = []
    for direction in ("text_to_image", "image_to_text"):
        for k in RECALL_KS:
            rows.append((f"{direction.replace('_', ' ')} recall@{k}", getattr(trained, f"{direction}_recall")[k],
                         getattr(untrained, f"{direction}_recall")[k], None))
    for label in ZERO_SHOT_LABELS:
        if label in trained.zero_shot_accuracy:
            classes = result.labels[label]
            rows.append((f"zero-shot {label} accuracy ({classes.classes} classes)", trained.zero_shot_accuracy[label],
                         untrained.zero_shot_accuracy.get(label), classes.majority_rate))
            rows.append((f"zero-shot {label} balanced accuracy", trained.zero_shot_balanced_accuracy[label],
                         untrained.zero_shot_balanced_accuracy.get(label), classes.chance_balanced_accuracy))
    if trained.image_pattern_agreement_at_10 is not None:
        rows.append(("photo neighbours sharing the pattern (@10)", trained.image_pattern_agreement_at_10,
                     untrained.image_pattern_agreement_at_10, result.raw_imagenet_pattern_agreement_at_10))
    return pd.DataFrame(rows, columns=["metric", "trained heads", "untrained heads",
                                       "reference (majority class / chance / raw ImageNet features)"])
