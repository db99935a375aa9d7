"""UMAP projections of embeddings: 2-D for the map, a few dimensions for clustering."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


MIN_SAMPLE_LIMIT = 100  # the smallest sample UMAP may be fitted on (ProjectConfig.sample_limit)


@dataclass(frozen=True)
class ProjectConfig:
    n_neighbors: int = 15  # UMAP's default; the exact neighbour table (50 per product) already holds them
    map_min_dist: float = 0.1  # spreads the 2-D map a little so dense clusters stay readable
    # For clustering UMAP's docs advise min_dist 0 (points packed densely) and a handful of dimensions:
    # 10 keeps more of the structure than 2 while HDBSCAN's trees still work well.
    cluster_dims: int = 10
    seed: int = 0
    # Past this many rows UMAP is fitted on a random sample of this many and places the rest (UMAP.transform):
    # a full fit's time and memory grow with every row. A full fit of 100,000 rows takes about a minute on 2 cores.
    sample_limit: int = 100_000

    def __post_init__(self):
        if self.sample_limit < MIN_SAMPLE_LIMIT:
            raise ValueError(f"sample_limit must be at least {MIN_SAMPLE_LIMIT} (got {self.sample_limit}): a "
                             f"sample that small holds too few neighbours to place the rest by")


def knn_from_table(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's precomputed_knn from a neighbour table that excludes each row itself.

    rows (n, m) int (-1: none), scores (n, m) cosine similarities, best first.
    Returns indices (n, k) int32 with the row itself first, and cosine distances (n, k) float32.
    Missing neighbours (-1) are filled with the row itself at distance 0, which UMAP ignores.
    """
    n = len(rows)
    own = np.arange(n, dtype=np.int32)[:, None]
    idx = np.concatenate([own, rows[:, :k - 1].astype(np.int32)], axis=1)
    dist = np.concatenate([np.zeros((n, 1), np.float32), 1.0 - scores[:, :k - 1].astype(np.float32)], axis=1)
    missing = idx < 0
    idx[missing] = np.broadcast_to(own, idx.shape)[missing]
    dist[missing] = 0.0
    return idx, np.maximum(dist, 0.0)


def umap_project(vectors: np.ndarray, n_components: int, min_dist: float, cfg: ProjectConfig = ProjectConfig(),
                 knn: tuple[np.ndarray, np.ndarray] | None = None, n_epochs: int | None = None) -> np.ndarray:
    """Seeded UMAP (cosine) of ``vectors`` (n, d) to (n, n_components) float32.

    ``knn`` is an optional exact neighbour list from ``knn_from_table``, which spares UMAP its own
    approximate nearest-neighbour search (the slowest step on 17,000 products). ``n_epochs``: UMAP's layout
    epochs (None: its default, 200 past 10,000 rows and 500 up to that; fewer epochs also drop more of the
    weakest graph edges); not used past ``cfg.sample_limit``, where the sample's fit keeps UMAP's default.
    Tiny inputs (fewer than 4 rows) are returned as a deterministic spread: UMAP needs a few points.
    """
    import umap  # numba compiles on first import: keep it off the import path of everything else
    n = len(vectors)
    if n > cfg.sample_limit:
        return _fit_sample_place_rest(vectors, n_components, min_dist, cfg)
    if n < 4:
        out = np.zeros((n, n_components), np.float32)
        out[:, 0] = np.arange(n, dtype=np.float32)
        return out
    k = min(cfg.n_neighbors, n - 1)
    kwargs = {}
    if knn is not None and knn[0].shape[1] >= k:
        kwargs["precomputed_knn"] = (knn[0][:, :k], knn[1][:, :k], None)
    reducer = umap.UMAP(n_components=n_components, n_neighbors=k, min_dist=min_dist, metric="cosine",
                        random_state=cfg.seed, init="spectral" if n > n_components + 1 else "random",
                        n_epochs=n_epochs, **kwargs)
    with warnings.catch_warnings():  # "n_jobs overridden by random_state" and spectral-init notes
        warnings.simplefilter("ignore")
        return reducer.fit_transform(vectors).astype(np.float32)


# Rows placed per UMAP.transform call: memory bounded by the chunk, not the catalogue. Each call normalises its
# own neighbour graph and draws its own negative samples, so the chunk is part of what a sampled map is (its key).
TRANSFORM_CHUNK = 100_000


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` of ``range(n)`` drawn at random with ``seed`` (all when ``n <= size``), sorted."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _fit_sample_place_rest(vectors: np.ndarray, n_components: int, min_dist: float, cfg: ProjectConfig) -> np.ndarray:
    """UMAP fitted on ``cfg.sample_limit`` rows (:func:`sample_rows`), the other rows placed by its ``transform``
    (their nearest sampled rows' positions, refined) in chunks of TRANSFORM_CHUNK."""
    import umap
    rows = sample_rows(len(vectors), cfg.sample_limit, cfg.seed)
    reducer = umap.UMAP(n_components=n_components, n_neighbors=cfg.n_neighbors, min_dist=min_dist, metric="cosine",
                        random_state=cfg.seed)
    out = np.empty((len(vectors), n_components), np.float32)
    rest = np.setdiff1d(np.arange(len(vectors)), rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out[rows] = reducer.fit_transform(vectors[rows])
        for start in range(0, len(rest), TRANSFORM_CHUNK):
            chunk = rest[start:start + TRANSFORM_CHUNK]
            out[chunk] = reducer.transform(vectors[chunk])
    return out
