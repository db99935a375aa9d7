"""Nearest-neighbour search over an embedding matrix with FAISS (inner product on unit rows).

Layouts are FAISS factory strings: ``"Flat"`` (exact, the default), ``"IVF<nlist>,Flat"``,
``"HNSW32"``, ... A product's own neighbours need no search at query time:
:func:`neighbour_table` computes every product's top-k once, as an artefact to cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from core.executor import current

DEFAULT_FACTORY = "Flat"
FEW_QUERIES = 20  # FAISS's own threshold for switching from per-query scans to BLAS
# Neighbour tables of more rows than this come from an HNSW graph instead of an exact scan: every row against every
# row grows as n^2. On 100,000 clustered 256-d unit vectors (``core.bench.scale``), 2 cores: exact 21.9 s, HNSW32
# 3.9 s to build and 7.6 s to search with efSearch 128 (recall@10 0.986 against exact; efSearch 64: 5.4 s, 0.972).
# IVF1024 had recall 1.0 there, but only because those vectors are clustered as neatly as its lists; a graph makes no
# such assumption, and its cost grows as n log n where IVF's grows faster than n (its lists grow or multiply with n).
# At a million rows FAISS's default graph (efConstruction 40) lost recall@10 (0.874 at efSearch 128); built with
# efConstruction 80 and searched at efSearch 64 it kept 0.979 in the same time (build 139 s + search 64 s, against
# 84 + 117 s), and at 100,000 rows 1.0 in 11.4 s against 0.984 in 9.8 s (queries in locality_order, 2 cores).
# Other layouts grew as fast or faster from 100,000 to 1,000,000 rows (b 1.3-1.4): HNSW32,SQfp16 8.6 -> 182 s;
# IVF4096,Flat nprobe 8 102 s; FAISS's big_batch_search (each list's queries in one matrix product) 94 s, recall
# 0.996. IVF's speed there comes from the synthetic vectors' neat clusters: on the H&M sample's photo embeddings
# nprobe 8 of 640 lists found 0.90 of the top 10 and needed 32 for 0.986, where HNSW32 at efSearch 64 found 0.998.
EXACT_TABLE_LIMIT = 50_000


@dataclass(frozen=True)
class IndexConfig:
    factory: str = DEFAULT_FACTORY
    nprobe: int = 16  # IVF lists visited per query; ignored by other layouts
    ef_search: int = 64  # HNSW beam width; ignored by other layouts
    ef_construction: int = 40  # HNSW's beam while it builds the graph (FAISS's default); ignored by other layouts


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
        if cfg.factory.startswith("HNSW"):  # set before the rows are added: it shapes the graph they build
            faiss.downcast_index(self.index).hnsw.efConstruction = cfg.ef_construction
        if not self.index.is_trained:
            self.index.train(vectors)
        self.index.add(vectors)
        params = faiss.ParameterSpace()
        if "IVF" in cfg.factory:
            params.set_index_parameter(self.index, "nprobe", cfg.nprobe)
            faiss.extract_index_ivf(self.index).make_direct_map()  # so reconstruct() works, as for Flat/HNSW
        if "HNSW" in cfg.factory:
            params.set_index_parameter(self.index, "efSearch", cfg.ef_search)

    @classmethod
    def from_bytes(cls, data: np.ndarray, ids: np.ndarray, cfg: IndexConfig) -> VectorIndex:
        """The index built elsewhere, from ``faiss.serialize_index``'s bytes (uint8): not built again."""
        self = cls.__new__(cls)
        self.ids, self.cfg = np.asarray(ids), cfg
        self.row = {pid: i for i, pid in enumerate(self.ids.tolist())}
        self.index = faiss.deserialize_index(data)
        return self

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


TABLE_APPROXIMATE = IndexConfig(factory="HNSW32", ef_search=64, ef_construction=80)  # past EXACT_TABLE_LIMIT rows


def table_index_config(n: int, cfg: IndexConfig = IndexConfig()) -> IndexConfig:
    """The index a neighbour table of ``n`` rows is searched in: the build's own (``cfg``) when it is
    approximate already or ``n`` is at most :data:`EXACT_TABLE_LIMIT`, else :data:`TABLE_APPROXIMATE`."""
    return cfg if cfg.factory != "Flat" or n <= EXACT_TABLE_LIMIT else TABLE_APPROXIMATE


