"""One product, everything we know of it: attributes, neighbours in each embedding space, purchases, its cluster,
and whether its photo neighbours mistake its pattern (a texture confusion)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.cache import ArtefactCache
from core.data.catalog import Catalog
from core.embeddings.pipeline import Built
from core.explore.cluster import NOISE
from core.explore.clustermap import ClusterMap, MapConfig, cluster_map

TILE_ATTRS = ("product_type", "colour", "pattern")  # what a neighbour tile names besides the title
# What each space's vectors are made of. Every index holds L2-normalised rows, so a score is a cosine similarity
# (1 = the same vector); each space has its own typical range, so scores are not comparable across spaces.
EMBEDDING_OF = {"image": "photo", "text": "product-sentence", "hybrid": "fused photo + sentence",
                "texture": "texture-aware photo (photo + texture features + pattern)"}
NO_LABEL = frozenset({"", "unknown", "nan", "none"})  # pattern values that say nothing


@dataclass(frozen=True)
class ProductConfig:
    k: int = 10  # neighbours per space, and the photo neighbours a texture confusion is judged on
    recent_weeks: int = 4  # "lately": the last weeks of the purchase data (not of the calendar)
    label: str = "pattern"  # the label a texture confusion is about


# ---------------------------------------------------------------- purchases

@dataclass
class PurchaseCounts:
    """Purchase rows per product, over all the data and over its last ``weeks`` weeks."""
    counts: pd.DataFrame  # index product_id: all_time, recent (int64); products bought at least once
    weeks: int
    since: pd.Timestamp | None  # start of the recent window: the last purchase's day minus ``weeks`` weeks
    until: pd.Timestamp | None  # the last purchase in the data; None without purchases

    def of(self, product_id: str) -> tuple[int, int]:
        """(all time, recent) purchases of one product; zeros for one never bought."""
        if product_id not in self.counts.index:
            return 0, 0
        row = self.counts.loc[product_id]
        return int(row["all_time"]), int(row["recent"])

    def rank(self, product_id: str) -> int | None:
        """1 + the number of products bought more times (all time): 1 for the bestseller, ties share a rank;
        None for a product never bought."""
        sold = self.of(product_id)[0]
        return 1 + int((self.counts["all_time"] > sold).sum()) if sold else None


def purchase_counts(purchases: pd.DataFrame, weeks: int = 4) -> PurchaseCounts:
    """:class:`PurchaseCounts` of a catalogue's ``purchases`` (product_id, timestamp)."""
    ids = purchases["product_id"].astype(str)
    if ids.empty:
        empty = pd.DataFrame({"all_time": pd.Series(dtype=np.int64), "recent": pd.Series(dtype=np.int64)})
        return PurchaseCounts(empty.rename_axis("product_id"), weeks, None, None)
    all_time = ids.value_counts()
    stamps = purchases["timestamp"]
    if stamps.isna().all():  # a shop export without dates: counts over all time only, no "last weeks"
        recent = pd.Series(0, index=all_time.index)
        counts = pd.DataFrame({"all_time": all_time.astype(np.int64), "recent": recent.astype(np.int64)})
        return PurchaseCounts(counts.rename_axis("product_id"), weeks, None, None)
    until = pd.Timestamp(stamps.max())
    since = until.normalize() - pd.Timedelta(weeks=weeks) + pd.Timedelta(days=1)  # 4 weeks = 28 days, last one included
    recent = ids[stamps >= since].value_counts().reindex(all_time.index, fill_value=0)
    counts = pd.DataFrame({"all_time": all_time.astype(np.int64), "recent": recent.astype(np.int64)})
    return PurchaseCounts(counts.rename_axis("product_id"), weeks, since, until)


# ---------------------------------------------------------------- neighbours and their scores

def neighbour_frame(built: Built, product_id: str, kind: str, k: int = 10) -> pd.DataFrame:
    """The k products nearest to ``product_id`` in ``kind`` (the build's neighbour table), best first: columns
    product_id, score, title and :data:`TILE_ATTRS` the catalogue has. Empty for a product with no place in
    that space (no readable photo in a photo space)."""
    return with_names(built.catalog, built.neighbours(product_id, kind, k))


def with_names(catalog: Catalog, found: pd.DataFrame) -> pd.DataFrame:
    """``found`` (product_id, score) with each product's title and :data:`TILE_ATTRS` added ("" where unknown)."""
    products = catalog.products
    columns = ["title", *[c for c in TILE_ATTRS if c in products]]
    named = products.reindex(found["product_id"].astype(str))[columns].fillna("").astype(str)
    return pd.concat([found.reset_index(drop=True), named.reset_index(drop=True)], axis=1)


