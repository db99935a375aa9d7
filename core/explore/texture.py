"""Texture failures: where embeddings confuse patterns and materials, measured against the catalogue's labels."""
from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd

from core.explore.cluster import NOISE, agreement
from core.embeddings.backbone import l2_normalise
from core.embeddings.quality import MIN_CLASS, SPLITS, frequent_classes, held_out_split, neighbours, pattern_agreement
from core.embeddings.texture import TextureConfig, TextureModel, hybrid_weights, select_weights, weighted_blocks
from core.embeddings.quality import zero_shot as _zero_shot

# ---- diagnostics
#
# Every function takes arrays aligned by row over n products: vectors (n, d) float32 with rows
# L2-normalised (cosine = dot product); labels, groups, types, colours and strata (n,) str.
# A *stratum* is a product type and colour together (see ``stratum_keys``): within one, the only
# thing left to tell products apart is what the photo or text says beyond type and colour -- the
# pattern and material. A *group* is one product in several colours (H&M's ``product_code``); its
# colour variants are never each other's neighbours, comparison pairs or split partners here.

OTHER = "(other)"  # confusion column for neighbours whose label is outside the classes shown
# Words in a description that say a pattern (matched case-insensitively, as whole words). Crude on
# purpose: it asks what the catalogue's own text claims, to compare with the catalogue's labels.
PATTERN_KEYWORDS = {
    "Stripe": r"stripes?|striped|stripy",
    "Check": r"checks?|checked|checkered|tartan|gingham",
    "Dot": r"dots?|dotted|spots?|spotted|polka",
    "Melange": r"melange|marl|marled",
    "Denim": r"denim",
    "Lace": r"lace(?!-up)|lacy",  # not "lace-up" shoes
    "All over pattern": r"prints?|printed|patterns?|patterned",
    "Glittering/Metallic": r"glitter\w*|metallic|sequins?|sequinned|sequined|shimmer\w*",
    "Embroidery": r"embroider\w*",
    "Jacquard": r"jacquard",
}


