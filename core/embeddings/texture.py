"""The texture embedding: the photo embedding fused with a texture descriptor and a pattern head, weights
chosen on a validation split."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.embeddings.backbone import fuse, l2_normalise
from core.embeddings.groupsplit import some_groups
from core.embeddings.quality import MIN_CLASS, frequent_classes, held_out_split, label_agreement, neighbours

# ---- the texture-aware embedding
#
# Texture lives in the image tower's mid-level feature maps, not in its pooled vector. The descriptor
# (core.embeddings.lit.FeatureTower: mean and Gram matrix of block feature maps over the garment's own pixels) is
# power-normalised, compressed by PCA fitted on the catalogue's photos, and fused with the photo
# embedding; a supervised pattern head (class-balanced logistic regression on the catalogue's pattern
# labels, its class probabilities as a block) can join them. Blocks are L2-normalised and weighted by
# the square roots of their weights, so a cosine in the fused space is the weighted sum of the blocks'
# cosines.


@dataclass(frozen=True)
class TextureConfig:
    pca_dim: int = 128  # per descriptor block; 820- and 3,240-d Grams keep their pattern signal at 128 (measured)
    photo_weight: float = 0.5  # the three weights are chosen on a validation split (texture_weights)
    texture_weight: float = 0.25
    head_weight: float = 0.25  # 0: no supervised head (also when the catalogue has no pattern labels)
    head_c: float = 0.05  # inverse L2 strength of the head; strong regularisation generalises across groups
    min_class: int = MIN_CLASS  # pattern classes with fewer labelled products are left to the other blocks
    # Views of the photo the descriptor is taken from (core.embeddings.lit.TEXTURE_VIEWS: "photo", "gray", "centre"); each
    # one beyond "photo" is one more pass over every photo. On H&M neither grayscale nor a zoomed centre crop
    # added to "photo" alone (README, "Tried and not kept").
    views: tuple[str, ...] = ("photo",)
    # Products the PCA and the pattern head are fitted on at most, a random sample past it: a fit on every product
    # holds copies of every descriptor (860 floats each: 3.4 GB a copy at a million) for components and a linear head
    # that a sample finds as well. The H&M sample has 24,717 products.
    fit_sample: int = 50_000
    # Validation products the weights are scored on at most, whole groups drawn at random past it: each weight triple
    # searches exact neighbours among all of them, which grows as their number squared. The H&M sample has about
    # 4,900 (a fifth of its labelled products with a photo).
    selection_products: int = 10_000
    seed: int = 0


CHUNK = 65_536  # descriptor rows normalised and projected at a time


def described(descriptors: np.ndarray) -> np.ndarray:
    """(n,) bool: the rows of (n, D) ``descriptors`` that are not all zero (a product without a photo has none), a
    :data:`CHUNK` of rows at a time."""
    out = np.empty(len(descriptors), dtype=bool)
    for start in range(0, len(descriptors), CHUNK):
        out[start:start + CHUNK] = (descriptors[start:start + CHUNK] != 0).any(axis=1)
    return out


def power_normalise(x: np.ndarray) -> np.ndarray:
    """Signed square root then L2 rows (the usual normalisation of second-order descriptors): (n, d) float32."""
    x = np.asarray(x, dtype=np.float32)
    return l2_normalise(np.sign(x) * np.sqrt(np.abs(x)))


def weighted_blocks(arrays: dict[str, np.ndarray], weights: list[tuple[str, float]]) -> np.ndarray:
    """Concatenate L2-normalised blocks scaled by sqrt(weight), then L2 rows; blocks of weight 0 left out."""
    kept = [(name, w) for name, w in weights if w > 0]
    total = sum(w for _, w in kept)
    fused = np.hstack([np.sqrt(w / total) * l2_normalise(arrays[name]) for name, w in kept])
    return l2_normalise(fused)


class TextureModel:
    """Learns the texture-aware photo embedding of a catalogue.

    ``fit(photo, descriptors, labels)``: photo (n, d) the backbone's photo embedding, descriptors (n, D)
    texture descriptors (rows of photo-less products are ignored), labels (n,) pattern labels ("" where
    unknown) or None. After fit: ``pca_mean_`` (D,), ``pca_components_`` (pca_dim, D), ``pca_scale_``
    (pca_dim,) whitening, and if the head is used ``head_coef_`` (c, d + pca_dim), ``head_intercept_`` (c,),
    ``head_mean_``/``head_scale_`` (d + pca_dim,) standardisation, ``classes_`` (c,).
    ``transform(photo, descriptors)`` -> (n, d + pca_dim [+ c]) rows L2-normalised.
    """

    def __init__(self, cfg: TextureConfig = TextureConfig()):
        self.cfg = cfg
        self.classes_: np.ndarray = np.array([], dtype=str)

    def fit(self, photo: np.ndarray, descriptors: np.ndarray, labels: np.ndarray | None = None,
            rows: np.ndarray | None = None) -> "TextureModel":
        """``rows`` (n,) bool: the products to learn from (e.g. a training split); default all with a photo. The PCA
        and the head each learn from at most ``cfg.fit_sample`` of them, drawn at random."""
        from sklearn.decomposition import PCA
        rows = np.ones(len(photo), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
        rows = rows & described(descriptors)  # products without a photo have zero descriptors
        x = power_normalise(descriptors[self._some(rows)])
        pca = PCA(min(self.cfg.pca_dim, len(x) - 1, x.shape[1]), whiten=True, random_state=self.cfg.seed).fit(x)
        # Fewer distinct photos than components (a small shop reusing photos) leaves components of zero
        # variance: whitening by them would divide by zero, so they are dropped (the first is always kept).
        variance = pca.explained_variance_
        keep = variance > 1e-6 * variance.max()
        keep[0] = True
        self.pca_mean_ = pca.mean_.astype(np.float32)
        self.pca_components_ = pca.components_[keep].astype(np.float32)
        self.pca_scale_ = np.sqrt(np.where(variance[keep] > 0, variance[keep], 1.0)).astype(np.float32)
        self.classes_ = np.array([], dtype=str)
        if labels is not None and self.cfg.head_weight > 0:
            self._fit_head(photo, descriptors, np.asarray(labels).astype(str), rows)
        return self

    def _some(self, rows: np.ndarray) -> np.ndarray:
        """The row numbers of ``rows`` ((n,) bool), at most ``cfg.fit_sample`` of them drawn at random, in order."""
        rows = np.flatnonzero(rows)
        if 0 < self.cfg.fit_sample < len(rows):
            rows = np.sort(np.random.default_rng(self.cfg.seed).choice(rows, self.cfg.fit_sample, replace=False))
        return rows

    def _texture(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, pca) the descriptors' whitened components, :data:`CHUNK` rows at a time (the power normalisation's
        temporaries are the size of the rows it is given)."""
        out = np.empty((len(descriptors), len(self.pca_scale_)), np.float32)
        for start in range(0, len(descriptors), CHUNK):
            part = power_normalise(descriptors[start:start + CHUNK])
            out[start:start + CHUNK] = (part - self.pca_mean_) @ self.pca_components_.T / self.pca_scale_
        return out

    def _head_input(self, photo: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        return np.hstack([l2_normalise(photo), l2_normalise(self._texture(descriptors))])

    def _fit_head(self, photo: np.ndarray, descriptors: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits
        keep = self._some(rows & np.isin(labels, frequent_classes(labels[rows], self.cfg.min_class)))
        if len(np.unique(labels[keep])) < 2:
            return
        x = self._head_input(photo[keep], descriptors[keep])
        self.head_mean_, self.head_scale_ = x.mean(axis=0), x.std(axis=0) + 1e-6
        with threadpool_limits(1):  # many small BLAS calls: one thread is faster on a busy 2-core machine
            head = LogisticRegression(C=self.cfg.head_c, class_weight="balanced", max_iter=300,
                                      random_state=self.cfg.seed).fit((x - self.head_mean_) / self.head_scale_,
                                                                      labels[keep])
        self.classes_ = head.classes_.astype(str)
        self.head_coef_ = head.coef_.astype(np.float32)
        self.head_intercept_ = head.intercept_.astype(np.float32)

    def pattern_probabilities(self, photo: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """(n, c) the head's class probabilities (columns ``classes_``)."""
        x = (self._head_input(photo, descriptors) - self.head_mean_) / self.head_scale_
        logits = x @ self.head_coef_.T + self.head_intercept_
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def blocks(self, photo: np.ndarray, descriptors: np.ndarray) -> dict[str, np.ndarray]:
        """The fused embedding's parts: "photo", "texture" and (with a head) "head" = sqrt of probabilities."""
        out = {"photo": photo, "texture": self._texture(descriptors)}
        if len(self.classes_):
            out["head"] = np.sqrt(self.pattern_probabilities(photo, descriptors))
        return out

    def weights(self) -> list[tuple[str, float]]:
        head = self.cfg.head_weight if len(self.classes_) else 0.0
        return [("photo", self.cfg.photo_weight), ("texture", self.cfg.texture_weight), ("head", head)]

    def transform(self, photo: np.ndarray, descriptors: np.ndarray) -> np.ndarray:
        """(n, d') texture-aware photo embedding, rows L2-normalised; rows without a photo stay zero."""
        fused = weighted_blocks(self.blocks(photo, descriptors), self.weights())
        fused[~described(descriptors)] = 0
        return fused

    def text_query(self, text_vector: np.ndarray) -> np.ndarray:
        """A (d,) text-tower query placed in the fused space: its photo block only, so its ranking is the
        photo space's (a text says nothing about the texture blocks). (d',) float32, unit length."""
        widths = {"photo": len(text_vector), "texture": len(self.pca_scale_), "head": len(self.classes_)}
        parts = [l2_normalise(text_vector[None])[0] if name == "photo" else np.zeros(widths[name], np.float32)
                 for name, w in self.weights() if w > 0]
        return np.concatenate(parts).astype(np.float32)

    def state_arrays(self) -> dict[str, np.ndarray]:
        names = ["pca_mean_", "pca_components_", "pca_scale_", "classes_"]
        if len(self.classes_):
            names += ["head_coef_", "head_intercept_", "head_mean_", "head_scale_"]
        return {n: np.asarray(getattr(self, n)) for n in names}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> tuple["TextureModel", pd.DataFrame]:
        """The model and its weight-selection table from ``fit_texture_model``'s arrays."""
        photo, texture, head = (float(w) for w in state["weights"])
        cfg = TextureConfig(photo_weight=photo, texture_weight=texture, head_weight=head)
        model = cls.from_arrays({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}, cfg)
        table = pd.DataFrame({k.removeprefix("selection."): v for k, v in state.items() if k.startswith("selection.")})
        return model, table

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], cfg: TextureConfig = TextureConfig()) -> "TextureModel":
        model = cls(cfg)
        for name, value in arrays.items():
            setattr(model, name, np.asarray(value).astype(str) if name == "classes_" else np.asarray(value))
        return model


# Weights (photo, texture, head) tried on the validation split; the photo alone is the baseline.
WEIGHT_GRID = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.7, 0.3, 0.0), (0.5, 0.0, 0.5), (0.7, 0.0, 0.3),
               (0.6, 0.2, 0.2), (0.5, 0.25, 0.25), (0.4, 0.3, 0.3), (0.34, 0.33, 0.33), (0.25, 0.25, 0.5))
