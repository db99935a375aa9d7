"""The cluster benchmark: the cluster map's steps from a cold map cache, and DBSCAN's best for comparison."""
from __future__ import annotations

import argparse
import tempfile
import time

from core.bench.command import BenchContext
from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.embeddings.backbone import Backbone
from core.embeddings.pipeline import BuildConfig, build
from core.explore.cluster import ClusterConfig


def bench_cluster(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                  kind: str = "hybrid", cfg: BuildConfig = BuildConfig(),
                  cluster: ClusterConfig | None = None) -> dict:
    """The cluster map from a cold map cache (embeddings and neighbour tables come warm from ``cache``):
    seconds per step, clusters, noise, agreement with labels, and DBSCAN's best over its eps grid."""
    from core.explore.clustermap import MapConfig, best_dbscan, cluster_map, dbscan_comparison
    map_cfg = MapConfig(kind=kind, cluster=cluster or ClusterConfig())
    catalog = load_catalog(spec, limit)
    built = build(catalog, backbone, cache, cfg)
    t = time.perf_counter()
    import hdbscan  # noqa: F401  (numba compiles on first import: counted apart)
    import umap  # noqa: F401
    import_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory(prefix="atelier-bench-cluster-") as tmp:
        cold_cache = ArtefactCache(tmp)
        t = time.perf_counter()
        cmap = cluster_map(built, cold_cache, map_cfg)
        total_s = time.perf_counter() - t
        t = time.perf_counter()
        cluster_map(built, cold_cache, map_cfg)
        warm_s = time.perf_counter() - t
        t = time.perf_counter()
        table = dbscan_comparison(built, cold_cache, cmap)
        dbscan_s = time.perf_counter() - t
    dbscan = table[table["method"].str.startswith("DBSCAN")]
    best = best_dbscan(table)
    return {"catalog": catalog.name, "backbone": backbone.name, "kind": kind, "products": len(cmap.ids),
            "min_cluster_size": cmap.config.min_cluster_size, "min_samples": cmap.config.min_samples,
            "import_s": round(import_s, 2), **{f"{k}_s": round(v, 2) for k, v in cmap.seconds.items()},
            "total_s": round(total_s, 2), "warm_s": round(warm_s, 3), **cmap.scores,
            "dbscan_s": round(dbscan_s, 2), "dbscan_eps_grid": dbscan["eps"].tolist(),
            "dbscan_best_eps": None if best is None else float(best["eps"]),
            "dbscan_best_ari_product_type": None if best is None else float(best["ari_product_type"]),
            "dbscan_best_noise_fraction": None if best is None else float(best["noise_fraction"]),
            "dbscan_best_n_clusters": None if best is None else int(best["n_clusters"])}


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    backbone = ctx.backbone(args.backbone)
    cluster = ClusterConfig(args.min_cluster_size, args.min_samples)
    return bench_cluster(ctx.spec, backbone, ArtefactCache(), limit=args.limit, kind=args.kind,
                         cfg=ctx.build_config(args), cluster=cluster)