def neighbour_table(index: VectorIndex, vectors: np.ndarray, k: int = 50, batch_size: int = 2048,
                    order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every row's top-k neighbours, itself excluded: ``rows`` (n, k) int32 (-1: none) and
    ``scores`` (n, k) float32 (0 where none). Queries are batched, so FAISS uses matrix products; ``order``
    (a permutation of the rows, e.g. :func:`locality_order`) is the order they are asked in, which changes
    nothing in the table, only how fast it comes. With a cluster's executor installed
    (:func:`core.executor.current`), the batches are asked on its workers, each holding a copy of the index."""
    n = len(vectors)
    k = max(min(k, n - 1), 0)
    rows = np.full((n, k), -1, dtype=np.int32)
    scores = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return {"rows": rows, "scores": scores}
    order = np.arange(n) if order is None else order
    executor = current()
    if executor is not None:
        work = TableQueries(faiss.serialize_index(index.index), np.ascontiguousarray(vectors, dtype=np.float32), k,
                            index.cfg)
        for positions, out in executor.map(work, order, batch_size):
            rows[order[positions]], scores[order[positions]] = out["rows"], out["scores"]
        return {"rows": rows, "scores": scores}
    for start in range(0, n, batch_size):
        asked = order[start:start + batch_size]
        rows[asked], scores[asked] = _table_rows(index.search(vectors[asked], k + 1), asked, k)
    return {"rows": rows, "scores": scores}


def _table_rows(found: tuple[np.ndarray, np.ndarray], asked: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The table's rows (b, k) int32 and scores (b, k) float32 of the rows ``asked`` (b,) from their top-(k + 1)
    ``found`` (scores, rows): the query itself dropped wherever it ranks (duplicates may tie with it), and FAISS's
    -1 (none found)."""
    s, r = found
    keep = (r != asked[:, None]) & (r >= 0)
    first = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # each row's kept places, in rank order
    kept = np.take_along_axis(keep, first, axis=1)
    return (np.where(kept, np.take_along_axis(r, first, axis=1), -1).astype(np.int32),
            np.where(kept, np.take_along_axis(s, first, axis=1), 0.0).astype(np.float32))


@dataclass
class TableQueries:
    """A neighbour table's queries on a cluster's worker (see :mod:`core.executor`): row numbers (b,) -> ``rows``
    (b, k) int32 and ``scores`` (b, k) float32 as :func:`neighbour_table` gives them. Carries the index
    (``faiss.serialize_index``'s bytes) and the (n, d) rows, sent once to each worker; FAISS there on ``threads``."""
    index: np.ndarray
    vectors: np.ndarray
    k: int
    cfg: IndexConfig
    threads: int = 1
    _search: VectorIndex | None = field(default=None, init=False, repr=False, compare=False)

    def __call__(self, asked: np.ndarray) -> dict[str, np.ndarray]:
        if self._search is None:
            faiss.omp_set_num_threads(self.threads)
            self._search = VectorIndex.from_bytes(self.index, np.arange(len(self.vectors)), self.cfg)
        asked = np.asarray(asked, dtype=np.int64)
        rows, scores = _table_rows(self._search.search(self.vectors[asked], self.k + 1), asked, self.k)
        return {"rows": rows, "scores": scores}


LOCALITY_CELLS = 1024  # coarse k-means cells of :func:`locality_order`
LOCALITY_SAMPLE = 50_000  # rows the cells are fitted on


def locality_order(vectors: np.ndarray, cells: int = LOCALITY_CELLS, sample: int = LOCALITY_SAMPLE,
                   seed: int = 0) -> np.ndarray:
    """(n,) int64 the rows grouped by their coarse k-means cell (spherical, fitted on ``sample`` rows): asked in this
    order, queries one after another walk the same region of an approximate index, which stays in the CPU's
    caches. Searching a million rows' table in HNSW32 took 148 s in this order against 227 s in the rows' own
    (synthetic features, 2 cores; 4 s for the cells)."""
    n = len(vectors)
    cells = min(cells, max(1, n // 40))  # FAISS wants about 39 training rows a cell
    rng = np.random.default_rng(seed)
    fit_on = vectors[np.sort(rng.choice(n, min(n, sample), replace=False))]
    kmeans = faiss.Kmeans(vectors.shape[1], cells, niter=10, spherical=True, seed=seed)
    kmeans.train(np.ascontiguousarray(fit_on, dtype=np.float32))
    _, cell = kmeans.index.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return np.argsort(cell[:, 0], kind="stable")


def build_neighbour_table(index: VectorIndex, vectors: np.ndarray, k: int, on: IndexConfig,
                          measure_recall: bool = True) -> dict[str, np.ndarray]:
    """The neighbour table (:func:`neighbour_table`) of ``index``'s rows ``vectors``, searched in ``index`` itself or,
    when ``on`` (see :func:`table_index_config`) differs from its layout, in an index of layout ``on`` built for it
    and dropped after. An approximate table also holds ``recall_at_10``, measured against exact search on 1,000
    rows (:func:`table_recall`; ``index`` serves as the exact one when it is), unless ``measure_recall`` is off (a
    table used on the way, such as GraphSAGE's content edges, whose build stores its own)."""
    search = index if on == index.cfg else VectorIndex(vectors, index.ids, on)
    order = locality_order(vectors) if on.factory != "Flat" else None  # exact scans gain nothing from it
    table = neighbour_table(search, vectors, k, order=order)
    del search
    if on.factory != "Flat" and measure_recall:
        exact = index if index.cfg.factory == "Flat" else None
        table["recall_at_10"] = np.float32(table_recall(vectors, table["rows"], 10, exact=exact))
    return table


def table_recall(vectors: np.ndarray, rows: np.ndarray, k: int = 10, sample: int = 1000, seed: int = 0,
                 exact: VectorIndex | None = None) -> float:
    """Recall@k of a neighbour table's ``rows`` (n, >= k) against exact search, on ``sample`` rows drawn at
    random (all when fewer): the share of each sampled row's exact top-k (itself excluded) that its first k
    table entries hold. Costs ``sample`` exact queries against every row, in ``exact`` (an exact index of
    ``vectors``) or in one built here."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    k = min(k, n - 1, rows.shape[1])
    if k <= 0:
        return 1.0
    picked = np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))
    if exact is None:
        exact = VectorIndex(vectors, np.arange(n))
    _, found = exact.search(vectors[picked], k + 1)
    hits = 0
    for p, r in zip(picked, found):
        truth = r[(r != p) & (r >= 0)][:k]
        hits += len(np.intersect1d(truth, rows[p, :k]))
    return float(hits / (len(picked) * k))