TYPE_TOLERANCE = 0.02  # the fix may cost at most 2 points of type agreement@10 against the photo alone


def select_weights(photo: np.ndarray, descriptors: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                   types: np.ndarray, cfg: TextureConfig = TextureConfig(), grid=WEIGHT_GRID, k: int = 10
                   ) -> tuple[TextureConfig, pd.DataFrame]:
    """Choose the block weights on a validation split (by group) of the labelled products with a photo:
    fit on "train" (at most ``cfg.fit_sample`` products), score each weight triple on "validation" (neighbours among
    validation products only, at most ``cfg.selection_products`` of them in whole groups),
    keep the best pattern agreement@k whose type agreement@k is within TYPE_TOLERANCE of the photo
    alone. Returns the chosen config and one row per triple (photo, texture, head, pattern_agreement,
    type_agreement, pattern_sensitivity, chosen)."""
    labels, groups, types = (np.asarray(a).astype(str) for a in (labels, groups, types))
    has = np.flatnonzero(described(descriptors) & (labels != ""))  # rows, not copies of the descriptors
    part = held_out_split(groups[has], seed=cfg.seed)
    train = np.zeros(len(labels), dtype=bool)
    train[has[part == "train"]] = True
    model = TextureModel(cfg).fit(photo, descriptors, labels, rows=train)
    val = has[some_groups(groups[has], part == "validation", cfg.selection_products, cfg.seed)]
    blocks = model.blocks(photo[val], descriptors[val])
    v_labels, v_groups, v_types = labels[val], groups[val], types[val]
    rows_out = []
    for wp, wt, wh in grid:
        if wh > 0 and "head" not in blocks:
            continue
        rows, _ = neighbours(weighted_blocks(blocks, [("photo", wp), ("texture", wt), ("head", wh)]), v_groups, k)
        rows_out.append({"photo": wp, "texture": wt, "head": wh,
                         "pattern_agreement": label_agreement(rows, v_labels, k)["micro"],
                         "type_agreement": label_agreement(rows, v_types, k)["micro"]})
    table = pd.DataFrame(rows_out)
    floor = table.loc[(table["texture"] == 0) & (table["head"] == 0), "type_agreement"].iloc[0] - TYPE_TOLERANCE
    ok = table[table["type_agreement"] >= floor]
    best = ok["pattern_agreement"].idxmax()
    table["chosen"] = table.index == best
    chosen = dataclasses.replace(cfg, photo_weight=float(table.at[best, "photo"]),
                                 texture_weight=float(table.at[best, "texture"]),
                                 head_weight=float(table.at[best, "head"]))
    return chosen, table