def distinct_titles(products: pd.DataFrame, product_ids) -> dict[str, str]:
    """Each of ``product_ids``'s title (``products`` indexed by id, with a title column), told apart from the others
    among them that share it: with the first of :data:`TILE_ATTRS` whose value none of those others has, else its
    id. "Petar Sweater" twice becomes "Petar Sweater, Yellow" and "Petar Sweater, Dark Green"."""
    ids = list(dict.fromkeys(str(p) for p in product_ids))
    titles = {p: str(products.at[p, "title"]) for p in ids}
    names = {}
    for p in ids:
        twins = [q for q in ids if q != p and titles[q] == titles[p]]
        if not twins:
            names[p] = titles[p]
            continue
        value = lambda q, c: str(products.at[q, c]) if c in products.columns else ""  # noqa: E731
        telling = [value(p, c) for c in TILE_ATTRS if value(p, c) and all(value(q, c) != value(p, c) for q in twins)]
        names[p] = f"{titles[p]}, {telling[0] if telling else p}"
    return names


def score_meaning(kind: str, query: str | None = None) -> str:
    """What a score is in ``kind``'s space: between two products, or (``query``: "your words'", "your photo'",
    ...) between a query and a product."""
    what = EMBEDDING_OF.get(kind, kind)
    if query is None:
        return f"cosine similarity of the two products' {what} embeddings"
    return f"cosine similarity of {query} embedding and the product's {what} embedding"


@dataclass(frozen=True)
class ScoreRange:
    """What a neighbour's score usually is in one space: medians over the catalogue's products."""
    first: float  # median score of a product's nearest neighbour
    kth: float  # median score of its k-th nearest
    k: int


def typical_scores(built: Built, k: int = 10) -> dict[str, ScoreRange]:
    """:class:`ScoreRange` of every kind of the build, from its neighbour tables (no search)."""
    out = {}
    for kind in built.kinds:
        rows, scores = built.tables[kind]["rows"], built.tables[kind]["scores"]
        column = min(k, scores.shape[1]) - 1
        first, kth = scores[rows[:, 0] >= 0, 0], scores[rows[:, column] >= 0, column]
        out[kind] = ScoreRange(float(np.median(first)) if len(first) else float("nan"),
                               float(np.median(kth)) if len(kth) else float("nan"), column + 1)
    return out


# ---------------------------------------------------------------- texture confusion

@dataclass(frozen=True)
class LabelShare:
    """How a product's nearest neighbours in one space carry its label (colour variants and unlabelled
    products left out)."""
    same: int  # neighbours with the product's label
    total: int  # neighbours judged
    commonest_other: str  # the commonest other label among them ("" when none)
    commonest_other_n: int

    @property
    def share(self) -> float:
        return self.same / self.total if self.total else float("nan")


@dataclass(frozen=True)
class TextureCheck:
    """Whether a product is a texture confusion: its photo neighbours mostly of another pattern (a striped top
    among plain ones), and whether the texture-aware space fixes it."""
    label: str  # the label column, e.g. "pattern"
    value: str  # the product's own label
    photo: LabelShare
    texture: LabelShare | None  # None when the build has no texture kind

    @property
    def confused(self) -> bool:
        """Fewer than half of its photo neighbours share its label."""
        return self.photo.total > 0 and self.photo.same * 2 < self.photo.total

    @property
    def fixed(self) -> bool:
        """Confused in the photo space, and at least half of its texture-aware neighbours share its label."""
        return self.confused and self.texture is not None and self.texture.total > 0 \
            and self.texture.same * 2 >= self.texture.total

    def summary(self) -> str:
        """One line for people: the verdict, with the counts behind it."""
        p, label = self.photo, self.label
        photo = f"{p.same} of its {p.total} nearest photos share its {label} ({self.value})"
        if p.total == 0:
            return f"Not judged: none of its photo neighbours has a {label} label."
        if not self.confused:
            verdict = f"No texture confusion: {photo}."
        else:
            verdict = (f"Texture confusion: only {photo}; {p.commonest_other_n} are {p.commonest_other}, the "
                       f"commonest other.")
        t = self.texture
        if t is None or t.total == 0:
            return verdict
        there = f"{t.same} of its {t.total} nearest there share it"
        if self.fixed:
            return f"{verdict} Fixed by the texture-aware space: {there}."
        if self.confused:
            helps = "helps but does not fix it" if t.same > p.same else "does not fix it"
            return f"{verdict} The texture-aware space {helps}: {there}."
        return f"{verdict} Texture-aware space: {there}."


def label_share(built: Built, product_id: str, kind: str, label: str, k: int) -> LabelShare:
    """:class:`LabelShare` of the product's k nearest neighbours in ``kind`` that have a label and are not its
    colour variants, read from the build's neighbour table (its whole width, so k of them are found)."""
    products = built.catalog.products
    own = str(products.at[product_id, label])
    group = products.at[product_id, "group_id"] if "group_id" in products else None
    found = built.neighbours(product_id, kind, max(k, built.cfg.table_k))["product_id"].astype(str)
    near = products.reindex(found)
    keep = ~near[label].fillna("").astype(str).str.strip().str.lower().isin(NO_LABEL)
    if group is not None and str(group):
        keep &= near["group_id"].astype(str) != str(group)
    labels = near.loc[keep, label].astype(str).head(k)
    same = int((labels == own).sum())
    others = labels[labels != own].value_counts()
    return LabelShare(same, len(labels), str(others.index[0]) if len(others) else "",
                      int(others.iloc[0]) if len(others) else 0)


