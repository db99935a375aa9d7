"""Command line: python -m core {build, serve, validate, cache, evaluate, recommend, bench} ..."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings

from core.astlock import guard_ast_parse
from core.data.catalog import CatalogError
from core.data.exports import FORMATS
from core.data.load import CATALOG_ENV, default_catalog_spec, load_catalog


def _progress_bars():
    """A progress callback drawing one tqdm bar per stage on stderr. A parenthesised tail of the stage
    name ("training GraphSAGE (validation recall@10 0.0412)") is shown after the bar, not as a new
    bar; a stage that starts again (e.g. a model fitted twice) gets a fresh bar."""
    from tqdm import tqdm
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        name, _, note = stage.partition(" (")
        bar = bars.get(name)
        if bar is None or done < bar.n or total != bar.total:
            if bar is not None:
                bar.close()
            bar = bars[name] = tqdm(total=total, desc=name, unit="item", file=sys.stderr)
        if note:
            bar.set_postfix_str(note.rstrip(")"), refresh=False)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del bars[name]
    return progress


def _cluster(args) -> None:
    """Connect to the Ray cluster that ``--ray`` or ATELIER_RAY names, if any: batch work goes there from now on."""
    from core.distributed.connect import ClusterError, ray_address
    if not hasattr(args, "ray"):  # a command that runs nothing on a cluster (cache)
        return
    address = ray_address(args.ray)
    if address is None:
        return
    if getattr(args, "ingress", None):  # serve: in the environment before a local cluster or Serve starts
        from core.distributed.serving import INGRESS
        os.environ.update(INGRESS[args.ingress])
    from core.config import cache_root
    from core.distributed.connect import connect
    try:
        cluster = connect(address, cache_root().absolute())
    except (ClusterError, ValueError) as e:  # ValueError: ATELIER_CACHE is a URL
        sys.exit(f"error: {e}")
    print(f"ray: on {cluster.address} ({cluster.nodes} nodes, {cluster.cpus:g} CPUs)", file=sys.stderr)


def _catalog(args):
    spec = args.catalog or default_catalog_spec()
    catalog = load_catalog(spec, args.limit, fmt=getattr(args, "format", None),
                           include_drafts=getattr(args, "include_drafts", False), progress=_progress_bars())
    if args.catalog is None and spec.startswith("synthetic"):
        print(f"note: no catalogue named and ../shared/data/hm not found: using the SYNTHETIC catalogue "
              f"(simulated customers). Point Atelier at real data with --catalog DIR or {CATALOG_ENV}=DIR.",
              file=sys.stderr)
    return catalog


def _backbone(name: str):
    from core.embeddings.backbone import WeightsUnavailable
    from core.embeddings.registry import create_backbone
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
    from core.embeddings.index import IndexConfig
    from core.embeddings.lit.views import check_views
    from core.embeddings.pipeline import BuildConfig
    from core.embeddings.texture import TextureConfig
    views = [v.strip() for v in getattr(args, "texture_views", "photo").split(",") if v.strip()]
    try:
        texture = TextureConfig(views=check_views(views))
    except ValueError as e:
        sys.exit(f"error: --texture-views: {e}")
    return BuildConfig(index=IndexConfig(factory=args.index), texture=texture)


def cmd_validate(args) -> None:
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}")
    print(catalog.report.summary())


def cmd_build(args) -> None:
    from core.cache import ArtefactCache
    from core.serve.release import prepare, publish
    models = _model_names(args.models) if args.models.strip() else []
    eval_models = None if args.eval_models is None else _model_names(args.eval_models) if args.eval_models.strip() \
        else []
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}", file=sys.stderr)
    print(catalog.report.summary(), file=sys.stderr)
    backbone = _backbone(args.backbone)
    t = time.perf_counter()
    cache = ArtefactCache()
    release = prepare(args.catalog or default_catalog_spec(), args.limit, backbone, _build_config(args), models,
                      cache, progress=_progress_bars(), catalog=catalog)
    built = release.built
    print(built.report.summary(), file=sys.stderr)
    publish(cache, release.manifest)  # a running service swaps to it now: the stages below serve the app
    build_s = time.perf_counter() - t
    warm = {}
    if args.warm:  # what the app's pages open with (core.warmup); a failed stage says so in "warm", the others run
        from core.warmup import run_tasks, summary, warm_stages
        tasks = warm_stages(built, cache, models=eval_models, map_kinds=args.map_kinds)
        run_tasks(tasks, _progress_bars())
        warm = summary(tasks)
    print(json.dumps({"catalog": catalog.name, "backbone": backbone.name, "weights": backbone.weights,
                      "products": len(catalog.products), "images_embedded": built.stats.images_embedded,
                      "texts_embedded": built.stats.texts_embedded, "models": list(release.models),
                      "version": release.version, "seconds": round(build_s, 2), **warm,
                      "total_seconds": round(time.perf_counter() - t, 2)}))


def cmd_serve(args) -> None:
    import uvicorn

    from core.distributed.connect import ray_address
    from core.serve.httpserver import ServerLimits, uvicorn_config
    from core.serve.release import SERVED_MODELS
    from core.serve.service import Service, ServiceConfig
    from core.serve.api import create_app
    models = tuple(_model_names(args.models)) if args.models else SERVED_MODELS
    spec = args.catalog or default_catalog_spec()
    if args.catalog:
        load_catalog(spec, args.limit)  # a bad --catalog stops here with its message, not in the background
    _use_own_cores()
    # A thread wanting the GIL waits this long before the holder is asked to let go (Python's default: 5 ms):
    # the event loop answering a lookup must not wait that long behind a heavy thread's Python code.
    sys.setswitchinterval(0.0005)
    cfg = ServiceConfig(catalog=spec, limit=args.limit, backbone=args.backbone, models=models,
                        build=_build_config(args), poll_s=args.poll)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"note: listening on {args.host}: reachable from other machines", file=sys.stderr)
    print(f"serving {spec} on http://{args.host}:{args.port} (docs at /docs); ready when /readyz says so",
          file=sys.stderr)
    given = {"limit_concurrency": args.limit_concurrency, "header_timeout_s": args.header_timeout}
    if ray_address(args.ray):  # a Ray Serve deployment of --replicas replicas, until Ctrl-C or SIGTERM
        if args.replicas < 1:
            sys.exit("error: --replicas must be at least 1")
        from core.config import cache_root
        from core.distributed.serving import ServeConfig, run, stop, wait_for_stop_signal
        unused = [k for k, v in given.items() if v is not None]
        if unused:  # Serve's HTTP proxy, not this process's uvicorn, holds the connections
            print(f"note: {', '.join(unused)} not applied on Ray Serve", file=sys.stderr)
        url = run(cache_root(), cfg, ServeConfig(replicas=args.replicas, host=args.host, port=args.port))
        print(f"ready: {url} ({args.replicas} replicas on Ray Serve); Ctrl-C stops it", file=sys.stderr)
        try:
            wait_for_stop_signal()
        finally:
            stop()
        return
    limits = ServerLimits(**{k: v for k, v in given.items() if v is not None})
    server = uvicorn.Server(uvicorn_config(create_app(Service(cfg)), args.host, args.port, limits,
                                           log_level="warning", access_log=args.access_log))
    server.run()
    if not server.started:  # e.g. the port is taken: uvicorn has logged why
        sys.exit(3)


def _use_own_cores() -> None:
    """Size torch's and FAISS's thread pools to the cores this process may run on (it may be pinned)."""
    import faiss
    import torch
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def _embeddings(catalog, backbone_name: str, cache):
    """The catalogue's per-product embeddings with the named backbone: the embedding step of ``build``,
    so a built catalogue loads them from the cache and only new content is encoded."""
    from core.embeddings.pipeline import embed_catalog
    backbone = _backbone(backbone_name)
    embeddings, _, report = embed_catalog(catalog, backbone, cache, progress=_progress_bars())
    if not report.ok:
        print(report.summary(), file=sys.stderr)
    return embeddings


def _model_names(text: str) -> list[str]:
    """Comma-separated recommender names, checked against the registry; exits with one line otherwise."""
    from core.recs.registry import list_recommenders
    valid = list_recommenders(blends=True)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        what = f"unknown model(s) {', '.join(unknown)}" if unknown else "no model named"
        sys.exit(f"error: {what}; choose from {', '.join(valid)}")
    return names


def _date(text: str, flag: str):
    import pandas as pd
    try:
        return pd.Timestamp(text)
    except (ValueError, TypeError):
        sys.exit(f"error: {flag} '{text}' is not a date; use YYYY-MM-DD, e.g. 2020-04-01")


def _purchase_range(purchases) -> str:
    t = purchases["timestamp"].dropna()
    return f"from {t.min():%Y-%m-%d} to {t.max():%Y-%m-%d}" if len(t) else "none: the catalogue has no dated purchases"


def cmd_evaluate(args) -> None:
    from core.cache import ArtefactCache
    from core.recs.evaluate import EvalConfig, evaluate
    from core.recs.split import SplitConfig
    from core.recs.contract import require_purchases
    from core.recs.registry import list_recommenders
    models = _model_names(args.models) if args.models else list_recommenders()
    cutoff, end = _date(args.cutoff, "--cutoff"), _date(args.end, "--end")
    if end <= cutoff:
        sys.exit(f"error: --end {args.end} must be after --cutoff {args.cutoff} (the test window is [cutoff, end))")
    if args.seeds < 1:
        sys.exit(f"error: --seeds {args.seeds} must be at least 1")
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}", file=sys.stderr)
    require_purchases(catalog, what="evaluate")
    t = catalog.purchases["timestamp"]
    if not ((t >= cutoff) & (t < end)).any():
        sys.exit(f"error: no purchases between --cutoff {args.cutoff} and --end {args.end}, so nothing to test on; "
                 f"the catalogue's purchases run {_purchase_range(catalog.purchases)}")
    require_purchases(catalog, cutoff, "evaluate")
    cache = ArtefactCache()
    embeddings = _embeddings(catalog, args.backbone, cache)
    cfg = EvalConfig(SplitConfig(cutoff=args.cutoff, end=args.end), exclude_bought=args.exclude_bought,
                     seeds=tuple(range(args.seeds)))
    print(json.dumps(evaluate(catalog, embeddings, models, cfg, cache, progress=_progress_bars()).to_dict()))


def _customer_file(path: str) -> list[str]:
    """Customer ids from a file: one id per line, or a CSV with a ``customer_id`` column; in file order,
    each once."""
    import pandas as pd
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline()
    except OSError as e:
        sys.exit(f"error: --customers {path}: {e.strerror}")
    header = [c.strip().strip('"') for c in first.split(",")]
    if "customer_id" in header:
        ids = pd.read_csv(path, dtype=str, usecols=["customer_id"], encoding="utf-8-sig")["customer_id"].dropna()
    elif len(header) > 1:
        sys.exit(f"error: --customers {path}: a CSV needs a customer_id column (or give one id per line)")
    else:
        with open(path, encoding="utf-8-sig") as f:
            ids = [line.strip() for line in f]
    return list(dict.fromkeys(i.strip() for i in ids if i.strip()))


def cmd_recommend(args) -> None:
    from pathlib import Path

    from core.cache import ArtefactCache
    from core.recs.contract import cutoff_after, rec_data, require_purchases
    from core.recs.registry import fitted
    _model_names(args.model)
    if args.k < 1:
        sys.exit("error: --k must be at least 1")
    requested = _customer_file(args.customers) if args.customers else None
    out = Path(args.out)
    if not out.parent.is_dir():
        sys.exit(f"error: --out {out}: folder {out.parent} does not exist")
    cutoff = _date(args.cutoff, "--cutoff") if args.cutoff else None
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}", file=sys.stderr)
    if cutoff is None:
        cutoff = cutoff_after(catalog.purchases)
    require_purchases(catalog, cutoff, "recommend")
    cache = ArtefactCache()
    embeddings = _embeddings(catalog, args.backbone, cache)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff, embeddings)
    t = time.perf_counter()
    model = fitted(args.model, data, cache, progress=_progress_bars())
    train_s = time.perf_counter() - t
    customers = requested if requested is not None else data.customer_ids.tolist()
    unknown = [c for c in customers if c not in data.customer_row]
    if unknown:
        print(f"note: {len(unknown)} customer id(s) not in the catalogue, recommended to as new customers: "
              f"{', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}", file=sys.stderr)
    no_history = sum(1 for c in customers if not len(data.history(c)))
    exclude = args.exclude_bought == "yes"
    n_rows = _write_recommendations(out, model, data, customers, args.k, exclude)
    print(json.dumps({"out": str(out), "model": args.model, "cutoff": cutoff.isoformat(), "k": args.k,
                      "exclude_bought": exclude, "customers": len(customers), "rows": n_rows,
                      "customers_without_purchases": no_history, "unknown_customers": len(unknown),
                      "train_purchases": len(data.purchases), "train_s": round(train_s, 2)}))


def _write_recommendations(out, model, data, customers: list[str], k: int, exclude: bool) -> int:
    """The CSV of :func:`recommendation_batches` written to ``out`` whole or not at all; its number of rows."""
    from core.cache import write_atomic
    from core.recs.lists import recommendation_batches
    n_rows = 0

    def write(f) -> None:
        nonlocal n_rows
        f.write(b"customer_id,product_id,rank,score\n")
        for frame in recommendation_batches(model, data, customers, k, exclude, progress=_progress_bars()):
            f.write(frame.to_csv(header=False, index=False, float_format="%.6g").encode())
            n_rows += len(frame)
    write_atomic(out, write)
    return n_rows


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
    from core.bench.command import BenchContext
    from core.bench.registry import run_benchmark
    ctx = BenchContext(spec=args.catalog or default_catalog_spec(), backbone=_backbone, model_names=_model_names,
                       build_config=_build_config, progress=_progress_bars)
    print(json.dumps(run_benchmark(args.what, args, ctx)))


def _kinds(text: str) -> list[str]:
    from core.embeddings.pipeline import KINDS
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown kind(s) {', '.join(unknown)}: use {', '.join(KINDS)}")
    return kinds


def _catalog_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--catalog", help=f"catalogue folder (H&M or generic layout), a shop's export file (Shopify, "
                                     f"WooCommerce, Merchant Center) or a folder of them, or "
                                     f"'synthetic[:n[:seed]]'; default ${CATALOG_ENV}, else ../shared/data/hm, "
                                     f"else synthetic")
    p.add_argument("--format", choices=FORMATS, help="the export's format, when its header does not tell")
    p.add_argument("--include-drafts", action="store_true", help="keep an export's unpublished products (drafts, "
                                                                  "archived, private)")
    p.add_argument("--limit", type=int, help="use only the first N products")
    p.add_argument("--ray", metavar="ADDRESS", help="run the batch stages (and training, the service) on a Ray "
                   "cluster: auto (the running one), local (start one here), ray://host:10001; default "
                   "$ATELIER_RAY, else this process. Needs requirements-ray.txt and a cache every node sees")


def _validate_parser(sub) -> None:
    """The arguments of ``python -m core validate``."""
    p = sub.add_parser("validate", help="load a catalogue and print its validation report")
    _catalog_args(p)
    p.set_defaults(fn=cmd_validate)


def _build_parser(sub) -> None:
    """The arguments of ``python -m core build``."""
    p = sub.add_parser("build", help="compute embeddings, indexes and neighbour tables (cached)")
    _catalog_args(p)
    p.add_argument("--backbone", default="auto", help="auto, openclip:<model>/<tag or path>, random:<model>")
    p.add_argument("--index", default="Flat", help="FAISS factory string: Flat (exact), IVF256,Flat, HNSW32, ...")
    p.add_argument("--texture-views", default="photo",
                   help="views of each photo the texture descriptor is taken from: photo, gray, centre "
                        "(comma-separated; each beyond photo is one more pass over the photos)")
    p.add_argument("--map-kinds", default="hybrid,image,text,texture", type=_kinds,
                   help="embedding kinds to map and cluster after the build (comma-separated; '' for none); the "
                        "hybrid map comes first, with its DBSCAN comparison, the others last")
    p.add_argument("--models", default="two_tower,graphsage",
                   help="recommenders to fit on every purchase and publish with the version ('' for none)")
    p.add_argument("--eval-models", default=None,
                   help="recommenders the warm-up fits on the evaluation split and evaluates (comma-separated; "
                        "default every model, as the Cold start page shows them; '' for none)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="publish the version and stop: skip the warm-up stages (maps, backbone evaluation, texture "
                        "report, recommenders on the evaluation split and their evaluation) the app's pages open with")
    p.set_defaults(fn=cmd_build)


def _serve_parser(sub) -> None:
    """The arguments of ``python -m core serve``."""
    p = sub.add_parser("serve", help="the retrieval service: HTTP API over the catalogue's current version")
    _catalog_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backbone", default="auto", help="when no version is published yet: backbone to build with")
    p.add_argument("--models", help="when no version is published yet: recommenders to fit (default two_tower,"
                                    "graphsage)")
    p.add_argument("--index", default="Flat", help="when no version is published yet: FAISS factory string")
    p.add_argument("--texture-views", default="photo", help="when no version is published yet: texture views")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between checks for a newly published "
                                                           "version (0: never swap)")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--limit-concurrency", type=int, help="open connections (idle ones too) or requests in flight "
                   "beyond which a request gets 503 (default 2048)")
    p.add_argument("--header-timeout", type=float, help="seconds a connection may take to send a request's "
                   "headers before it gets 408 and is closed (default 5)")
    p.add_argument("--ingress", choices=["python", "haproxy"], default="python",
                   help="with --ray: Serve's HTTP ingress: its Python proxy (Serve's default), or HAProxy routing "
                        "straight to the replicas (a Ray 2.60 feature flag; about a third of the proxy's lookup p99 "
                        "here). A running cluster must have been started with it (RAY_SERVE_ENABLE_HA_PROXY=1)")
    p.add_argument("--replicas", type=int, default=2, help="with --ray: replicas of the Ray Serve deployment, each "
                                                            "loading the version once (default 2)")
    p.set_defaults(fn=cmd_serve)


def _evaluate_parser(sub) -> None:
    """The arguments of ``python -m core evaluate``."""
    p = sub.add_parser("evaluate", help="fit recommenders before a cutoff and measure them after it (one JSON "
                                        "object; cached)")
    _catalog_args(p)
    p.add_argument("--backbone", default="auto", help="backbone of the content embeddings (as for build)")
    p.add_argument("--cutoff", default="2020-04-01", help="models learn from purchases before this date")
    p.add_argument("--end", default="2020-07-01", help="and are tested on the purchases in [cutoff, end)")
    p.add_argument("--models", help="comma-separated recommenders; default: graphsage, two_tower, ranker, "
                                    "popularity, recent_popularity, segment_popularity, new_arrivals, "
                                    "colour_variants, itemknn, als, lightgcn, content; by name only: blend (GraphSAGE "
                                    "and two-tower fused by reciprocal rank)")
    p.add_argument("--exclude-bought", default="auto", choices=["auto", "yes", "no"],
                   help="drop a customer's earlier purchases from their list; auto: per model, whichever does "
                        "better on a validation window before the cutoff")
    p.add_argument("--seeds", type=int, default=3, help="fit each seeded model (graphsage, two_tower, ranker, als, "
                                                        "lightgcn) with seeds 0..N-1 and average its per-customer "
                                                        "values")
    p.set_defaults(fn=cmd_evaluate)


def _export_parser(sub) -> None:
    """The arguments of ``python -m core export``."""
    p = sub.add_parser("export", help="one row per product (attributes, embeddings, map, clusters, neighbours, "
                                      "texture flag) as Parquet or CSV, for pandas, polars, DuckDB, Embedding Atlas, "
                                      "FiftyOne")
    _catalog_args(p)
    p.add_argument("--out", required=True, help="the file to write: .parquet or .csv")
    p.add_argument("--backbone", default="auto", help="as for build")
    p.add_argument("--index", default="Flat", help="as for build")
    p.add_argument("--map-kind", default="hybrid", choices=["image", "text", "hybrid", "texture"],
                   help="the embedding kind whose map gives x, y and the clusters")
    p.set_defaults(fn=cmd_export)


def cmd_export(args) -> None:
    from core.cache import ArtefactCache
    from core.embeddings.pipeline import build
    from core.explore.clustermap import MapConfig, cluster_map
    from core.explore.export import FORMATS, export_table, write_export
    if not args.out.lower().endswith(FORMATS):
        sys.exit(f"error: --out {args.out}: the export is written as {' or '.join(FORMATS)}; name the file so")
    catalog = _catalog(args)
    print(f"{catalog.name}: {catalog.counts()}", file=sys.stderr)
    cache = ArtefactCache()
    built = build(catalog, _backbone(args.backbone), cache, _build_config(args), progress=_progress_bars())
    if args.map_kind not in built.kinds:
        sys.exit(f"error: --map-kind {args.map_kind}: this build has {', '.join(built.kinds)}")
    cmap = cluster_map(built, cache, MapConfig(kind=args.map_kind), progress=_progress_bars())
    table = export_table(built, cmap)
    path = write_export(table, args.out)
    print(json.dumps({"out": str(path), "rows": len(table), "columns": list(table.columns),
                      "bytes": path.stat().st_size}))


def _recommend_parser(sub) -> None:
    """The arguments of ``python -m core recommend``."""
    p = sub.add_parser("recommend", help="write the top-k products of every customer to a CSV")
    _catalog_args(p)
    p.add_argument("--backbone", default="auto", help="backbone of the content embeddings (as for build)")
    p.add_argument("--model", default="graphsage", help="recommender (see evaluate --models)")
    p.add_argument("--cutoff", help="learn from the purchases before this date; default every purchase")
    p.add_argument("--k", type=int, default=12, help="products per customer")
    p.add_argument("--customers", help="only these customers: a file with one id per line, or a CSV with a "
                                       "customer_id column; default every customer of the catalogue")
    p.add_argument("--exclude-bought", nargs="?", const="yes", default="no", choices=["yes", "no"],
                   help="yes: never list a product the customer already bought; default no (repurchases "
                        "listed), evaluate's exclude_bought shows which way scored better per model")
    p.add_argument("--out", required=True, help="CSV to write: customer_id,product_id,rank,score")
    p.set_defaults(fn=cmd_recommend)


def _cache_parser(sub) -> None:
    """The arguments of ``python -m core cache``."""
    p = sub.add_parser("cache", help="list or clear cached artefacts")
    p.add_argument("action", choices=["ls", "clear"])
    p.add_argument("--kind", help="with clear: only this kind (e.g. neighbours, rows)")
    p.set_defaults(fn=cmd_cache)


def _bench_parser(sub) -> None:
    """The arguments of ``python -m core bench``: one parser for every benchmark, each reading the options it uses."""
    from core.bench.registry import list_benchmarks
    p = sub.add_parser("bench", help="print benchmark numbers as one JSON object")
    p.add_argument("what", choices=list_benchmarks())
    _catalog_args(p)
    p.add_argument("--backbone", default="auto")
    p.add_argument("--index", default="Flat", help="FAISS factory string (search bench)")
    p.add_argument("--kind", default="hybrid", choices=["image", "text", "hybrid", "texture"],
                   help="embedding kind (cluster bench)")
    p.add_argument("--label", default="pattern", help="label column the texture bench measures against")
    p.add_argument("--texture-views", default="photo", help="texture descriptor views (build and texture bench)")
    p.add_argument("--min-cluster-size", type=int, default=0, help="HDBSCAN (cluster bench); 0: automatic")
    p.add_argument("--min-samples", type=int, default=10, help="HDBSCAN and DBSCAN (cluster bench)")
    p.add_argument("--model", default="graphsage", help="recommender (recs bench)")
    p.add_argument("--models", help="demo bench: comma-separated recommenders (default graphsage,two_tower,content,"
                                    "popularity), fitted on the default split as evaluate fits them")
    p.add_argument("--cache-dir", help="warm bench: the artefact cache to start from (default: an empty one)")
    p.add_argument("--url", help="serve bench: load this running service instead of starting one")
    p.add_argument("--qps", type=float, default=100.0, help="serve bench: offered requests per second")
    p.add_argument("--seconds", type=float, default=60.0, help="serve bench: measured seconds (after the warm-up)")
    p.add_argument("--warmup", type=float, default=5.0, help="serve bench: seconds sent first and not counted")
    p.add_argument("--floor", action="store_true", help="serve bench: the same load on a null service (200 at "
                   "once, no work): the latency the generator and the loopback add by themselves")
    p.add_argument("--rounds", type=int, default=3, help="drill bench: service processes killed (SIGKILL) while "
                                                         "products are being added")
    p.add_argument("--no-pin", action="store_true", help="serve bench: do not pin the service and the generator "
                                                         "to different cores")
    p.add_argument("--publish-during", action="store_true", help="serve bench: publish a new version of the "
                   "catalogue during the load and report the swap window's latencies apart")
    p.add_argument("--publish-at", type=float, help="serve bench with --publish-during: seconds into the measured "
                                                    "window (default: half of --seconds)")
    p.add_argument("--sizes", default="10000,100000,1000000", help="scale and map benches: comma-separated catalogue sizes")
    p.add_argument("--stages", help="scale bench: comma-separated stages (default all)")
    p.add_argument("--photo-sizes", default="2000,20000", help="scale bench: comma-separated numbers of the "
                   "catalogue's real products whose photos and sentences are featurised (its photo and sentence "
                   "feature stages; empty: none)")
    p.add_argument("--stage-timeout", type=float, default=3600.0,
                   help="scale bench: seconds a stage may take; map bench: seconds a page may take (at most 600)")
    p.add_argument("--browser", help="map bench: the Chromium to drive (default: chromium on the PATH)")
    p.add_argument("--screenshots", help="map bench: a folder for a screenshot of each size's map after the selection")
    p.add_argument("--build", action="store_true", help="photos bench: also build the Merchant Center export twice "
                                                        "(python -m core build) and time both")
    p.set_defaults(fn=cmd_bench)

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m core", description="Atelier: build and inspect artefacts.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_validate_parser, _build_parser, _serve_parser, _evaluate_parser, _recommend_parser, _export_parser,
                _cache_parser, _bench_parser):
        add(sub)
    args = parser.parse_args(argv)
    guard_ast_parse()  # the build's thread pools and the service parse in several threads
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    from core.config import cache_root
    from core.recs.contract import NoPurchases
    try:
        cache_root()
    except ValueError as e:  # ATELIER_CACHE is a URL
        sys.exit(f"error: {e}")
    _cluster(args)
    try:
        args.fn(args)
    except (CatalogError, NoPurchases) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