def fit_texture_model(photo: np.ndarray, descriptors: np.ndarray, labels: np.ndarray | None, groups: np.ndarray,
                      types: np.ndarray | None, cfg: TextureConfig = TextureConfig()) -> dict[str, np.ndarray]:
    """The texture kind of a catalogue as cacheable arrays (see ``TextureModel.from_state``): weights chosen
    by ``select_weights`` when there are pattern and type labels (else ``cfg``'s), then the model refitted
    on every product with its photo and label."""
    table = pd.DataFrame({c: pd.Series(dtype=float) for c in ("photo", "texture", "head", "pattern_agreement",
                                                               "type_agreement")} | {"chosen": pd.Series(dtype=bool)})
    labelled = labels is not None and types is not None and len(frequent_classes(np.asarray(labels), cfg.min_class)) >= 2
    if labelled:
        cfg, table = select_weights(photo, descriptors, labels, groups, types, cfg)
    else:
        cfg = dataclasses.replace(cfg, head_weight=0.0)
    model = TextureModel(cfg).fit(photo, descriptors, np.asarray(labels).astype(str) if labelled else None)
    state = {f"model.{k}": v for k, v in model.state_arrays().items()}
    state["weights"] = np.array([cfg.photo_weight, cfg.texture_weight, cfg.head_weight], dtype=np.float64)
    for column in table.columns:
        state[f"selection.{column}"] = table[column].to_numpy()
    return state


HYBRID_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def hybrid_weights(photo: np.ndarray, sentence: np.ndarray, attributes: dict[str, np.ndarray], groups: np.ndarray,
                   grid=HYBRID_GRID, k: int = 10) -> pd.DataFrame:
    """Agreement@k of each attribute (e.g. pattern, product_type, colour) for the hybrid embedding
    fuse(photo, sentence, w) at each photo weight w of ``grid``, on the given (validation) products, plus
    their mean: one row per w. The product sentence names these attributes, so a low w wins on them by
    construction; the table shows how much each costs."""
    rows = []
    for w in grid:
        found, _ = neighbours(fuse(photo, sentence, w), groups, k)
        row = {"photo_weight": w, **{f"{name}_agreement": label_agreement(found, values, k)["micro"]
                                     for name, values in attributes.items()}}
        row["mean_agreement"] = float(np.mean([row[f"{name}_agreement"] for name in attributes]))
        rows.append(row)
    return pd.DataFrame(rows)
