"""The texture report: every embedding kind of a build diagnosed on held-out products (split by group), cached."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.cache import json_arrays, json_value
from core.embeddings.backbone import l2_normalise
from core.embeddings.groupsplit import SPLITS, held_out_split, some_groups
from core.embeddings.quality import MIN_CLASS, frequent_classes
from core.embeddings.texture import TYPE_TOLERANCE, TextureConfig, TextureModel, described, hybrid_weights, \
    select_weights, weighted_blocks
from core.explore.diagnostics import cluster_purity, diagnose, diagnostics_table, label_overlap

# 2: heads and parts from the held-out fit the backbone evaluation shares (held_out_heads); 3: cluster purity from UMAP
# on exact neighbours; 4: that UMAP at 200 layout epochs (PURITY_EPOCHS)
REPORT_VERSION = 4
# Validation and test products the report measures at most, whole groups drawn at random past it: each embedding
# kind's diagnostics search exact neighbours among all of them, which grows as their number squared. The H&M sample
# has about 4,900 of each.
REPORT_PRODUCTS = 10_000

# UMAP's layout epochs for cluster purity. Its default for up to 10,000 rows (a report's test products) is
# 500; 200, its default past that, gave purities within the spread of UMAP's seeds at 500 (H&M sample, 4 kinds x 3
# attributes, seeds 0-2: e.g. hybrid pattern 0.661 / 0.615 / 0.674 at 500, 0.655 / 0.651 / 0.622 at 200) and the
# report 63 -> 43 s.
PURITY_EPOCHS = 200

# The kinds the report measures: the build's photo, sentence, hybrid and texture kinds (as a model that
# never saw the test products gives them), then the texture variants tried. Shown in this order.
KIND_ABOUT = {
    "photo": "the backbone's photo embedding (the build's *image* kind)",
    "texture": "the texture-aware photo embedding (the build's *texture* kind): photo + texture descriptor of "
               "the image tower's mid-level feature maps + pattern head, weights chosen on validation",
    "hybrid": "photo + product sentence, fused",
    "sentence": "the product sentence, which names the label: a reference, not a fix",
    "texture descriptor only": "the texture descriptor alone",
    "photo + texture descriptor": "half photo, half texture descriptor",
    "photo + pattern head": "half photo, half pattern head",
}
ORDER = ("photo", "texture", "hybrid", "sentence")  # then the variants tried, in the report's order
FROM_TEXT = frozenset({"hybrid", "sentence"})  # they read the label from the product text: references, not fixes


def measures(k: int, label: str) -> list[tuple[str, str, str | None, str]]:
    """The report table's measures, as shown to people: (report column, title, "max"/"min" for the best value or
    None, one line on what it measures)."""
    return [
        (f"pattern_agreement_at_{k}", f"{label} agreement@{k}", "max",
         f"share of a product's {k} nearest held-out neighbours (its colour variants left out) with its {label}"),
        ("pattern_agreement_chance", "chance", None, "the same for a random embedding (sum of squared label shares)"),
        ("pattern_agreement_lift", "lift", "max", "agreement / chance"),
        ("pattern_sensitivity", "sensitivity", "max",
         "when the nearest neighbour has the same type and colour: 1 − (share with another label) / (that share "
         "for a random such neighbour); 1 tells labels apart, 0 is blind to them"),
        (f"type_agreement_at_{k}", f"type agreement@{k}", "max",
         "agreement on product type: what a texture fix must not lose"),
        ("texture_confusion_rate", "texture confusions", "min",
         f"share of products whose nearest neighbour has the same type and colour but another {label}"),
        (f"pattern_agreement_macro_at_{k}", f"macro agreement@{k}", "max",
         f"agreement averaged over the classes with at least {MIN_CLASS} products, so rare ones count as much"),
        ("pair_auc", "pair AUC", "max",
         "pairs of the same type and colour: how often cosine ranks a same-label pair above a different-label "
         "pair (0.5: blind)"),
        ("probe_balanced_accuracy", "linear probe", "max",
         "balanced accuracy of a logistic regression reading the label (cross-validated by group; chance "
         "1 / classes)"),
        ("zero_shot_balanced_accuracy", "zero-shot", "max",
         "balanced accuracy of the closest text prompt, e.g. 'a photo of a striped garment' (pattern only; None "
         "for the variants, which have no text tower)"),
        ("zero_shot_corrected_balanced_accuracy", "zero-shot corrected", "max",
         "the same after removing each prompt's mean similarity, so one prompt close to everything stops winning"),
        ("n_products", "products", None, "held-out (test) products measured"),
    ]


def _frame_json(frame: pd.DataFrame) -> dict:
    return json.loads(frame.to_json(orient="split"))


def _json_frame(data: dict) -> pd.DataFrame:
    """A frame back from JSON: missing numbers (JSON null) are NaN again, numeric columns numeric."""
    frame = pd.DataFrame(data["data"], index=data["index"], columns=data["columns"])
    for column in frame.columns:
        if frame[column].dtype == object and frame[column].map(lambda v: v is None or isinstance(v, (int, float))).all():
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def in_order(kinds) -> list[str]:
    """``kinds`` with the build's kinds first (:data:`ORDER`), the others after in their own order."""
    kinds = list(kinds)
    return [k for k in ORDER if k in kinds] + [k for k in kinds if k not in ORDER]


