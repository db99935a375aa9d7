"""The cluster map of a build: cached UMAP projections and HDBSCAN clusters, their names and scores,
and DBSCAN on the raw embeddings as the baseline."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.cache import ArtefactCache, RowStore, arrays_frame, digest, frame_arrays
from core.explore.cluster import (FIT_SAMPLE_LIMIT, NOISE, ClusterConfig, Clustering, centroids, ctfidf_keywords,
                                  dbscan_runs, eps_grid, hdbscan_clusters, label_agreement, metadata_names,
                                  prompt_names, prompt_texts)
from core.embeddings.backbone import encode_texts
from core.embeddings.index import table_index_config
from core.embeddings.pipeline import KINDS, Built
from core.progress import Progress
from core.explore.projection import TRANSFORM_CHUNK, ProjectConfig, knn_from_table, umap_project

HOVER_ATTRS = ("product_type", "colour", "pattern")


@dataclass(frozen=True)
class MapConfig:
    # Hybrid agrees best with the catalogue's own labels on H&M (ARI with product type 0.72, against
    # 0.46 for sentences and 0.22 for photos alone; README, "Cluster map"), so the map opens on it.
    kind: str = "hybrid"
    project: ProjectConfig = ProjectConfig()
    cluster: ClusterConfig = ClusterConfig()


@dataclass
class ClusterMap:
    """One embedding kind's map: 2-D coordinates, clusters and their names, rows aligned with ``ids``."""
    kind: str
    ids: np.ndarray  # (n,) str product ids
    xy: np.ndarray  # (n, 2) float32 UMAP coordinates
    clustering: Clustering
    clusters: pd.DataFrame  # index cluster id: size, name, prompt_name, keywords, top, distinctive
    scores: dict[str, float]  # n_clusters, noise_fraction, ari_/ari_clustered_/purity_<label>
    config: ClusterConfig  # as resolved for this catalogue (automatic sizes filled in)
    fingerprint: str  # digest of this kind's vectors, ids and attribute labels: keys artefacts derived from the map
    seconds: dict[str, float] = field(default_factory=dict)

    def labels(self, soft: bool = False) -> np.ndarray:
        """(n,) cluster ids; with ``soft`` noise points take their most likely cluster."""
        return self.clustering.soft_labels if soft else self.clustering.labels

    def members(self, cluster: int, soft: bool = False) -> list[str]:
        """Product ids in ``cluster``, strongest members first."""
        labels = self.labels(soft)
        rows = np.flatnonzero(labels == cluster)
        strength = np.where(self.clustering.labels[rows] == cluster, 1.0 + self.clustering.probabilities[rows],
                            self.clustering.soft_strength[rows])
        return self.ids[rows[np.argsort(-strength, kind="stable")]].tolist()

    def frame(self, products: pd.DataFrame, soft: bool = False) -> pd.DataFrame:
        """One row per product on the map: product_id, x, y, cluster, cluster_name, assigned ("cluster",
        "soft" for a noise point placed in its likeliest cluster, or "noise"), membership, title and the
        hover attributes."""
        labels = self.labels(soft)
        names = self.clusters["name"].to_dict()
        assigned = np.where(self.clustering.labels != NOISE, "cluster", np.where(labels != NOISE, "soft", "noise"))
        membership = np.where(assigned == "cluster", self.clustering.probabilities,
                              np.where(assigned == "soft", self.clustering.soft_strength, 0.0))
        frame = pd.DataFrame({"product_id": self.ids, "x": self.xy[:, 0], "y": self.xy[:, 1], "cluster": labels,
                              "cluster_name": [names.get(c, "noise") for c in labels.tolist()],
                              "assigned": assigned, "membership": membership.round(3)})
        attrs = products.reindex(self.ids)
        for column in ("title",) + HOVER_ATTRS:
            frame[column] = attrs[column].to_numpy() if column in attrs else ""
        return frame

    def export(self, products: pd.DataFrame, soft: bool = False) -> pd.DataFrame:
        """The CSV export: product_id, cluster_id (-1: noise), cluster_name, x, y, assigned, membership."""
        frame = self.frame(products, soft)
        return frame[["product_id", "cluster", "cluster_name", "x", "y", "assigned", "membership"]].rename(
            columns={"cluster": "cluster_id"})