def texture_check(built: Built, product_id: str, label: str = "pattern", k: int = 10) -> TextureCheck | None:
    """The product's :class:`TextureCheck`; None when the catalogue has no ``label`` column, the product has no
    label (or "Unknown"), or no place in the photo space (no readable photo)."""
    products = built.catalog.products
    if label not in products or "image" not in built.kinds or product_id not in built.indexes["image"].row:
        return None
    value = str(products.at[product_id, label])
    if value.strip().lower() in NO_LABEL:
        return None
    texture = label_share(built, product_id, "texture", label, k) if "texture" in built.kinds else None
    return TextureCheck(label, value, label_share(built, product_id, "image", label, k), texture)


# ---------------------------------------------------------------- cluster

class NotStored(LookupError):
    """An artefact a read-only lookup needed is not in the cache."""


class StoredOnly:
    """An artefact cache that only reads: where the real one would compute, it raises :class:`NotStored`."""

    def __init__(self, cache: ArtefactCache):
        self.cache = cache

    def get_or_compute(self, kind: str, cfg: dict, fingerprint: str, compute) -> dict[str, np.ndarray]:
        hit = self.cache.load(kind, self.cache.key(cfg, fingerprint))
        if hit is None:
            raise NotStored(kind)
        return hit

    def __getattr__(self, name: str):
        return getattr(self.cache, name)


def stored_cluster_map(built: Built, cache: ArtefactCache, cfg: MapConfig = MapConfig()) -> ClusterMap | None:
    """The cluster map of ``cfg`` if every step of it is in the cache, else None: never computes a map (reading
    one costs fingerprinting the kind's vectors, about a second on 25,000 products)."""
    try:
        return cluster_map(built, StoredOnly(cache), cfg)
    except NotStored:
        return None


@dataclass(frozen=True)
class ClusterPlace:
    """Where a product sits on a cluster map."""
    kind: str
    cluster: int  # NOISE (-1) when HDBSCAN left it in no cluster
    name: str  # the cluster's name ("noise" for noise)
    size: int  # products in the cluster (0 for noise)
    likeliest: int  # for noise, its likeliest cluster (soft membership); NOISE otherwise or when there is none
    likeliest_name: str


def cluster_place(cmap: ClusterMap, product_id: str) -> ClusterPlace | None:
    """The product's :class:`ClusterPlace` on ``cmap``; None when it is not on the map."""
    rows = np.flatnonzero(cmap.ids == product_id)
    if not len(rows):
        return None
    row = int(rows[0])
    cluster, soft = int(cmap.clustering.labels[row]), int(cmap.clustering.soft_labels[row])
    names = cmap.clusters["name"]
    name = str(names.get(cluster, "noise")) if cluster != NOISE else "noise"
    size = int(cmap.clusters.at[cluster, "size"]) if cluster in cmap.clusters.index else 0
    likeliest = soft if cluster == NOISE and soft != NOISE else NOISE
    return ClusterPlace(cmap.kind, cluster, name, size, likeliest,
                        str(names.get(likeliest, "")) if likeliest != NOISE else "")


# ---------------------------------------------------------------- everything together

@dataclass
class ProductFacts:
    """One product, everything we know of it."""
    product_id: str
    title: str
    description: str
    image_path: str  # "" when it has no photo
    attributes: dict[str, str]  # every attribute column, its value ("" where unknown), catalogue order
    bought: tuple[int, int]  # purchases (all time, in the last ``weeks`` weeks of the data)
    weeks: int
    rank: int | None  # sales rank over all time (1: the bestseller), None when never bought
    neighbours: dict[str, pd.DataFrame] = field(default_factory=dict)  # kind -> :func:`neighbour_frame`; {} unbuilt
    cluster: ClusterPlace | None = None
    map_computed: bool = False  # whether the cluster map was there to look in
    texture: TextureCheck | None = None


def product_facts(catalog: Catalog, product_id: str, counts: PurchaseCounts, built: Built | None = None,
                  cmap: ClusterMap | None = None, cfg: ProductConfig = ProductConfig()) -> ProductFacts:
    """:class:`ProductFacts` of ``product_id``; KeyError for an unknown one. ``counts``: the catalogue's
    :func:`purchase_counts`; ``built``: the build (None while it is computing: no neighbours, no texture check);
    ``cmap``: a cluster map already computed (:func:`stored_cluster_map`), None when there is none."""
    if product_id not in catalog.products.index:
        raise KeyError(f"unknown product id '{product_id}'")
    row = catalog.products.loc[product_id]
    attributes = {c: "" if pd.isna(row[c]) else str(row[c]) for c in ("group_id", *catalog.attribute_columns)}
    facts = ProductFacts(product_id, str(row["title"]), str(row["description"] or ""), str(row["image_path"] or ""),
                         attributes, counts.of(product_id), counts.weeks, counts.rank(product_id))
    if built is not None:
        facts.neighbours = {kind: neighbour_frame(built, product_id, kind, cfg.k) for kind in built.kinds}
        facts.texture = texture_check(built, product_id, cfg.label, cfg.k)
    if cmap is not None:
        facts.map_computed = True
        facts.cluster = cluster_place(cmap, product_id)
    return facts