@dataclass
class KindDetails:
    """One kind's detail on the test products."""
    per_class: dict[str, float]  # label agreement@k per label
    confusion: pd.DataFrame  # product's label (rows) x its k neighbours' labels (columns), shares
    null: pd.DataFrame  # the same for an embedding that sees only product type and colour
    probe_confusion: pd.DataFrame  # true x predicted label of the linear probe, shares
    confusions: pd.DataFrame  # texture confusions, most similar first (at most 500): product_id, neighbour_id, ...

    def to_json(self) -> dict:
        return {"per_class": self.per_class, **{name: _frame_json(getattr(self, name))
                                                for name in ("confusion", "null", "probe_confusion", "confusions")}}

    @classmethod
    def from_json(cls, data: dict) -> "KindDetails":
        return cls(data["per_class"], *(_json_frame(data[name])
                                        for name in ("confusion", "null", "probe_confusion", "confusions")))


@dataclass
class TextureReport:
    """Every diagnostic of every embedding kind of a build, measured on held-out products (see
    :func:`texture_report`). Stored as one JSON value (array "report" of a "texture-report" artefact)."""
    label: str  # the catalogue column measured against, e.g. "pattern"
    k: int  # neighbours per product
    kinds: list[str]  # in the report's order
    weights: dict[str, float]  # the texture kind's chosen weights: photo, texture, head
    # labelled products with a photo in each part: train, validation, test; and how many of the last two were
    # measured ("validation_measured", "test_measured": at most REPORT_PRODUCTS; absent from reports stored before)
    split: dict[str, int]
    table: pd.DataFrame  # one row per kind ("kind" column), the scalar diagnostics of ``diagnose`` as columns
    selection: pd.DataFrame  # the texture weights tried on validation, the chosen row marked
    hybrid: pd.DataFrame  # the hybrid kind's photo weights tried on validation
    purity: pd.DataFrame  # one row per clustered kind ("kind" column), cluster purity per attribute
    label_overlap: dict[str, pd.DataFrame]  # the catalogue's own label confusions (``label_overlap``)
    details: dict[str, KindDetails]  # per kind

    def to_json(self) -> dict:
        return {"label": self.label, "k": self.k, "kinds": self.kinds, "weights": self.weights, "split": self.split,
                **{name: _frame_json(getattr(self, name)) for name in ("table", "selection", "hybrid", "purity")},
                "label_overlap": {name: _frame_json(f) for name, f in self.label_overlap.items()},
                "details": {kind: d.to_json() for kind, d in self.details.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "TextureReport":
        return cls(data["label"], data["k"], data["kinds"], data["weights"], data["split"],
                   *(_json_frame(data[name]) for name in ("table", "selection", "hybrid", "purity")),
                   {name: _json_frame(f) for name, f in data["label_overlap"].items()},
                   {kind: KindDetails.from_json(d) for kind, d in data["details"].items()})

    def to_arrays(self) -> dict[str, np.ndarray]:
        return json_arrays(self.to_json(), "report")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "TextureReport":
        return cls.from_json(json_value(arrays, "report"))


def best_photo_kind(table: pd.DataFrame, k: int = 10, tolerance: float = TYPE_TOLERANCE) -> str | None:
    """The photo-side kind (not reading the product text, which names the label outright) with the best label
    agreement@k among those whose type agreement@k is within ``tolerance`` of the plain photo's.

    table: :attr:`TextureReport.table` (a "kind" column). None without a photo row or a score."""
    table = table.set_index("kind")
    agreement, types = f"pattern_agreement_at_{k}", f"type_agreement_at_{k}"
    if "photo" not in table.index:
        return None
    photo_side = table.loc[[kind for kind in table.index if kind not in FROM_TEXT]]
    ok = photo_side.loc[photo_side[types] >= table.at["photo", types] - tolerance, agreement].dropna()
    return str(ok.idxmax()) if len(ok) else None


@dataclass(frozen=True)
class Verdict:
    """The texture kind against the plain photo on the test products, and the best photo-side kind."""
    agreement: tuple[float, float]  # label agreement@k: (texture, photo)
    sensitivity: tuple[float, float]  # pattern sensitivity: (texture, photo)
    type_agreement: tuple[float, float]  # type agreement@k: (texture, photo)
    best_kind: str | None  # :func:`best_photo_kind`
    best_agreement: float  # its label agreement@k

    @property
    def gain_points(self) -> float:
        """Label agreement the texture kind gains over the photo, in points (of 100)."""
        return 100 * (self.agreement[0] - self.agreement[1])

    @property
    def cost_points(self) -> float:
        """Type agreement it gains (negative: loses) against the photo, in points."""
        return 100 * (self.type_agreement[0] - self.type_agreement[1])

    @property
    def keeps_type(self) -> bool:
        """Whether it loses at most :data:`TYPE_TOLERANCE` of type agreement."""
        return self.cost_points >= -100 * TYPE_TOLERANCE


def verdict(report: TextureReport) -> Verdict | None:
    """The texture kind judged against the photo; None unless the report has both."""
    table = report.table.set_index("kind").apply(pd.to_numeric, errors="coerce")
    if "photo" not in table.index or "texture" not in table.index:
        return None
    k = report.k
    pair = {column: (float(table.at["texture", column]), float(table.at["photo", column]))
            for column in (f"pattern_agreement_at_{k}", "pattern_sensitivity", f"type_agreement_at_{k}")}
    best = best_photo_kind(report.table, k)
    return Verdict(pair[f"pattern_agreement_at_{k}"], pair["pattern_sensitivity"], pair[f"type_agreement_at_{k}"],
                   best, float("nan") if best is None else float(table.at[best, f"pattern_agreement_at_{k}"]))


def honest_embeddings(built, cache, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """Photo and sentence embeddings (n, d) of every product as a model that learned only from the "train"
    part of :func:`core.embeddings.quality.held_out_split` would give them, and that part per product. offline-lit
    trains its heads on the catalogue, pattern captions included, so for held-out numbers its heads are the
    held-out fit every held-out measurement shares (:func:`core.embeddings.quality.held_out_heads`, cached: the
    backbone evaluation's); an open_clip backbone learned nothing here and is used as built.
    Returns photo (zero rows without a photo), sentence, the (n,) parts, and the held-out heads (None for
    open_clip), which also place the zero-shot prompts."""
    from core.embeddings.lit.backbone import LitBackbone
    from core.embeddings.lit.heads import LitConfig
    from core.embeddings.quality import held_out_heads
    emb = built.embeddings
    if not isinstance(built.backbone, LitBackbone):
        return emb.image, emb.text, held_out_split(built.catalog.products["group_id"].to_numpy(str), seed=seed), None
    import torch
    model = built.backbone.model
    cfg = built.backbone.cfg if isinstance(built.backbone.cfg, LitConfig) else LitConfig()
    # as the build's heads were trained (captions included), through the towers the backbone holds
    held = held_out_heads(built.catalog, cache, cfg, seed, runners=model.runners,
                          text=model.text_tower if model.cache is cache else None)
    with torch.inference_mode():
        photo = held.heads.embed_image(torch.from_numpy(held.features.image)).numpy()
        sentence = held.heads.embed_text(torch.from_numpy(held.features.text)).numpy()
    photo[~held.features.has_image] = 0
    return photo, sentence, held.part, held.heads


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
    from core.embeddings.index import VectorIndex, neighbour_table
    from core.explore.cluster import hdbscan_clusters
    from core.explore.projection import ProjectConfig, knn_from_table, umap_project
    cfg = ProjectConfig(seed=seed)
    # UMAP gets the exact cosine neighbours (FAISS, a fraction of a second for a report's test products) as the
    # cluster map does: its own approximate search compiles for ~24 s on first use in a process and then takes
    # ~5 s a kind, and gave the same clusters (adjusted Rand 1.0 on 4,945 clustered vectors).
    unit = l2_normalise(vectors)
    table = neighbour_table(VectorIndex(unit, np.arange(len(unit)).astype(str)), unit, k=cfg.n_neighbors)
    knn = knn_from_table(table["rows"], table["scores"], cfg.n_neighbors)
    points = umap_project(vectors, cfg.cluster_dims, 0.0, cfg, knn=knn, n_epochs=PURITY_EPOCHS)
    labels = hdbscan_clusters(points, soft=False).labels  # purity reads the labels only
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
           "products": REPORT_PRODUCTS,
           "build": dataclasses.asdict(built.cfg),
           "embeddings": built.backbone.cache_config()}  # nested: its own "version" must not replace ours
    emb = built.embeddings
    fingerprint = digest(emb.image, emb.text, emb.texture, products[label].to_numpy(str),
                         products["product_type"].to_numpy(str), products["colour"].to_numpy(str))
    return cfg, fingerprint


def texture_report(built, cache, label: str = "pattern", k: int = 10, seed: int = 0, clusters: bool = True,
                   progress=None) -> TextureReport:
    """Every diagnostic of every embedding kind of ``built``, on held-out products (split by group):
    models learn on "train", weights are chosen on "validation", numbers are read on "test". Cached
    (a fresh report is read back from its artefact, so it equals a cached one to the last digit).
    ValueError when the catalogue lacks ``label``, product_type or colour.
    """
    cfg, fingerprint = _report_key(built, label, k, seed, clusters)
    arrays = cache.get_or_compute("texture-report", cfg, fingerprint,
                                  lambda: _report(built, cache, label, k, seed, clusters, progress).to_arrays())
    return TextureReport.from_arrays(arrays)


def cached_texture_report(built, cache, label: str = "pattern", k: int = 10, seed: int = 0,
                          clusters: bool = True) -> TextureReport | None:
    """The report :func:`texture_report` stored for this build and label, or None; computes nothing but the
    data's fingerprint."""
    cfg, fingerprint = _report_key(built, label, k, seed, clusters)
    arrays = cache.load("texture-report", cache.key(cfg, fingerprint))
    return None if arrays is None else TextureReport.from_arrays(arrays)


def _report(built, cache, label: str, k: int, seed: int, clusters: bool, progress) -> TextureReport:
    from core.embeddings.backbone import fuse
    from core.embeddings.lit.features import catalog_texture_features
    step = (lambda name, i, n: progress(name, i, n)) if progress else (lambda *a: None)
    products = built.catalog.products
    labels = products[label].to_numpy(str)
    types, colours = products["product_type"].to_numpy(str), products["colour"].to_numpy(str)
    groups = products["group_id"].to_numpy(str)
    descriptors, _ = catalog_texture_features(built.catalog, cache, views=(built.cfg.texture or TextureConfig()).views)
    has = built.embeddings.has_image & (labels != "") & described(descriptors)
    step("held-out photo and sentence heads", 0, 1)
    photo, sentence, parts, heads = honest_embeddings(built, cache, seed)
    part = np.where(has, parts, "").astype(object)  # the labelled products with a photo and a descriptor
    step("texture model", 0, 1)
    chosen, selection = select_weights(photo, descriptors, np.where(has, labels, ""), groups, types,  # no copies
                                       dataclasses.replace(built.cfg.texture or TextureConfig(), seed=seed), k=k)
    # one fit with a head, whatever the weights: the variants tried are read from its blocks
    fitted = TextureModel(dataclasses.replace(chosen, head_weight=1.0)).fit(photo, descriptors, labels,
                                                                          rows=part == "train")
    model = TextureModel.from_arrays(fitted.state_arrays(), chosen)  # the chosen weights (its head may weigh 0)
    val = some_groups(groups, part == "validation", REPORT_PRODUCTS, seed)
    step("hybrid weight", 0, 1)
    hybrid = hybrid_weights(photo[val], sentence[val], {label: labels[val], "product_type": types[val],
                                                        "colour": colours[val]}, groups[val], k=k)
    test = some_groups(groups, part == "test", REPORT_PRODUCTS, seed)
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
        details[kind] = KindDetails(result["pattern_agreement_per_class"], result["pattern_confusion"],
                                    result["null_confusion"], result["probe_confusion"],
                                    confusions.drop(columns=["row", "neighbour"]))
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
    return TextureReport(
        label, k, list(kinds),
        weights={"photo": chosen.photo_weight, "texture": chosen.texture_weight, "head": chosen.head_weight},
        split={p: int(counts.get(p, 0)) for p in SPLITS} | {"validation_measured": int(val.sum()),
                                                            "test_measured": int(test.sum())},
        table=table.reset_index(), selection=selection, hybrid=hybrid,
        purity=pd.DataFrame(purity).T.rename_axis("kind").reset_index(),
        label_overlap={name: f.reset_index() if name == "mentions" else f
                       for name, f in overlap.items() if isinstance(f, pd.DataFrame)},
        details=details)


def same_label_counts(rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many of each row's neighbours share its label. rows (n, k) int neighbour rows (-1: none), labels (n,)
    strings aligned with them; returns (n,) int."""
    found = rows >= 0
    theirs = labels[np.where(found, rows, 0)]
    return (found & (theirs == labels[:, None])).sum(axis=1)


def before_after_gains(built, label: str, k: int = 8) -> pd.DataFrame:
    """What the texture-aware embedding changes for each product, as the Before / after section shows it: of its
    ``k`` nearest neighbours in the whole catalogue (colour variants included), how many share its ``label``
    in the photo embedding (``before``, the image kind) and in the texture-aware one (``after``).

    One row per product with a photo and a label: product_id, label, before, after, gain (after − before;
    negative: it got worse), the largest gain first (then the most same-label neighbours after). Read from the
    build's neighbour tables (``k`` at most their width), so it equals ``built.neighbours`` product by product."""
    products = built.catalog.products
    counts = {}
    for when, kind in (("before", "image"), ("after", "texture")):
        ids, rows = built.indexes[kind].ids, built.tables[kind]["rows"]
        if k > rows.shape[1]:
            raise ValueError(f"k={k} is more than the {rows.shape[1]} neighbours the build tabulated")
        counts[when] = pd.Series(same_label_counts(rows[:, :k], products[label].reindex(ids).fillna("")
                                                   .astype(str).to_numpy()), index=ids)
    frame = pd.DataFrame(counts).dropna().astype(int)
    frame.insert(0, "label", products[label].reindex(frame.index).fillna("").astype(str))
    frame = frame[frame["label"] != ""]
    frame["gain"] = frame["after"] - frame["before"]
    return frame.rename_axis("product_id").reset_index().sort_values(["gain", "after"], ascending=False,
                                                                     kind="stable", ignore_index=True)
