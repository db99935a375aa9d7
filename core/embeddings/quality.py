"""Honest evaluation of an image-text space on held-out products: retrieval recall, zero-shot accuracy."""
from __future__ import annotations

import time

import numpy as np
import torch

from core.data.catalog import PATTERN_PROMPT, TYPE_PROMPT, Catalog, pattern_phrase
from core.embeddings.index import VectorIndex

MIN_CLASS = 20  # a class needs ~20 products for a per-class mean and for every fold of a 5-fold probe
SPLITS = ("train", "validation", "test")


def split_by_group(groups: np.ndarray, holdout: float = 0.1, seed: int = 0) -> np.ndarray:
    """(n,) bool mask of held-out rows: a seeded ``holdout`` share of the distinct groups, so colour
    variants of one product (one ``group_id``) never straddle the split."""
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = rng.choice(unique, size=max(1, round(holdout * len(unique))), replace=False)
    return np.isin(groups, held)


def held_out_split(groups: np.ndarray, fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
                   seed: int = 0) -> np.ndarray:
    """(n,) str array of "train" / "validation" / "test": a seeded split of the distinct groups in
    the given proportions (of groups, not rows), so colour variants never straddle two parts."""
    unique, inverse = np.unique(groups, return_inverse=True)
    position = np.random.default_rng(seed).permutation(len(unique))  # each group's place in a shuffled order
    share = np.asarray(fractions, dtype=np.float64) / np.sum(fractions)
    ends = np.round(np.cumsum(share) * len(unique)).astype(int)
    part = np.searchsorted(ends, position, side="right")  # place -> part 0, 1 or 2
    return np.asarray(SPLITS)[part][inverse.ravel()]


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


def pattern_agreement(rows: np.ndarray, labels: np.ndarray, k: int = 10, min_class: int = MIN_CLASS) -> dict:
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


def zero_shot(image: np.ndarray, labels: np.ndarray, class_embeddings: np.ndarray,
              classes: list[str]) -> tuple[float, float, float]:
    """Predicting each image's label as its most similar class prompt: accuracy, the majority-class
    rate (the accuracy of always answering the commonest label) and balanced accuracy (mean recall
    per class; 1 / n_classes by chance)."""
    predicted = np.asarray(classes)[np.argmax(image @ class_embeddings.T, axis=1)]
    names, counts = np.unique(labels, return_counts=True)
    balanced = np.mean([np.mean(predicted[labels == c] == c) for c in names])
    return float(np.mean(predicted == labels)), float(counts.max() / len(labels)), float(balanced)


def label_agreement_at_k(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's k nearest other rows (cosine) that have its label."""
    v = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    nearest = np.argpartition(-sims, k, axis=1)[:, :k]
    return float(np.mean(labels[nearest] == labels[:, None]))


def frequent_classes(values: np.ndarray, min_count: int) -> list[str]:
    names, counts = np.unique(values, return_counts=True)
    return [n for n, c in zip(names, counts) if c >= min_count and n]


def evaluate_lit(catalog: Catalog, cache, cfg=None, holdout: float = 0.1, seed: int = 0,
                 min_class: int = 50) -> dict:
    """Train offline-lit heads on the products outside a held-out 10% (by ``group_id``) and measure on
    the held-out ones, against untrained heads and raw ImageNet features."""
    from core.embeddings.lit.heads import LitConfig, fit_heads_on, random_heads_like, training_features
    from core.embeddings.lit.text import TextTower
    cfg = cfg or LitConfig()
    products = catalog.products
    text_tower = TextTower(cache)
    features = training_features(catalog, cache, cfg, text=text_tower)
    image, text, has_image = features.image, features.text, features.has_image
    held_out = split_by_group(products["group_id"].to_numpy(), holdout, seed)
    test, train = held_out & has_image, ~held_out & has_image
    t = time.perf_counter()
    heads, history = fit_heads_on(features, train, cfg)
    out = {"n_train": int(train.sum()), "n_test": int(test.sum()), "holdout_by": "group_id",
           "caption_augmentation": cfg.captions,
           "head_training_s": round(time.perf_counter() - t, 2), "epochs": cfg.epochs,
           "final_train_loss": round(history[-1], 4)}
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
            keep = np.isin(products[col].to_numpy()[test], classes)
            acc, majority, balanced = zero_shot(img[keep], products[col].to_numpy()[test][keep], prompts, classes)
            out[f"{name}zero_shot_{label}_accuracy"] = round(acc, 4)
            out[f"{name}zero_shot_{label}_balanced_accuracy"] = round(balanced, 4)
            out[f"{label}_majority_rate"] = round(majority, 4)
            out[f"{label}_chance_balanced_accuracy"] = round(1 / len(classes), 4)
            out[f"{label}_classes"] = len(classes)
        if patterns:
            out[f"{name}image_pattern_agreement_at_10"] = round(label_agreement_at_k(img, pattern_labels), 4)
    if patterns:
        out["raw_imagenet_pattern_agreement_at_10"] = round(label_agreement_at_k(image[test], pattern_labels), 4)
    return out


def lit_evaluation(catalog: Catalog, cache, recompute: bool = False, compute: bool = True,
                   holdout: float = 0.1, seed: int = 0) -> dict | None:
    """:func:`evaluate_lit` kept in the artefact cache, keyed by the catalogue's photos and sentences, so
    the app shows the numbers the benchmark measured. ``compute=False`` only looks them up."""
    import dataclasses
    import json

    from core.cache import digest
    from core.embeddings.lit.heads import LitConfig
    cfg = {"evaluation": "offline-lit", "lit": dataclasses.asdict(LitConfig()), "holdout": holdout, "seed": seed}
    fingerprint = digest(cache.file_digests(catalog.products["image_path"].tolist()),
                         [digest(s) for s in catalog.products["sentence"].tolist()],
                         catalog.products["group_id"].tolist())
    key = cache.key(cfg, fingerprint)
    hit = None if recompute else cache.load("evaluation", key)
    if hit is not None:
        return json.loads(str(hit["result"]))
    if not compute:
        return None
    result = evaluate_lit(catalog, cache, holdout=holdout, seed=seed)
    cache.save("evaluation", key, {"result": np.array(json.dumps(result))}, {"config": cfg})
    return result


def evaluation_table(result: dict):
    """The evaluation as a DataFrame: metric, trained heads, untrained heads, the reference to beat."""
    import pandas as pd
    rows = []
    for direction in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            key = f"{direction}_recall_at_{k}"
            rows.append((f"{direction.replace('_', ' ')} recall@{k}", result.get(key),
                         result.get(f"random_heads_{key}"), None))
    for label in ("pattern", "type"):
        key = f"zero_shot_{label}_accuracy"
        if key in result:
            rows.append((f"zero-shot {label} accuracy ({result[f'{label}_classes']} classes)", result[key],
                         result.get(f"random_heads_{key}"), result[f"{label}_majority_rate"]))
            key = f"zero_shot_{label}_balanced_accuracy"
            rows.append((f"zero-shot {label} balanced accuracy", result.get(key),
                         result.get(f"random_heads_{key}"), result.get(f"{label}_chance_balanced_accuracy")))
    if "image_pattern_agreement_at_10" in result:
        rows.append(("photo neighbours sharing the pattern (@10)", result["image_pattern_agreement_at_10"],
                     result.get("random_heads_image_pattern_agreement_at_10"),
                     result.get("raw_imagenet_pattern_agreement_at_10")))
    return pd.DataFrame(rows, columns=["metric", "trained heads", "untrained heads",
                                       "reference (majority class / chance / raw ImageNet features)"])
