"""The Ray benchmark: featurisation and a neighbour table in this process and on a cluster (a simulated one on this
machine unless ``--ray`` names one): the same features, a warm local cache afterwards, and Ray's overhead."""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from core.bench.command import BenchContext
from core.bench.measure import reference_s
from core.cache import ArtefactCache
from core.config import cache_root
from core.data.load import load_catalog
from core.executor import current, use

DEFAULT_PRODUCTS = 1000
WORKER_NODES = 2  # nodes beside the head, one CPU each; the head (driver, scheduler) takes no work
TABLE_K = 50


def _simulated_cluster():
    """A head with no CPUs for work and WORKER_NODES nodes of one CPU each on this machine: two workers on its two
    cores, as the in-process path has them."""
    from ray.cluster_utils import Cluster
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(WORKER_NODES):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    return cluster


def _features(catalog, cache: ArtefactCache) -> tuple[float, tuple, dict]:
    from core.embeddings.lit.features import catalog_features
    computed = {}
    t = time.perf_counter()
    out = catalog_features(catalog, cache, computed=computed)
    return time.perf_counter() - t, out, computed


def _table(vectors: np.ndarray) -> tuple[float, dict]:
    from core.embeddings.index import VectorIndex, neighbour_table
    index = VectorIndex(vectors, np.arange(len(vectors)).astype(str))
    t = time.perf_counter()
    table = neighbour_table(index, vectors, TABLE_K)
    return time.perf_counter() - t, table


def bench_ray(spec: str, limit: int, address: str | None) -> dict:
    from core.distributed.connect import connect, disconnect, import_ray
    from core.embeddings.lit.runtime import create_feature_tower
    from core.embeddings.lit.text import TextTower
    ray = import_ray()
    catalog = load_catalog(spec, limit)
    given = current()  # --ray: connected by the CLI already
    use(None)
    reference = reference_s()
    # under the artefact cache: on a real cluster (--ray) only a folder every node sees will do
    cache_root().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-ray-", dir=cache_root()) as tmp:
        here, there = ArtefactCache(Path(tmp) / "here"), ArtefactCache(Path(tmp) / "there")
        create_feature_tower(here)  # the ONNX exports, once, outside the timings; both caches start with them
        TextTower(here).runner()
        shutil.copytree(here.root / "onnx", there.root / "onnx")
        local_s, local, _ = _features(catalog, here)
        unit = local[0] / np.maximum(np.linalg.norm(local[0], axis=1, keepdims=True), 1e-12)
        local_table_s, local_table = _table(unit)
        t = time.perf_counter()
        cluster = None
        if given is None:
            cluster = _simulated_cluster()
            address = cluster.address
        connect(address, there.root)
        start_s = time.perf_counter() - t
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        cpus = ray.cluster_resources().get("CPU", 0)
        try:
            remote_s, remote, computed = _features(catalog, there)
            remote_table_s, remote_table = _table(unit)
        finally:
            use(None)
            if cluster is not None:
                disconnect()
                cluster.shutdown()
        warm_s, _, warm = _features(catalog, there)  # back in this process, on the cluster's cache
    use(given)
    image_diff = float(np.abs(local[0] - remote[0]).max())
    text_diff = float(np.abs(local[1] - remote[1]).max())
    return {"catalog": catalog.name, "products": len(catalog.products), "photos": int(local[2].sum()),
            "cluster": address if cluster is None else f"simulated: a head and {WORKER_NODES} nodes of 1 CPU",
            "nodes": nodes, "cpus": cpus, "reference_s": round(reference, 4),
            "cluster_start_s": round(start_s, 2),
            "features_local_s": round(local_s, 2), "features_ray_s": round(remote_s, 2),
            "features_ray_over_local": round(remote_s / local_s, 2),
            "features_local_per_reference": round(local_s / reference, 1),
            "features_max_abs_diff": {"image": image_diff, "text": text_diff},
            "features_equal_atol_1e-5": image_diff <= 1e-5 and text_diff <= 1e-5,
            "featurised_on_ray": computed, "warm_local_after_ray": warm, "warm_local_s": round(warm_s, 2),
            "table_local_s": round(local_table_s, 2), "table_ray_s": round(remote_table_s, 2),
            "table_ray_over_local": round(remote_table_s / local_table_s, 2),
            # exact search both ways; FAISS's matrix products over batches of another size may order near-ties
            # (scores equal to float rounding) differently, so equal rows and the scores' difference are both shown
            "table_rows_equal_share": round(float((local_table["rows"] == remote_table["rows"]).all(axis=1).mean()), 4),
            "table_max_abs_score_diff": float(np.abs(local_table["scores"] - remote_table["scores"]).max())}


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    from core.distributed.connect import ray_address
    return bench_ray(ctx.spec, args.limit or DEFAULT_PRODUCTS, ray_address(args.ray))
