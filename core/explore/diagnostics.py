"""Texture diagnostics per embedding kind: neighbour confusions, pattern sensitivity, pair AUC, linear probe,
cluster purity and the catalogue's own label overlap, measured against the catalogue's labels."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.explore.cluster import NOISE, agreement
from core.embeddings.quality import MIN_CLASS, ZeroShot, frequent_classes, label_agreement, neighbours, zero_shot

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
    pattern = label_agreement(rows, labels, k, min_class)
    kind = label_agreement(rows, types, k, min_class)
    sensitivity = pattern_sensitivity(rows, labels, strata, groups)
    auc = pair_auc(vectors, labels, strata, groups, seed=seed)
    probe = linear_probe(vectors, labels, groups, min_class=min_class, seed=seed)
    confusions = texture_confusions(rows, sims, labels, types, colours)
    nan = ZeroShot(float("nan"), float("nan"), float("nan"))
    plain = zero_shot(vectors, labels, prompt_vectors, classes) if prompt_vectors is not None else nan
    corrected = zero_shot(vectors, labels, prompt_vectors, classes, True) if prompt_vectors is not None else nan
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
        "zero_shot_accuracy": plain.accuracy,
        "zero_shot_balanced_accuracy": plain.balanced_accuracy,
        "zero_shot_corrected_accuracy": corrected.accuracy,
        "zero_shot_corrected_balanced_accuracy": corrected.balanced_accuracy,
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