def stratum_keys(types: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """(n,) str stratum key per product, "<type> | <colour>"."""
    return np.char.add(np.char.add(np.asarray(types).astype(str), " | "), np.asarray(colours).astype(str))


def _columns(labels: np.ndarray, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Confusion columns (``classes``, plus OTHER when some label lies outside them) and each label's
    column number (n,)."""
    classes = list(classes)
    outside = ~np.isin(labels, classes)
    columns = classes + [OTHER] if outside.any() else classes
    position = {c: i for i, c in enumerate(classes)}
    return columns, np.array([position.get(x, len(classes)) for x in labels.tolist()], dtype=np.int64)


def _per_class_mean(distribution: np.ndarray, labels: np.ndarray, keep: np.ndarray, classes: list[str],
                    columns: list[str]) -> pd.DataFrame:
    """Rows of ``distribution`` (n, c) averaged over the kept products of each true class."""
    out = [distribution[keep & (labels == c)].mean(axis=0) if np.any(keep & (labels == c))
           else np.full(len(columns), np.nan) for c in classes]
    return pd.DataFrame(np.array(out).reshape(len(classes), len(columns)), index=pd.Index(classes, name="true"),
                        columns=pd.Index(columns, name="neighbour"))


def neighbour_confusion(rows: np.ndarray, labels: np.ndarray, classes: list[str], k: int = 10) -> pd.DataFrame:
    """Pattern-to-pattern confusion over the k nearest neighbours.

    rows (n, >=k) from ``neighbours``, labels (n,). Returns a (len(classes), c) frame, index the true
    class, columns the neighbour's class (``classes``, then OTHER if some label is not among them):
    each product's neighbour labels as shares of its valid neighbours, averaged over the products of
    each class (rows sum to 1; nan for a class with no product that has a neighbour).
    """
    labels = np.asarray(labels)
    columns, code = _columns(labels, classes)
    rows = rows[:, :k]
    valid = rows >= 0
    n = len(labels)
    counts = np.zeros((n, len(columns)))
    owner = np.repeat(np.arange(n), rows.shape[1]).reshape(rows.shape)
    np.add.at(counts, (owner[valid], code[rows[valid]]), 1)
    has = valid.any(axis=1)
    distribution = counts / np.maximum(valid.sum(axis=1, keepdims=True), 1)
    return _per_class_mean(distribution, labels, has, list(classes), columns)


def _ids(*keys: np.ndarray) -> np.ndarray:
    """(n,) int id of each row's combination of keys."""
    return pd.DataFrame({i: np.asarray(k) for i, k in enumerate(keys)}).groupby(
        list(range(len(keys))), sort=True).ngroup().to_numpy()


def _other_group_counts(code: np.ndarray, n_codes: int, strata: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(n, n_codes) for each product, how many OTHER-group products of its stratum carry each code."""
    s, sg = _ids(strata), _ids(strata, groups)
    per_s = np.zeros((s.max() + 1, n_codes))
    per_sg = np.zeros((sg.max() + 1, n_codes))
    np.add.at(per_s, (s, code), 1)
    np.add.at(per_sg, (sg, code), 1)
    return per_s[s] - per_sg[sg]


def null_confusion(labels: np.ndarray, strata: np.ndarray, groups: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """The confusion an embedding that sees only product type and colour would give.

    labels, strata, groups (n,). For each product, the label distribution of the other-group
    products in its stratum, averaged over the products of each true class; products alone in
    their stratum (but for their own group) are left out. Same shape as ``neighbour_confusion``.
    """
    labels = np.asarray(labels)
    if len(labels) == 0:
        return _per_class_mean(np.zeros((0, len(classes))), labels, np.zeros(0, bool), list(classes), list(classes))
    columns, code = _columns(labels, classes)
    counts = _other_group_counts(code, len(columns), strata, groups)
    total = counts.sum(axis=1, keepdims=True)
    return _per_class_mean(counts / np.maximum(total, 1), labels, total[:, 0] > 0, list(classes), columns)


def texture_confusions(rows: np.ndarray, sims: np.ndarray, labels: np.ndarray, types: np.ndarray,
                       colours: np.ndarray) -> pd.DataFrame:
    """Products whose nearest neighbour has the same type and colour but a different pattern.

    rows, sims (n, >=1) from ``neighbours``; labels (pattern), types, colours (n,). One line per
    such product: ``row``, ``neighbour``, ``pattern``, ``neighbour_pattern``, ``type``, ``colour``,
    ``similarity``; the most similar (most confident) confusions first.
    """
    labels, types, colours = np.asarray(labels), np.asarray(types), np.asarray(colours)
    nearest = rows[:, 0] if rows.shape[1] else np.full(len(labels), -1)
    j = np.maximum(nearest, 0)
    hit = np.flatnonzero((nearest >= 0) & (types[j] == types) & (colours[j] == colours) & (labels[j] != labels))
    frame = pd.DataFrame({"row": hit, "neighbour": nearest[hit], "pattern": labels[hit],
                          "neighbour_pattern": labels[nearest[hit]], "type": types[hit], "colour": colours[hit],
                          "similarity": sims[hit, 0] if len(hit) else np.zeros(0, np.float32)})
    return frame.sort_values(["similarity", "row"], ascending=[False, True], kind="stable").reset_index(drop=True)


def pattern_sensitivity(rows: np.ndarray, labels: np.ndarray, strata: np.ndarray, groups: np.ndarray) -> dict:
    """Whether an embedding tells patterns apart among products of the same type and colour.

    rows (n, >=1) from ``neighbours``; labels, strata, groups (n,). Over the ``n`` products whose
    nearest neighbour is in their own stratum: ``m`` the share whose nearest neighbour has another
    pattern, ``m0`` the mean share of other-group products in their stratum with another pattern
    (what a random same-type-and-colour neighbour gives), and ``S`` = 1 - m / m0: 1 when the
    neighbour always shares the pattern, about 0 when the embedding is blind to pattern, negative
    when it prefers another pattern; nan when n == 0 or m0 == 0.
    """
    labels, strata = np.asarray(labels), np.asarray(strata)
    nearest = rows[:, 0] if rows.shape[1] else np.full(len(labels), -1)
    j = np.maximum(nearest, 0)
    chosen = (nearest >= 0) & (strata[j] == strata)
    n = int(chosen.sum())
    if n == 0:
        return {"S": float("nan"), "m": float("nan"), "m0": float("nan"), "n": 0}
    code = np.unique(labels, return_inverse=True)[1].ravel()
    counts = _other_group_counts(code, int(code.max()) + 1, strata, groups)[chosen]
    same = counts[np.arange(n), code[chosen]]
    m = float(np.mean(labels[j[chosen]] != labels[chosen]))
    m0 = float(np.mean(1 - same / counts.sum(axis=1)))  # > 0 others: the nearest neighbour is one
    return {"S": 1 - m / m0 if m0 > 0 else float("nan"), "m": m, "m0": m0, "n": n}


def pair_auc(vectors: np.ndarray, labels: np.ndarray, strata: np.ndarray, groups: np.ndarray,
             max_per_stratum: int = 300, seed: int = 0) -> dict:
    """How well cosine similarity tells same-pattern pairs from different-pattern pairs of the same
    type and colour.

    vectors (n, d) L2-normalised; labels, strata, groups (n,). Within each stratum (a seeded sample
    of ``max_per_stratum`` products when larger), over pairs from different groups: the Mann-Whitney
    AUC (ties count 1/2). Pooled over strata weighted by n_pos * n_neg, so a same-pattern pair is only
    ever compared with a different-pattern pair of its own stratum. Returns ``auc`` (nan when no
    stratum has both kinds of pair), ``pairs`` and ``strata`` counted over the strata that have both.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    s = _ids(strata)
    order = np.argsort(s, kind="stable")
    members = np.split(order, np.flatnonzero(np.diff(s[order])) + 1) if len(s) else []
    u_sum = weight = 0.0
    pairs = used = 0
    for idx in members:
        if len(idx) > max_per_stratum:
            idx = np.sort(rng.choice(idx, max_per_stratum, replace=False))
        a, b = np.triu_indices(len(idx), 1)
        a, b = idx[a], idx[b]
        keep = groups[a] != groups[b]
        a, b = a[keep], b[keep]
        positive = labels[a] == labels[b]
        n_pos, n_neg = int(positive.sum()), int((~positive).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        sims = np.einsum("ij,ij->i", vectors[a].astype(np.float64), vectors[b].astype(np.float64))
        negative = np.sort(sims[~positive])
        # Mann-Whitney U: for each positive, the negatives below it, plus half those tied with it.
        below = np.searchsorted(negative, sims[positive], "left")
        not_above = np.searchsorted(negative, sims[positive], "right")
        u_sum += 0.5 * float(np.sum(below + not_above))
        weight += n_pos * n_neg
        pairs += len(a)
        used += 1
    return {"auc": u_sum / weight if weight else float("nan"), "pairs": pairs, "strata": used}


def linear_probe(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, folds: int = 5,
                 min_class: int = MIN_CLASS, seed: int = 0) -> dict:
    """Whether the pattern is linearly readable from the embedding at all.

    vectors (n, d), labels, groups (n,). A class-balanced logistic regression on standardised
    features, predicted by cross-validation with folds by group (StratifiedGroupKFold), over the
    products of classes held by at least ``min_class`` products (the rest dropped). Returns
    ``balanced_accuracy`` (mean recall per class; 1 / len(classes) by chance; nan with fewer than two
    classes), ``classes`` and ``confusion`` (true class x predicted class, rows sum to 1).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    labels, groups = np.asarray(labels), np.asarray(groups)
    classes = [str(c) for c in frequent_classes(labels, min_class)]
    keep = np.isin(labels, classes)
    smallest = min((int(np.sum(labels == c)) for c in classes), default=0)
    folds = min(folds, len(np.unique(groups[keep])), smallest)  # every class in every fold, if it can be
    if len(classes) < 2 or folds < 2:
        return {"balanced_accuracy": float("nan"), "classes": classes,
                "confusion": pd.DataFrame(index=classes, columns=classes, dtype=float)}
    # C=0.1: the probe asks whether the pattern is readable, not how well a tuned classifier reads it;
    # the stronger penalty also makes lbfgs converge in a few dozen steps on 5,000 x 256.
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, class_weight="balanced", max_iter=300))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    x, y = np.asarray(vectors, dtype=np.float32)[keep], labels[keep]
    # One BLAS thread: these products are small, and threads cost more than they save (measured on
    # 2 busy cores, 5,000 x 256: 0.08 s per fit with one thread, 1.3 s with two).
    with threadpool_limits(limits=1, user_api="blas"):
        predicted = cross_val_predict(model, x, y, groups=groups[keep], cv=cv)
    confusion = confusion_matrix(y, predicted, labels=classes, normalize="true")
    return {"balanced_accuracy": float(balanced_accuracy_score(y, predicted)), "classes": classes,
            "confusion": pd.DataFrame(confusion, index=pd.Index(classes, name="true"),
                                      columns=pd.Index(classes, name="predicted"))}


def zero_shot(vectors: np.ndarray, prompt_vectors: np.ndarray, labels: np.ndarray, classes: list[str],
              prior_correction: bool = False) -> dict:
    """Each product's class as its most similar prompt (core.embeddings.quality.zero_shot), optionally after
    removing each prompt's mean similarity to the products being classified.

    vectors (n, d), prompt_vectors (len(classes), d), both L2-normalised; labels (n,). Products whose
    label is not in ``classes`` are left out. The correction uses no labels: a prompt close to
    everything (a "hub") stops winning every product. Returns ``accuracy`` and ``balanced_accuracy``.
    """
    labels = np.asarray(labels)
    keep = np.isin(labels, list(classes))
    if not keep.any():
        return {"accuracy": float("nan"), "balanced_accuracy": float("nan")}
    x = np.asarray(vectors, dtype=np.float64)[keep]
    prompts = np.asarray(prompt_vectors, dtype=np.float64)
    if prior_correction:
        # A constant coordinate carries the correction: [x, 1] . [p, -mean_x(x . p)] = x . p - mean.
        mean = (x @ prompts.T).mean(axis=0)
        x = np.hstack([x, np.ones((len(x), 1))])
        prompts = np.hstack([prompts, -mean[:, None]])
    accuracy, _, balanced = _zero_shot(x, labels[keep], prompts, list(classes))
    return {"accuracy": accuracy, "balanced_accuracy": balanced}


def cluster_purity(cluster_labels: np.ndarray, labels: np.ndarray) -> float:
    """Share of clustered products (cluster label != NOISE) whose label is their cluster's
    commonest one; nan when every product is noise."""
    if not np.any(np.asarray(cluster_labels) != NOISE):
        return float("nan")
    return agreement(np.asarray(cluster_labels), np.asarray(labels))["purity"]


def label_overlap(labels: np.ndarray, descriptions: np.ndarray, types: np.ndarray,
                  ids: np.ndarray | None = None, groups: np.ndarray | None = None,
                  keywords: dict[str, str] = PATTERN_KEYWORDS) -> dict:
    """Which pattern classes the catalogue's own labels confuse, so label noise is not blamed on an
    embedding.

    labels, descriptions, types (n,) str; ids (n,) product ids for the examples (default row numbers).
    Returns ``mentions``: for each label (index), over its products with a non-empty description,
    the share whose description mentions each pattern of ``keywords`` (columns; whole words, any
    case); ``described``: how many products of each label have a description; and
    ``same_description``: for products with the same non-empty description and type but different
    labels, the number of such pairs per unordered label pair (``label_a`` < ``label_b``, ``pairs``,
    one pair's ids as ``example_a``, ``example_b``), commonest first. With ``groups`` (n,), pairs of
    colour variants are not counted: variants share one product's text, and a grey-melange and a
    black solid variant can both be labelled right.
    """
    labels = np.asarray(labels).astype(str)
    text = pd.Series(np.asarray(descriptions).astype(str)).str.strip()
    ids = np.arange(len(labels)).astype(str) if ids is None else np.asarray(ids).astype(str)
    has = (text != "").to_numpy()
    said = pd.DataFrame({name: text[has].str.contains(rf"\b(?:{words})\b", flags=re.IGNORECASE, regex=True)
                         for name, words in keywords.items()}, columns=list(keywords))
    mentions = said.astype(float).groupby(labels[has]).mean().rename_axis("label")
    described = pd.Series(labels[has]).value_counts().rename_axis("label").rename("described")

    frame = pd.DataFrame({"d": text, "t": np.asarray(types).astype(str), "l": labels, "id": ids,
                          "g": "" if groups is None else np.asarray(groups).astype(str)})[has]
    # One line per (description, type, group, label) with its size, then every pair of such lines.
    per_label = frame.groupby(["d", "t", "g", "l"], sort=True).agg(n=("id", "size"), id=("id", "first")).reset_index()
    both = per_label.merge(per_label, on=["d", "t"], suffixes=("_a", "_b"))
    both = both[(both["l_a"] < both["l_b"]) & ((both["g_a"] != both["g_b"]) | (groups is None))]
    both = both.assign(pairs=both["n_a"] * both["n_b"])
    columns = ["label_a", "label_b", "pairs", "example_a", "example_b"]
    same = (both.groupby(["l_a", "l_b"], sort=True)
            .agg(pairs=("pairs", "sum"), example_a=("id_a", "first"), example_b=("id_b", "first"))
            .reset_index().rename(columns={"l_a": "label_a", "l_b": "label_b"})
            .sort_values(["pairs", "label_a", "label_b"], ascending=[False, True, True], kind="stable")
            .reset_index(drop=True).reindex(columns=columns))
    return {"mentions": mentions, "described": described, "same_description": same}


def diagnose(vectors: np.ndarray, labels: np.ndarray, groups: np.ndarray, types: np.ndarray, colours: np.ndarray,
             k: int = 10, min_class: int = MIN_CLASS, prompt_vectors: np.ndarray | None = None,
             classes: list[str] | None = None, seed: int = 0) -> dict:
    """Every texture diagnostic for one embedding of the given (held-out) products.

    vectors (n, d) L2-normalised; labels (pattern, non-empty: drop unlabelled products first),
    groups, types, colours (n,). Pass held-out products (``held_out_split``) when the embedding was
    trained on the catalogue; neighbours are searched among these products only. ``classes``: the
    pattern classes for the confusion matrices and, in the same order, the prompts of
    ``prompt_vectors`` (len(classes), d); by default the labels held by at least ``min_class`` products.
    Returns a flat dict: scalars (see ``diagnostics_table``) plus ``pattern_agreement_per_class``
    (dict), ``pattern_confusion``, ``null_confusion``, ``texture_confusions`` and ``probe_confusion``
    (DataFrames).
    """
    labels, groups = np.asarray(labels).astype(str), np.asarray(groups)
    types, colours = np.asarray(types).astype(str), np.asarray(colours).astype(str)
    if prompt_vectors is not None and classes is None:
        raise ValueError("prompt_vectors need the classes they describe, in the same order")
    classes = [str(c) for c in (frequent_classes(labels, min_class) if classes is None else classes)]
    strata = stratum_keys(types, colours)
    rows, sims = neighbours(vectors, groups, k)
    pattern = pattern_agreement(rows, labels, k, min_class)
    kind = pattern_agreement(rows, types, k, min_class)
    sensitivity = pattern_sensitivity(rows, labels, strata, groups)
    auc = pair_auc(vectors, labels, strata, groups, seed=seed)
    probe = linear_probe(vectors, labels, groups, min_class=min_class, seed=seed)
    confusions = texture_confusions(rows, sims, labels, types, colours)
    nan = {"accuracy": float("nan"), "balanced_accuracy": float("nan")}
    plain = zero_shot(vectors, prompt_vectors, labels, classes) if prompt_vectors is not None else nan
    corrected = zero_shot(vectors, prompt_vectors, labels, classes, True) if prompt_vectors is not None else nan
    return {
        "n_products": len(labels),
        "n_pattern_classes": len(classes),
        f"pattern_agreement_at_{k}": pattern["micro"],
        f"pattern_agreement_macro_at_{k}": pattern["macro"],
        "pattern_agreement_chance": pattern["chance"],
        "pattern_agreement_macro_chance": pattern["macro_chance"],
        "pattern_agreement_lift": pattern["lift"],
        f"type_agreement_at_{k}": kind["micro"],
        "type_agreement_chance": kind["chance"],
        "pattern_sensitivity": sensitivity["S"],
        "pattern_sensitivity_m": sensitivity["m"],
        "pattern_sensitivity_m0": sensitivity["m0"],
        "pattern_sensitivity_n": sensitivity["n"],
        "pair_auc": auc["auc"],
        "pair_auc_pairs": auc["pairs"],
        "pair_auc_strata": auc["strata"],
        "probe_balanced_accuracy": probe["balanced_accuracy"],
        "probe_chance": 1 / len(probe["classes"]) if probe["classes"] else float("nan"),
        "zero_shot_accuracy": plain["accuracy"],
        "zero_shot_balanced_accuracy": plain["balanced_accuracy"],
        "zero_shot_corrected_accuracy": corrected["accuracy"],
        "zero_shot_corrected_balanced_accuracy": corrected["balanced_accuracy"],
        "texture_confusion_rate": len(confusions) / len(labels) if len(labels) else float("nan"),
        "pattern_agreement_per_class": pattern["per_class"],
        "pattern_confusion": neighbour_confusion(rows, labels, classes, k),
        "null_confusion": null_confusion(labels, strata, groups, classes),
        "texture_confusions": confusions,
        "probe_confusion": probe["confusion"],
    }


def diagnostics_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per embedding kind (index ``kind``), the scalar metrics of its ``diagnose`` as columns."""
    scalars = {kind: {key: value for key, value in result.items()
                      if isinstance(value, (int, float, np.integer, np.floating))}
               for kind, result in results.items()}
    return pd.DataFrame.from_dict(scalars, orient="index").rename_axis("kind")


# ---- the report: every kind of a build, measured on held-out products

REPORT_VERSION = 1


def _frame_json(frame: pd.DataFrame) -> dict:
    return json.loads(frame.to_json(orient="split"))


def _json_frame(data: dict) -> pd.DataFrame:
    """A frame back from JSON: missing numbers (JSON null) are NaN again, numeric columns numeric."""
    frame = pd.DataFrame(data["data"], index=data["index"], columns=data["columns"])
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(lambda v: v is None or isinstance(v, (int, float))).all():
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def honest_embeddings(built, cache, train: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Photo and sentence embeddings (n, d) of every product as a model that learned only from the
    ``train`` (n,) bool products would give them. offline-lit trains its heads on the catalogue, pattern
    captions included, so for held-out numbers its heads are refitted without the held-out products
    (cached like the build's heads); an open_clip backbone learned nothing here and is used as built.
    Returns photo (zero rows without a photo), sentence, and the refitted heads (None for open_clip),
    which also place the zero-shot prompts."""
    from core.cache import digest
    from core.embeddings.lit.backbone import LitBackbone
    from core.embeddings.lit.heads import LitConfig, LitHeads, fit_heads_on, training_features
    emb = built.embeddings
    if not isinstance(built.backbone, LitBackbone):
        return emb.image, emb.text, None
    import torch
    model = built.backbone.model
    cfg = built.backbone.cfg if isinstance(built.backbone.cfg, LitConfig) else LitConfig()
    # as the build's heads were trained (captions included), through the towers the backbone holds
    features = training_features(built.catalog, cache, cfg, runners=model.runners,
                                 text=model.text_tower if model.cache is cache else None)
    image, text, has_image, captions = features.image, features.text, features.has_image, features.captions
    rows = has_image & train
    arrays = cache.get_or_compute("lit-heads", {**dataclasses.asdict(cfg), "held_out": True},
                                  digest(image[rows], text[rows], [c[rows] for c in captions]),
                                  lambda: fit_heads_on(features, rows, cfg)[0].state_arrays())
    heads = LitHeads.from_arrays(arrays)
    with torch.inference_mode():
        photo = heads.embed_image(torch.from_numpy(image)).numpy()
        sentence = heads.embed_text(torch.from_numpy(text)).numpy()
    photo[~has_image] = 0
    return photo, sentence, heads


def _prompts(built, heads, classes: list[str]) -> np.ndarray:
    """(c, d) text embeddings of the zero-shot prompts "a photo of a striped garment", one per class."""
    from core.data.catalog import PATTERN_PROMPT, pattern_phrase
    texts = [PATTERN_PROMPT.format(pattern_phrase(c)) for c in classes]
    if heads is None:
        return built.backbone.encode_text(texts)
    import torch
    with torch.inference_mode():
        return heads.embed_text(torch.from_numpy(built.backbone.model.text_tower(texts))).numpy()


def _purity(vectors: np.ndarray, attributes: dict[str, np.ndarray], seed: int) -> dict[str, float]:
    """HDBSCAN clusters on a 10-d UMAP of ``vectors``; the purity of each attribute over them."""
    from core.explore.cluster import hdbscan_clusters
    from core.explore.projection import ProjectConfig, umap_project
    cfg = ProjectConfig(seed=seed)
    labels = hdbscan_clusters(umap_project(vectors, cfg.cluster_dims, 0.0, cfg)).labels
    return {name: cluster_purity(labels, values) for name, values in attributes.items()}


def _report_key(built, label: str, k: int, seed: int, clusters: bool) -> tuple[dict, str]:
    from core.cache import digest
    products = built.catalog.products
    if label not in products:
        raise ValueError(f"no '{label}' column in this catalogue; choose one of {built.catalog.attribute_columns}")
    needed = {"product_type", "colour"} - set(products.columns)
    if needed:
        raise ValueError(f"the texture report needs product_type and colour columns; missing {sorted(needed)}")
    if built.embeddings.texture is None:
        raise ValueError("this build has no texture kind (it was left out, or the catalogue has too few "
                         "readable photos)")
    cfg = {"label": label, "k": k, "seed": seed, "clusters": clusters, "version": REPORT_VERSION,
           "build": dataclasses.asdict(built.cfg), **built.backbone.cache_config()}
    emb = built.embeddings
    fingerprint = digest(emb.image, emb.text, emb.texture, products[label].to_numpy(str),
                         products["product_type"].to_numpy(str), products["colour"].to_numpy(str))
    return cfg, fingerprint


def _loaded(data: dict) -> dict:
    return {
        **data,
        "table": _json_frame(data["table"]),
        "selection": _json_frame(data["selection"]),
        "hybrid": _json_frame(data["hybrid"]),
        "purity": _json_frame(data["purity"]),
        "label_overlap": {name: _json_frame(f) for name, f in data["label_overlap"].items()},
        "details": {kind: {name: (_json_frame(v) if isinstance(v, dict) and "columns" in v else v)
                           for name, v in d.items()} for kind, d in data["details"].items()},
    }


def texture_report(built, cache, label: str = "pattern", k: int = 10, seed: int = 0, clusters: bool = True,
                   progress=None) -> dict:
    """Every diagnostic of every embedding kind of ``built``, on held-out products (split by group):
    models learn on "train", weights are chosen on "validation", numbers are read on "test". Cached.

    Returns {"table": DataFrame (kind x metric), "details": {kind: per-class agreement, confusion,
    null, probe confusion, texture confusions (product ids)}, "selection": the weight search,
    "hybrid": the hybrid weight search, "label_overlap": {...}, "purity": DataFrame, "split": counts,
    "weights", "label", "kinds"}. ValueError when the catalogue lacks ``label``, product_type or colour.
    """
    cfg, fingerprint = _report_key(built, label, k, seed, clusters)
    arrays = cache.get_or_compute("texture-report", cfg, fingerprint, lambda: {
        "report": np.array(json.dumps(_report(built, cache, label, k, seed, clusters, progress)))})
    return _loaded(json.loads(str(arrays["report"])))


def cached_texture_report(built, cache, label: str = "pattern", k: int = 10, seed: int = 0,
                          clusters: bool = True) -> dict | None:
    """The report :func:`texture_report` stored for this build and label, or None; computes nothing but the
    data's fingerprint."""
    cfg, fingerprint = _report_key(built, label, k, seed, clusters)
    arrays = cache.load("texture-report", cache.key(cfg, fingerprint))
    return None if arrays is None else _loaded(json.loads(str(arrays["report"])))


def _report(built, cache, label: str, k: int, seed: int, clusters: bool, progress) -> dict:
    from core.embeddings.backbone import fuse
    from core.embeddings.lit.features import catalog_texture_features
    step = (lambda name, i, n: progress(name, i, n)) if progress else (lambda *a: None)
    products = built.catalog.products
    labels = products[label].to_numpy(str)
    types, colours = products["product_type"].to_numpy(str), products["colour"].to_numpy(str)
    groups = products["group_id"].to_numpy(str)
    descriptors, _ = catalog_texture_features(built.catalog, cache, views=(built.cfg.texture or TextureConfig()).views)
    has = built.embeddings.has_image & (labels != "") & (np.abs(descriptors).sum(axis=1) > 0)
    part = np.full(len(products), "", dtype=object)
    part[has] = held_out_split(groups[has], seed=seed)
    step("held-out photo and sentence heads", 0, 1)
    photo, sentence, heads = honest_embeddings(built, cache, part == "train")
    step("texture model", 0, 1)
    chosen, selection = select_weights(photo[has], descriptors[has], labels[has], groups[has], types[has],
                                       dataclasses.replace(built.cfg.texture or TextureConfig(), seed=seed), k=k)
    # one fit with a head, whatever the weights: the variants tried are read from its blocks
    fitted = TextureModel(dataclasses.replace(chosen, head_weight=1.0)).fit(photo, descriptors, labels,
                                                                          rows=part == "train")
    model = TextureModel.from_arrays(fitted.state_arrays(), chosen)  # the chosen weights (its head may weigh 0)
    val = part == "validation"
    step("hybrid weight", 0, 1)
    hybrid = hybrid_weights(photo[val], sentence[val], {label: labels[val], "product_type": types[val],
                                                        "colour": colours[val]}, groups[val], k=k)
    test = part == "test"
    blocks = fitted.blocks(photo[test], descriptors[test])
    kinds = {
        "photo": photo[test],
        "sentence": sentence[test],
        "hybrid": fuse(photo[test], sentence[test], built.cfg.hybrid_weight),
        "texture": model.transform(photo[test], descriptors[test]),
        "texture descriptor only": l2_normalise(blocks["texture"]),
        "photo + texture descriptor": weighted_blocks(blocks, [("photo", 0.5), ("texture", 0.5)]),
    }
    if "head" in blocks:
        kinds["photo + pattern head"] = weighted_blocks(blocks, [("photo", 0.5), ("head", 0.5)])
    min_class = MIN_CLASS if test.sum() >= 20 * MIN_CLASS else 3  # a small catalogue still gets its classes
    classes = frequent_classes(labels[test], min_class)
    prompts = _prompts(built, heads, classes) if label == "pattern" and len(classes) >= 2 else None
    prompt_for = {"photo": prompts, "sentence": prompts, "hybrid": prompts,
                  "texture": None if prompts is None else np.stack([model.text_query(p) for p in prompts])}
    ids = products.index.to_numpy(str)[test]
    results, details, purity = {}, {}, {}
    for i, (kind, vectors) in enumerate(kinds.items()):
        step("diagnostics", i, len(kinds))
        result = diagnose(vectors, labels[test], groups[test], types[test], colours[test], k=k, min_class=min_class,
                          prompt_vectors=prompt_for.get(kind), classes=classes, seed=seed)
        confusions = result["texture_confusions"].head(500)
        confusions.insert(0, "neighbour_id", ids[confusions["neighbour"].to_numpy()])
        confusions.insert(0, "product_id", ids[confusions["row"].to_numpy()])
        details[kind] = {"per_class": result["pattern_agreement_per_class"],
                         "confusion": _frame_json(result["pattern_confusion"]),
                         "null": _frame_json(result["null_confusion"]),
                         "probe_confusion": _frame_json(result["probe_confusion"]),
                         "confusions": _frame_json(confusions.drop(columns=["row", "neighbour"]))}
        results[kind] = result
        if clusters and kind in ("photo", "sentence", "hybrid", "texture"):
            purity[kind] = _purity(vectors, {label: labels[test], "product_type": types[test],
                                             "colour": colours[test]}, seed)
    step("diagnostics", len(kinds), len(kinds))
    table = diagnostics_table(results)
    overlap = label_overlap(labels[labels != ""], products["description"].to_numpy(str)[labels != ""],
                            types[labels != ""], ids=products.index.to_numpy(str)[labels != ""],
                            groups=groups[labels != ""])
    counts = pd.Series(part[has]).value_counts()
    return {
        "label": label, "k": k, "kinds": list(kinds),
        "weights": {"photo": chosen.photo_weight, "texture": chosen.texture_weight, "head": chosen.head_weight},
        "split": {p: int(counts.get(p, 0)) for p in SPLITS},
        "table": _frame_json(table.reset_index()),
        "selection": _frame_json(selection),
        "hybrid": _frame_json(hybrid),
        "purity": _frame_json(pd.DataFrame(purity).T.rename_axis("kind").reset_index()),
        "label_overlap": {name: _frame_json(f.reset_index() if name == "mentions" else f)
                          for name, f in overlap.items() if isinstance(f, pd.DataFrame)},
        "details": details,
    }
