"""Nearest-neighbour search over an embedding matrix with FAISS (inner product on unit rows).

Layouts are FAISS factory strings: ``"Flat"`` (exact, the default), ``"IVF<nlist>,Flat"``,
``"HNSW32"``, ... A product's own neighbours need no search at query time:
:func:`neighbour_table` computes every product's top-k once, as an artefact to cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

DEFAULT_FACTORY = "Flat"
FEW_QUERIES = 20  # FAISS's own threshold for switching from per-query scans to BLAS


@dataclass(frozen=True)
class IndexConfig:
    factory: str = DEFAULT_FACTORY
    nprobe: int = 16  # IVF lists visited per query; ignored by other layouts
    ef_search: int = 64  # HNSW beam width; ignored by other layouts


class VectorIndex:
    """Inner-product search over (n, d) float32 rows (L2-normalised, so scores are cosines)."""

    def __init__(self, vectors: np.ndarray, ids: np.ndarray, cfg: IndexConfig = IndexConfig()):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
        self.ids = np.asarray(ids)
        self.cfg = cfg
        self.row = {pid: i for i, pid in enumerate(self.ids.tolist())}
        self.index = faiss.index_factory(vectors.shape[1], cfg.factory, faiss.METRIC_INNER_PRODUCT)
        if not self.index.is_trained:
            self.index.train(vectors)
        self.index.add(vectors)
        params = faiss.ParameterSpace()
        if "IVF" in cfg.factory:
            params.set_index_parameter(self.index, "nprobe", cfg.nprobe)
            faiss.extract_index_ivf(self.index).make_direct_map()  # so reconstruct() works, as for Flat/HNSW
        if "HNSW" in cfg.factory:
            params.set_index_parameter(self.index, "efSearch", cfg.ef_search)

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Append (m, d) float32 rows (L2-normalised) with their ids; a trained layout is not retrained."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        ids = np.asarray(ids)
        if len(vectors) != len(ids):
            raise ValueError(f"{len(vectors)} vectors but {len(ids)} ids")
        clash = [i for i in ids.tolist() if i in self.row]
        if clash:
            raise ValueError(f"already indexed: {', '.join(map(str, clash[:5]))}")
        start = len(self)
        self.index.add(vectors)
        self.row.update({pid: start + i for i, pid in enumerate(ids.tolist())})
        self.ids = np.concatenate([self.ids, ids])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(q, d) queries -> scores (q, k) float32 descending and row numbers (q, k) int64 (-1: none).
        Fewer than :data:`FEW_QUERIES` queries run on one OpenMP thread: for a single query the threads
        cost more than they share (exact top-100 over 24,717 256-d rows, p50 1.7 ms on one thread
        against 2.7 ms on two, measured on 2 cores)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if len(queries) >= FEW_QUERIES:
            return self.index.search(queries, min(k, len(self)))
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, min(k, len(self)))
        finally:
            faiss.omp_set_num_threads(threads)

    def reconstruct(self, product_id: str) -> np.ndarray:
        """(d,) float32 stored vector of ``product_id`` (a numpy array even once PyG has imported
        ``faiss.contrib.torch_utils``, which makes FAISS hand back torch tensors)."""
        return np.asarray(self.index.reconstruct(self.row[product_id]), dtype=np.float32)


def brute_force_topk(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference exact top-k by inner product with numpy: scores (q, k), rows (q, k)."""
    sims = np.atleast_2d(queries) @ vectors.T
    rows = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, rows, axis=1), rows


def neighbour_table(index: VectorIndex, vectors: np.ndarray, k: int = 50,
                    batch_size: int = 2048) -> dict[str, np.ndarray]:
    """Every row's top-k neighbours, itself excluded: ``rows`` (n, k) int32 (-1: none) and
    ``scores`` (n, k) float32. Queries are batched, so FAISS uses matrix products."""
    n = len(vectors)
    k = min(k, n - 1)
    rows = np.full((n, max(k, 0)), -1, dtype=np.int32)
    scores = np.zeros((n, max(k, 0)), dtype=np.float32)
    for start in range(0, n, batch_size):
        s, r = index.search(vectors[start:start + batch_size], k + 1)
        own = np.arange(start, start + len(r))[:, None]
        keep = r != own  # drop the query itself wherever it ranks (duplicates may tie with it)
        for i in range(len(r)):
            sel = np.flatnonzero(keep[i])[:k]
            rows[start + i, :len(sel)] = r[i, sel]
            scores[start + i, :len(sel)] = s[i, sel]
    return {"rows": rows, "scores": scores}
