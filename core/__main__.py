"""Command line: python -m core {build, validate, cache, bench} ..."""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import warnings

from core.catalog import CATALOG_ENV, PROJECT_ROOT, CatalogError, default_catalog_spec, load_catalog


def _progress_bars():
    from tqdm import tqdm
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="item", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
    return progress


def _catalog(args):
    spec = args.catalog or default_catalog_spec()
    catalog = load_catalog(spec, args.limit)
    if args.catalog is None and spec.startswith("synthetic"):
        print(f"note: no catalogue named and ../shared/data/hm not found: using the SYNTHETIC catalogue "
              f"(simulated customers). Point Atelier at real data with --catalog DIR or {CATALOG_ENV}=DIR.",
              file=sys.stderr)
    return catalog


def _backbone(name: str):
    from core.embed import WeightsUnavailable, create_backbone
    try:
        backbone = create_backbone(name)
    except WeightsUnavailable as e:
        sys.exit(f"error: {e}")
    for note in backbone.notes:
        print(f"backbone: {note}", file=sys.stderr)
    if backbone.warning:
        print(f"WARNING: {backbone.warning}", file=sys.stderr)
    return backbone


def _build_config(args):
    from core.index import IndexConfig
    from core.pipeline import BuildConfig
    return BuildConfig(index=IndexConfig(factory=args.index))


def cmd_validate(args) -> None:
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}")
    print(catalog.report.summary())


def cmd_build(args) -> None:
    from core.cache import ArtefactCache
    from core.pipeline import build
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}", file=sys.stderr)
    print(catalog.report.summary(), file=sys.stderr)
    backbone = _backbone(args.backbone)
    t = time.perf_counter()
    cache = ArtefactCache()
    built = build(catalog, backbone, cache, _build_config(args), progress=_progress_bars())
    print(built.report.summary(), file=sys.stderr)
    maps = _build_maps(built, cache, args.map_kinds)
    print(json.dumps({"catalog": catalog.name, "backbone": backbone.name, "weights": backbone.weights,
                      "products": len(catalog.products), "images_embedded": built.stats.images_embedded,
                      "texts_embedded": built.stats.texts_embedded, "maps": maps,
                      "seconds": round(time.perf_counter() - t, 2)}))


def _build_maps(built, cache, kinds: list[str]) -> dict[str, dict]:
    """The cluster map of each kind (UMAP, HDBSCAN, names), and the DBSCAN comparison for the first."""
    from core.clustermap import MapConfig, cluster_map, dbscan_comparison
    out = {}
    for i, kind in enumerate(kinds):
        t = time.perf_counter()
        cmap = cluster_map(built, cache, MapConfig(kind=kind), progress=_progress_bars())
        if i == 0:
            dbscan_comparison(built, cache, cmap)
        out[kind] = {"n_clusters": cmap.scores["n_clusters"], "noise_fraction": cmap.scores["noise_fraction"],
                     "seconds": round(time.perf_counter() - t, 2)}
    return out


def cmd_cache(args) -> None:
    from core.cache import ArtefactCache
    cache = ArtefactCache()
    if args.action == "clear":
        print(f"removed {cache.clear(args.kind)} file(s) from {cache.root}")
        return
    entries = cache.entries()
    total = 0
    for e in entries:
        total += e.bytes
        what = e.meta.get("config", {}) if not e.meta.get("corrupt") else "CORRUPT (will be recomputed)"
        print(f"{e.kind:<40} {e.key:<26} {e.bytes / 1e6:8.2f} MB  {time.strftime('%Y-%m-%d %H:%M', time.localtime(e.modified))}  {what}")
    print(f"{len(entries)} artefact file(s), {total / 1e6:.1f} MB in {cache.root}")


def cmd_bench(args) -> None:
    from core import bench
    from core.cache import ArtefactCache
    spec = args.catalog or default_catalog_spec()
    if args.what == "app":  # AppTest needs streamlit, which core never imports: run it in a child process
        env = dict(os.environ, ATELIER_CATALOG=spec, ATELIER_BACKBONE=args.backbone)
        sys.exit(subprocess.call([sys.executable, str(PROJECT_ROOT / "tools" / "bench_app.py")], env=env))
    if args.what == "backbone":
        print(json.dumps(bench.bench_backbone(spec, ArtefactCache(), limit=args.limit)))
        return
    backbone = _backbone(args.backbone)
    if args.what == "cluster":
        from core.cluster import ClusterConfig
        cluster = ClusterConfig(args.min_cluster_size, args.min_samples)
        print(json.dumps(bench.bench_cluster(spec, backbone, ArtefactCache(), limit=args.limit, kind=args.kind,
                                             cfg=_build_config(args), cluster=cluster)))
        return
    fn = {"embed": bench.bench_embed, "search": bench.bench_search}[args.what]
    print(json.dumps(fn(spec, backbone, ArtefactCache(), limit=args.limit, cfg=_build_config(args))))


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in ("image", "text", "hybrid")]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {', '.join(unknown)}: use image, text, hybrid")
    return kinds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core", description="Atelier: build and inspect artefacts.")
    sub = parser.add_subparsers(dest="command", required=True)

    def catalog_args(p):
        p.add_argument("--catalog", help=f"catalogue folder (H&M or generic layout) or 'synthetic[:n[:seed]]'; "
                                         f"default ${CATALOG_ENV}, else ../shared/data/hm, else synthetic")
        p.add_argument("--limit", type=int, help="use only the first N products")

    p = sub.add_parser("validate", help="load a catalogue and print its validation report")
    catalog_args(p)
    p.set_defaults(fn=cmd_validate)
    p = sub.add_parser("build", help="compute embeddings, indexes and neighbour tables (cached)")
    catalog_args(p)
    p.add_argument("--backbone", default="auto", help="auto, openclip:<model>/<tag or path>, random:<model>")
    p.add_argument("--index", default="Flat", help="FAISS factory string: Flat (exact), IVF256,Flat, HNSW32, ...")
    p.add_argument("--map-kinds", default="hybrid,image,text", type=_kinds,
                   help="embedding kinds to map and cluster (comma-separated; '' for none); the first also gets "
                        "the DBSCAN comparison")
    p.set_defaults(fn=cmd_build)
    p = sub.add_parser("cache", help="list or clear cached artefacts")
    p.add_argument("action", choices=["ls", "clear"])
    p.add_argument("--kind", help="with clear: only this kind (e.g. neighbours, rows)")
    p.set_defaults(fn=cmd_cache)
    p = sub.add_parser("bench", help="print benchmark numbers as one JSON object")
    p.add_argument("what", choices=["embed", "search", "app", "backbone", "cluster"])
    catalog_args(p)
    p.add_argument("--backbone", default="auto")
    p.add_argument("--index", default="Flat", help="FAISS factory string (search bench)")
    p.add_argument("--kind", default="hybrid", choices=["image", "text", "hybrid"],
                   help="embedding kind (cluster bench)")
    p.add_argument("--min-cluster-size", type=int, default=0, help="HDBSCAN (cluster bench); 0: automatic")
    p.add_argument("--min-samples", type=int, default=10, help="HDBSCAN and DBSCAN (cluster bench)")
    p.set_defaults(fn=cmd_bench)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        args.fn(args)
    except CatalogError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