def _vectors(built: Built, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind not in KINDS:
        raise ValueError(f"unknown embedding kind '{kind}'; one of {KINDS}")
    return built.embeddings.matrix(kind, built.cfg.hybrid_weight)


def _projection(built: Built, cache: ArtefactCache, kind: str, vectors: np.ndarray, fingerprint: str, dims: int,
                min_dist: float, cfg: ProjectConfig) -> np.ndarray:
    table = built.tables[kind]
    key = {"kind": kind, "dims": dims, "min_dist": min_dist, "n_neighbors": cfg.n_neighbors, "seed": cfg.seed,
           **built.backbone.cache_config()}
    table_on = table_index_config(len(vectors), built.cfg.index)
    if table_on.factory != "Flat":  # UMAP's neighbours come from an approximate table
        key["table"] = table_on.factory
    sampled = len(vectors) > cfg.sample_limit  # fitted on a sample, the rest placed (umap_project)
    if sampled:
        key["sample"] = [cfg.sample_limit, TRANSFORM_CHUNK]

    def compute():
        knn = None if sampled else knn_from_table(table["rows"], table["scores"], cfg.n_neighbors)
        return {"points": umap_project(vectors, dims, min_dist, cfg, knn)}
    return cache.get_or_compute("projection", key, fingerprint, compute)["points"]


def _clustering(cache: ArtefactCache, reduced: np.ndarray, cfg: ClusterConfig) -> Clustering:
    key = asdict(cfg)
    if len(reduced) > FIT_SAMPLE_LIMIT:  # fitted on a sample, the rest predicted (hdbscan_clusters)
        key["sample"] = FIT_SAMPLE_LIMIT
    arrays = cache.get_or_compute("clusters", key, digest(reduced),
                                  lambda: asdict(hdbscan_clusters(reduced, cfg)))
    return Clustering(**{k: arrays[k] for k in ("labels", "probabilities", "soft_labels", "soft_strength")})


def attributes_of(built: Built, ids: np.ndarray) -> pd.DataFrame:
    """The catalogue's attribute columns for ``ids``, as strings ("" where unknown)."""
    products = built.catalog.products
    return products.loc[ids, built.catalog.attribute_columns].fillna("").astype(str).reset_index(drop=True)


def prompt_vectors(built: Built, cache: ArtefactCache, attributes: pd.DataFrame
                   ) -> dict[str, tuple[list[str], np.ndarray]]:
    """Prompt embeddings for the catalogue's frequent colours, patterns and types, from the backbone's
    text tower (cached like product sentences, by text)."""
    texts = prompt_texts(attributes)
    flat = [p for _, prompts in texts.values() for p in prompts]
    if not flat:
        return {}
    store = RowStore(cache, "text", built.backbone.cache_config())
    vectors, _, _, _ = store.fill([digest(p) for p in flat], built.backbone.dim,
                                  lambda rows, _p: (encode_texts(built.backbone, [flat[i] for i in rows]), {}))
    out, start = {}, 0
    for attr, (values, prompts) in texts.items():
        out[attr] = (values, vectors[start:start + len(prompts)])
        start += len(prompts)
    return out


def _names(built: Built, cache: ArtefactCache, kind: str, vectors: np.ndarray, ids: np.ndarray,
           labels: np.ndarray, attributes: pd.DataFrame, fingerprint: str) -> pd.DataFrame:
    """``ClusterMap.clusters``, cached: metadata names, c-TF-IDF keywords and prompt names.
    ``fingerprint`` covers vectors, ids and attributes; labels and sentences are added here."""
    sentences = built.catalog.products.loc[ids, "sentence"].tolist()

    def compute() -> dict[str, np.ndarray]:
        clusters = metadata_names(labels, attributes)
        keywords = ctfidf_keywords(labels, sentences)
        clusters["keywords"] = [", ".join(keywords.get(c, [])) for c in clusters.index]
        _, centres = centroids(vectors, labels)
        prompts = {attr: (values, np.stack([built.in_space(kind, v) for v in vectors]))  # texture: photo block
                   for attr, (values, vectors) in prompt_vectors(built, cache, attributes).items()
                   if len(values)}  # a small catalogue may have no value common enough to prompt with
        clusters["prompt_name"] = prompt_names(centres, prompts)
        return frame_arrays(clusters.reset_index())

    # "names": the naming's own version; "version" would be the backbone's (its cache_config has one)
    key = {"kind": kind, **built.backbone.cache_config(), "names": 3}
    arrays = cache.get_or_compute("cluster-names", key, digest(fingerprint, labels, *sentences), compute)
    return arrays_frame(arrays).set_index("cluster")


def cluster_map(built: Built, cache: ArtefactCache, cfg: MapConfig = MapConfig(),
                progress: Progress | None = None) -> ClusterMap:
    """Project, cluster, name and score one embedding kind of ``built``; every step is cached."""
    seconds: dict[str, float] = {}
    stage = f"cluster map ({cfg.kind})"

    @contextmanager
    def timed(name: str):
        if progress:
            progress(stage, len(seconds), 4)
        t = time.perf_counter()
        yield
        seconds[name] = round(time.perf_counter() - t, 3)

    vectors, ids = _vectors(built, cfg.kind)
    attributes = attributes_of(built, ids)
    data = digest(vectors, ids)  # the projections depend on the vectors only
    with timed("umap_map"):
        xy = _projection(built, cache, cfg.kind, vectors, data, 2, cfg.project.map_min_dist, cfg.project)
    with timed("umap_cluster"):
        reduced = _projection(built, cache, cfg.kind, vectors, data, cfg.project.cluster_dims, 0.0, cfg.project)
    resolved = cfg.cluster.resolved(len(ids))
    with timed("hdbscan"):
        clustering = _clustering(cache, reduced, resolved)
    fingerprint = digest(data, attributes.to_numpy(str))
    with timed("names"):
        clusters = _names(built, cache, cfg.kind, vectors, ids, clustering.labels, attributes, fingerprint)
    if progress:
        progress(stage, 4, 4)
    scores = {"n_clusters": clustering.n_clusters, "noise_fraction": round(clustering.noise_fraction, 4),
              **label_agreement(clustering.labels, attributes)}
    return ClusterMap(cfg.kind, ids, xy, clustering, clusters, scores, resolved, fingerprint, seconds)


DBSCAN_VERSION = 2  # bump when the DBSCAN comparison changes meaning, so stored ones are recomputed


def _dbscan_key(built: Built, cmap: ClusterMap) -> tuple[dict, list[float]]:
    grid = eps_grid(built.tables[cmap.kind]["scores"], cmap.config.min_samples)
    key = {"kind": cmap.kind, "eps": grid, "min_samples": cmap.config.min_samples, "version": DBSCAN_VERSION,
           "embeddings": built.backbone.cache_config()}  # nested: its own "version" must not replace ours
    return key, grid


def dbscan_is_cached(built: Built, cache: ArtefactCache, cmap: ClusterMap) -> bool:
    key, _ = _dbscan_key(built, cmap)
    return cache.path("dbscan", cache.key(key, cmap.fingerprint)).is_file()


def dbscan_comparison(built: Built, cache: ArtefactCache, cmap: ClusterMap) -> pd.DataFrame:
    """HDBSCAN (on UMAP) against DBSCAN on the raw embeddings of the same kind, with the same
    min_samples, over a grid of eps from the k-distance heuristic. One row per run: method, eps,
    n_clusters, noise_fraction and agreement with each label (``label_agreement``). The DBSCAN labels
    are cached (all six runs 6.7 s on the 24,717 H&M products: one radius graph, see ``dbscan_runs``)."""
    min_samples = cmap.config.min_samples
    key, grid = _dbscan_key(built, cmap)

    def compute() -> dict[str, np.ndarray]:
        vectors, ids = _vectors(built, cmap.kind)
        attributes = attributes_of(built, ids)  # scores against labels are stored with the runs
        rows = []
        for eps, labels in zip(grid, dbscan_runs(vectors, grid, min_samples)):
            rows.append({"method": "DBSCAN (raw)", "eps": eps, "min_cluster_size": np.nan,
                         "min_samples": min_samples, "n_clusters": int(labels.max() + 1),
                         "noise_fraction": round(float(np.mean(labels == NOISE)), 4),
                         **label_agreement(labels, attributes)})
        return frame_arrays(pd.DataFrame(rows))

    dbscan = arrays_frame(cache.get_or_compute("dbscan", key, cmap.fingerprint, compute))
    hdbscan_row = {"method": "HDBSCAN (UMAP)", "eps": np.nan, "min_cluster_size": cmap.config.min_cluster_size,
                   "min_samples": cmap.config.min_samples, **cmap.scores}
    return pd.concat([pd.DataFrame([hdbscan_row]), dbscan], ignore_index=True)


def best_dbscan(comparison: pd.DataFrame) -> pd.Series | None:
    """The DBSCAN row of a :func:`dbscan_comparison` that agrees best with product type (highest
    ``ari_product_type``); None when the catalogue has no product type or no DBSCAN run."""
    dbscan = comparison[comparison["method"].str.startswith("DBSCAN")]
    if "ari_product_type" not in dbscan or not len(dbscan):
        return None
    return dbscan.loc[dbscan["ari_product_type"].idxmax()]
