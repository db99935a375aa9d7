"""Benchmarks that print numbers: embedding throughput and incremental rebuilds, search latency, cluster maps,
recommender training and latency."""
from __future__ import annotations

import dataclasses
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import ImageOps

from core.cache import ArtefactCache
from core.data.catalog import Catalog, product_sentences
from core.data.load import load_catalog
from core.explore.cluster import ClusterConfig
from core.embeddings.backbone import Backbone, encode_images, load_image
from core.embeddings.index import VectorIndex
from core.embeddings.pipeline import BuildConfig, build, embed_catalog


def _percentiles(seconds: list[float], prefix: str) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {f"{prefix}_p50_ms": round(float(np.percentile(ms, 50)), 4),
            f"{prefix}_p99_ms": round(float(np.percentile(ms, 99)), 4)}


def _timed(fn, args) -> list[float]:
    """Seconds of ``fn(a)`` for each of ``args``, after one untimed warm-up call."""
    fn(args[0])
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t)
    return times


def reference_s(repeats: int = 5, n: int = 1024, seed: int = 0) -> float:
    """Seconds of a fixed workload, measured in the same run as a benchmark so its timings can be read
    as ratios that travel between machines (and between a busy and an idle one): the median of
    ``repeats`` runs of four (n, n) @ (n, n) float32 numpy matmuls (8.6 GFLOP at n = 1024)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm-up: BLAS threads start
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory in MB (ru_maxrss: KB on Linux) of this process, or with RUSAGE_CHILDREN of
    its largest finished child."""
    return resource.getrusage(who).ru_maxrss / 1024.0


def naive_images_per_s(backbone: Backbone, paths: list[str]) -> float:
    """The naive loop: open, preprocess and encode one image at a time."""
    t = time.perf_counter()
    for p in paths:
        backbone.encode_image(backbone.preprocess(load_image(p))[None])
    return len(paths) / (time.perf_counter() - t)


def with_new_products(catalog: Catalog, n: int, image_dir: Path) -> Catalog:
    """``catalog`` plus ``n`` new products: mirrored copies of existing photos under new ids and titles."""
    src = catalog.products[catalog.products["image_path"] != ""].iloc[:n].copy()
    image_dir.mkdir(parents=True, exist_ok=True)
    new_ids = [f"new{i:06d}" for i in range(len(src))]
    paths = []
    for pid, path in zip(new_ids, src["image_path"]):
        out = image_dir / f"{pid}.png"
        ImageOps.mirror(load_image(path)).save(out)
        paths.append(str(out))
    src.index = pd.Index(new_ids, name="product_id")
    src["image_path"] = paths
    src["title"] = "New " + src["title"]
    src["sentence"] = product_sentences(src)
    return dataclasses.replace(catalog, products=pd.concat([catalog.products, src]))


def featurisation_rates(paths: list[str], naive_sample: int = 64, sample: int = 512,
                        cache: ArtefactCache | None = None) -> dict:
    """offline-lit photo featurisation, both ways on the same photos (the first ``sample`` of ``paths``):
    ``naive_images_per_s``, the torch eager loop (open, preprocess, ImageTower forward, one photo at a
    time, pooled features only) over the first ``naive_sample``; ``images_per_s``, the bulk path
    (:func:`core.embeddings.lit.photo_features`: decoding threads, batches through ONNX Runtime or its torch
    fallback, pooled and texture outputs); their ratio, and ``runtime`` ("onnxruntime" or "torch").
    The naive loop is also timed on one torch thread (``naive_one_thread_images_per_s``): on a machine
    whose cores are busy, torch's default threads wait on each other at every small operator and the
    loop ran 10-40x slower (measured 0.6-2.4 against 26-29 photos/s), which would flatter the bulk path.
    Loading and any export happen before timing; so does one warm-up batch."""
    import torch

    from core.embeddings.lit.features import FEATURE_BATCH, EagerImageFeatures, photo_features
    from core.embeddings.lit.runtime import create_feature_tower
    from core.embeddings.lit.towers import image_tower
    cache = cache or ArtefactCache()
    tower = create_feature_tower(cache)
    bulk, naive = paths[:sample], paths[:naive_sample]
    photo_features(bulk[:FEATURE_BATCH], tower=tower)  # warm-up: first-run allocations
    t = time.perf_counter()
    photo_features(bulk, tower=tower)
    images_per_s = len(bulk) / (time.perf_counter() - t)
    shim = EagerImageFeatures(image_tower())  # single photos: always the eager forward
    naive_images_per_s(shim, naive[:1])
    naive_rate = naive_images_per_s(shim, naive)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = naive_images_per_s(shim, naive)
    finally:
        torch.set_num_threads(threads)
    return {"runtime": tower.runtime, "runtime_note": tower.reason, "images_per_s": round(images_per_s, 2),
            "naive_images_per_s": round(naive_rate, 2), "speedup_vs_naive": round(images_per_s / naive_rate, 2),
            "naive_one_thread_images_per_s": round(one_thread, 2),
            "speedup_vs_naive_one_thread": round(images_per_s / one_thread, 2), "torch_threads": threads,
            "batch_size": FEATURE_BATCH, "throughput_sample": len(bulk), "naive_sample": len(naive)}


def bench_embed(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                sample: int = 512, naive_sample: int = 64, cfg: BuildConfig = BuildConfig()) -> dict:
    """A cold or warm build, photo throughput (bulk against the naive one-at-a-time loop), a warm rebuild
    and 100 new products. For offline-lit the throughput is its photo featurisation (see
    :func:`featurisation_rates`); for other backbones, ``encode_images`` against ``naive_images_per_s``.
    Times are also given per ``reference_s`` (a fixed numpy workload timed in the same run):
    ``<time>_per_reference`` = seconds / reference_s, ``<rate>_per_reference`` = photos per reference_s."""
    catalog = load_catalog(spec, limit)
    t = time.perf_counter()
    first = build(catalog, backbone, cache, cfg)  # cold or warm; a backbone that learns (offline-lit) is ready after
    first_s = time.perf_counter() - t
    paths = catalog.products["image_path"][catalog.products["image_path"] != ""].tolist()
    if backbone.name == "offline-lit":
        rates = featurisation_rates(paths, naive_sample, sample, cache)
    else:
        encode_images(backbone, paths[:cfg.batch_size], cfg.batch_size, cfg.workers)  # warm-up (and any compile)
        backbone.encode_image(backbone.preprocess(load_image(paths[0]))[None])
        t = time.perf_counter()
        encode_images(backbone, paths[:sample], cfg.batch_size, cfg.workers)
        images_per_s = min(sample, len(paths)) / (time.perf_counter() - t)
        naive = naive_images_per_s(backbone, paths[:naive_sample])
        rates = {"runtime": "torch", "images_per_s": round(images_per_s, 2), "naive_images_per_s": round(naive, 2),
                 "speedup_vs_naive": round(images_per_s / naive, 2), "batch_size": cfg.batch_size,
                 "throughput_sample": min(sample, len(paths)), "naive_sample": min(naive_sample, len(paths))}

    t = time.perf_counter()
    warm = build(load_catalog(spec, limit), backbone, cache, cfg)
    warm_s = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as tmp:
        # a copy of the embedding rows, so the benchmark's new products never enter the real cache
        scratch = ArtefactCache(Path(tmp) / "cache")
        if (cache.root / "rows").is_dir():
            shutil.copytree(cache.root / "rows", scratch.root / "rows")
        grown = with_new_products(catalog, 100, Path(tmp) / "new")
        t = time.perf_counter()
        added = build(grown, backbone, scratch, cfg)
        added_s = time.perf_counter() - t
    ref = reference_s()
    times = {"first_build_s": first_s, "warm_rebuild_s": warm_s, "incremental_s": added_s}
    return {
        "catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name,
        "weights": backbone.weights, "decode_threads": cfg.workers, **rates,
        "first_build_s": round(first_s, 2), "first_build_images_embedded": first.stats.images_embedded,
        "warm_rebuild_s": round(warm_s, 3), "warm_rebuild_images_embedded": warm.stats.images_embedded,
        "warm_rebuild_steps_s": {k: round(v, 3) for k, v in warm.stats.seconds.items()},
        "incremental_added": 100, "incremental_embedded": added.stats.images_embedded,
        "incremental_texts_embedded": added.stats.texts_embedded, "incremental_s": round(added_s, 2),
        "reference_s": round(ref, 4),
        **{f"{k}_per_reference": round(v / ref, 3) for k, v in times.items()},
        "images_per_reference": round(rates["images_per_s"] * ref, 2),
        "naive_images_per_reference": round(rates["naive_images_per_s"] * ref, 2),
    }


def bench_search(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                 n_product: int = 2000, n_text: int = 100, n_photo: int = 50, k: int = 10, seed: int = 0,
                 cfg: BuildConfig = BuildConfig()) -> dict:
    catalog = load_catalog(spec, limit)
    built = build(catalog, backbone, cache, cfg)
    rng = np.random.default_rng(seed)
    ids = rng.choice(built.indexes["image"].ids, size=n_product)
    out = {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name, "k": k,
           "index": cfg.index.factory}

    out |= _percentiles(_timed(lambda pid: built.neighbours(pid, "image", k), ids), "product")
    index = built.indexes["image"]
    vectors = [index.reconstruct(pid) for pid in ids]
    out |= _percentiles(_timed(lambda v: index.search(v, k + 1), vectors), "product_scan")
    sentences = rng.choice(catalog.products["sentence"].to_numpy(), size=n_text)
    queries = [s.split(",")[0] for s in sentences]  # "Strap top: a black solid vest top"
    out |= _percentiles(_timed(lambda q: built.search(built.text_query(q), "image", k), queries), "text")
    text_vectors = [built.text_query(q) for q in queries]
    out |= _percentiles(_timed(lambda v: built.search(v, "image", k), text_vectors), "text_search_only")
    photos = rng.choice(catalog.products["image_path"][catalog.products["image_path"] != ""].to_numpy(),
                        size=n_photo)
    out |= _percentiles(_timed(lambda p: built.search(built.photo_query(p), "image", k), photos), "photo")
    if cfg.index.factory != "Flat":  # what the approximate layout costs in quality, against exact search
        queries = np.stack(vectors)
        exact = VectorIndex(*built.embeddings.matrix("image", cfg.hybrid_weight))
        _, want = exact.search(queries, k + 1)
        _, got = index.search(queries, k + 1)
        out["recall_at_k_vs_exact"] = round(float(np.mean([len(set(w) & set(g)) / len(w)
                                                           for w, g in zip(want, got)])), 4)
    out |= {"n_product_queries": n_product, "n_text_queries": n_text, "n_photo_queries": n_photo}
    return out


def bench_backbone(spec: str | None, cache: ArtefactCache, limit: int | None = None, sample: int = 1024) -> dict:
    """offline-lit: tower throughput, head training, and the held-out evaluation of core.embeddings.quality."""
    from core.embeddings.quality import lit_evaluation
    from core.embeddings.lit import towers
    from core.embeddings.lit.features import catalog_features, image_features
    catalog = load_catalog(spec, limit)
    stages: dict[str, list[float]] = {}

    def progress(stage: str, done: int, total: int) -> None:  # first and last report of each stage
        stages.setdefault(stage, [time.perf_counter(), 0.0, total])[1] = time.perf_counter()

    t0 = time.perf_counter()
    catalog_features(catalog, cache, progress)  # a cold first run computes every product's tower features here
    features_s = time.perf_counter() - t0
    image_stage = stages.get("image features")
    image_tower = towers.image_tower()
    paths = catalog.products["image_path"][catalog.products["image_path"] != ""].tolist()[:sample]
    t = time.perf_counter()
    image_features(image_tower, paths[:64] * (1000 // 64 + 1))  # warm-up: compiles the tower once
    warmup_s = time.perf_counter() - t
    t = time.perf_counter()
    image_features(image_tower, paths if len(paths) >= 1000 else paths * (1000 // len(paths) + 1))
    n = max(len(paths), 1000)
    images_per_s = n / (time.perf_counter() - t)
    out = {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": "offline-lit",
           "features_s": round(features_s, 2),
           # cold runs only: photos featurised in this run, and their rate including the one-off compile
           "cold_images_featurised": image_stage[2] if image_stage else 0,
           "cold_image_features_s": round(image_stage[1] - t0, 2) if image_stage else None,
           "cold_images_per_s": round(image_stage[2] / (image_stage[1] - t0), 2) if image_stage else None, "compile_warmup_s": round(warmup_s, 2),
           "images_per_s": round(images_per_s, 2), "throughput_sample": n}
    return out | lit_evaluation(catalog, cache, recompute=True)


def bench_cluster(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                  kind: str = "hybrid", cfg: BuildConfig = BuildConfig(),
                  cluster: ClusterConfig | None = None) -> dict:
    """The cluster map from a cold map cache (embeddings and neighbour tables come warm from ``cache``):
    seconds per step, clusters, noise, agreement with labels, and DBSCAN's best over its eps grid."""
    from core.explore.clustermap import MapConfig, cluster_map, dbscan_comparison
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
    best = dbscan.loc[dbscan["ari_product_type"].idxmax()] if "ari_product_type" in dbscan and len(dbscan) else None
    return {"catalog": catalog.name, "backbone": backbone.name, "kind": kind, "products": len(cmap.ids),
            "min_cluster_size": cmap.config.min_cluster_size, "min_samples": cmap.config.min_samples,
            "import_s": round(import_s, 2), **{f"{k}_s": round(v, 2) for k, v in cmap.seconds.items()},
            "total_s": round(total_s, 2), "warm_s": round(warm_s, 3), **cmap.scores,
            "dbscan_s": round(dbscan_s, 2), "dbscan_eps_grid": dbscan["eps"].tolist(),
            "dbscan_best_eps": None if best is None else float(best["eps"]),
            "dbscan_best_ari_product_type": None if best is None else float(best["ari_product_type"]),
            "dbscan_best_noise_fraction": None if best is None else float(best["noise_fraction"]),
            "dbscan_best_n_clusters": None if best is None else int(best["n_clusters"])}


def bench_recs(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
               model: str = "graphsage", n_known: int = 1000, n_new: int = 300, k: int = 12, seed: int = 0,
               cfg: BuildConfig = BuildConfig(), progress=None) -> dict:
    """A recommender trained on every purchase (cutoff: midnight after the last one) in a scratch cache, so
    ``train_s`` is a real training (embeddings come warm from ``cache``); then the latency of one
    customer's top-k: a known customer (``score`` of their id, random over customers with purchases) and
    a new one (``score_histories`` of 3 random liked products). Times are also given per ``reference_s``
    (a fixed numpy workload timed in the same run): ``<time>_per_reference`` = seconds / reference_s."""
    from core.recs.contract import cutoff_after, rec_data, require_purchases
    from core.recs.registry import fitted
    catalog = load_catalog(spec, limit)
    require_purchases(catalog, what="bench recs")
    embeddings, _, _ = embed_catalog(catalog, backbone, cache, cfg)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff_after(catalog.purchases),
                    embeddings, cfg.hybrid_weight)
    rss_before = peak_rss_mb()
    with tempfile.TemporaryDirectory(prefix="atelier-bench-recs-") as tmp:
        t = time.perf_counter()
        rec = fitted(model, data, ArtefactCache(tmp), seed, progress)
        train_s = time.perf_counter() - t
    rng = np.random.default_rng(seed)
    known = np.unique(data.customer_ids[data.users]) if len(data.users) else np.empty(0, dtype=str)
    out = {"catalog": catalog.name, "backbone": backbone.name, "model": model, "k": k,
           "n_products": data.n_products, "n_customers": len(data.customer_ids), "n_known_customers": len(known),
           "n_purchases": len(data.purchases), "train_s": round(train_s, 3)}
    own = getattr(rec, "train_s_", None)
    out["model_train_s"] = None if own is None else round(float(own), 3)  # the fit alone, without save and load
    if len(known):
        ids = rng.choice(known, size=n_known)
        out |= _percentiles(_timed(lambda c: rec.recommend([c], k), ids), "known_customer")
    else:
        out |= {"known_customer_p50_ms": None, "known_customer_p99_ms": None}
    likes = [rng.choice(data.n_products, size=min(3, data.n_products), replace=False) for _ in range(n_new)]
    out |= _percentiles(_timed(lambda h: rec.recommend_histories([h], k), likes), "new_customer")
    out |= {"n_known_queries": n_known if len(known) else 0, "n_new_queries": n_new}
    ref = reference_s()
    out["reference_s"] = round(ref, 4)
    out["train_s_per_reference"] = round(train_s / ref, 2)
    for key in ("known_customer_p50_ms", "known_customer_p99_ms", "new_customer_p50_ms", "new_customer_p99_ms"):
        ms = out[key]
        out[key.replace("_ms", "_per_reference")] = None if ms is None else round(ms / 1e3 / ref, 4)
    out |= bench_two_tower(data, rec if model == "two_tower" else None, seed, progress=progress)
    out["two_tower_train_s_per_reference"] = round(out["two_tower_train_s"] / ref, 2)
    out["two_tower_query_p99_per_reference"] = round(out["two_tower_query_p99_ms"] / 1e3 / ref, 4)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    out["peak_rss_before_train_mb"] = round(rss_before, 1)
    children = peak_rss_mb(resource.RUSAGE_CHILDREN)
    out["peak_rss_children_mb"] = round(children, 1)
    out["peak_rss_note"] = ("this process over the whole run (catalogue, embeddings, training, queries)"
                            + (f"; child processes (largest) peaked at {children:.0f} MB, not included"
                               if children > 0 else "; no child processes"))
    return out


def ann_layouts(n: int) -> list:
    """The approximate layouts bench recs measures against exact search, each at a few search widths:
    HNSW at efSearch 64, 128, 256, and IVF with as many lists as FAISS can train from ``n`` vectors (it
    wants 39 per list), at most 256, probing 1/16 and 1/4 of them."""
    from core.embeddings.index import IndexConfig
    lists = min(256, max(1, n // 39))
    return [IndexConfig("HNSW32", ef_search=ef) for ef in (64, 128, 256)] + \
        [IndexConfig(f"IVF{lists},Flat", nprobe=max(1, lists // d)) for d in (16, 4)]


def ann_recall(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Mean share of each row's exact top-k (rows (q, k) int64) that the approximate top-k also holds."""
    hits = [len(np.intersect1d(e[e >= 0], a[a >= 0])) / max(int((e >= 0).sum()), 1) for e, a in zip(exact, approximate)]
    return float(np.mean(hits)) if hits else float("nan")


def bench_two_tower(data, model=None, seed: int = 0, k: int = 100, n_queries: int = 1000, layouts: list | None = None,
                    min_recall: float = 0.95, progress=None) -> dict:
    """The two-tower model's training time (``model`` if given, else trained on ``data`` here, uncached),
    the latency of one customer vector's top-``k`` from its exact FAISS index over the whole catalogue
    (``two_tower_query_p50_ms`` / ``_p99_ms``, random customers), and for each approximate layout
    (:func:`ann_layouts`) its recall of the exact top-k over every customer and its latency;
    ``ann_layout`` is the fastest (p99) with recall >= ``min_recall`` (else the most accurate), and
    ``ann_recall_vs_exact`` its recall."""
    from core.embeddings.index import VectorIndex
    from core.recs.two_tower import TwoTowerConfig, TwoTowerRecommender
    if model is None:
        model = TwoTowerRecommender(TwoTowerConfig(seed=seed)).fit(data, progress)
    vectors = model.customer_vectors()
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), size=n_queries)]
    out = {"two_tower_train_s": round(model.train_s_, 3), "two_tower_k": k,
           "two_tower_index": model.index_cfg.factory, "two_tower_dim": int(vectors.shape[1])}
    out |= _percentiles(_timed(lambda q: model.index_.search(q[None], k), queries), "two_tower_query")
    _, exact = model.index_.search(vectors, k)
    measured = {}
    for cfg in layouts or ann_layouts(len(model.item_vectors_)):
        t = time.perf_counter()
        index = VectorIndex(model.item_vectors_, model.product_ids_, cfg)
        build_s = time.perf_counter() - t
        _, approx = index.search(vectors, k)
        width = f"nprobe={cfg.nprobe}" if "IVF" in cfg.factory else f"efSearch={cfg.ef_search}"
        measured[f"{cfg.factory} {width}"] = {
            "recall_vs_exact": round(ann_recall(exact, approx), 4), "build_s": round(build_s, 3),
            **_percentiles(_timed(lambda q: index.search(q[None], k), queries), "query")}
    good = [name for name, m in measured.items() if m["recall_vs_exact"] >= min_recall]
    best = min(good, key=lambda n: measured[n]["query_p99_ms"]) if good else \
        max(measured, key=lambda n: measured[n]["recall_vs_exact"], default=None)
    return out | {"ann_layouts": measured, "ann_layout": best,
                  "ann_recall_vs_exact": None if best is None else measured[best]["recall_vs_exact"],
                  "ann_query_p99_ms": None if best is None else measured[best]["query_p99_ms"]}


TEXTURE_KEYS = ("pattern_agreement_at_10", "pattern_agreement_chance", "pattern_sensitivity", "pair_auc",
                "probe_balanced_accuracy", "zero_shot_balanced_accuracy", "type_agreement_at_10")
PHOTO_KINDS = ("photo", "texture", "texture descriptor only", "photo + texture descriptor", "photo + pattern head")


def best_photo_kind(table: pd.DataFrame, tolerance: float = 0.02) -> str:
    """The photo-only kind (no product sentence, which names the pattern outright) with the best pattern
    agreement@10 among those whose type agreement@10 is within ``tolerance`` of the plain photo's."""
    table = table.set_index("kind")
    photo = table.loc[[k for k in PHOTO_KINDS if k in table.index]]
    ok = photo[photo["type_agreement_at_10"] >= table.at["photo", "type_agreement_at_10"] - tolerance]
    return str(ok["pattern_agreement_at_10"].idxmax())


def bench_texture(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
                  label: str = "pattern", cfg: BuildConfig = BuildConfig(), progress=None) -> dict:
    """The texture report's headline numbers per kind (held-out products; see core.explore.texture.texture_report),
    the winning photo kind, the cold texture pass over every photo (in a scratch cache: pooled and
    texture features in one pass) and the featurisation rates, bulk against the torch eager loop."""
    from core.embeddings.lit.features import catalog_texture_features
    from core.explore.texture import texture_report
    catalog = load_catalog(spec, limit)
    reference = reference_s()
    paths = catalog.products["image_path"][catalog.products["image_path"] != ""].tolist()
    rates = featurisation_rates(paths, cache=cache)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        catalog_texture_features(catalog, ArtefactCache(Path(tmp) / "cache"), views=cfg.texture.views)
        texture_s = time.perf_counter() - t
    built = build(catalog, backbone, cache, cfg, progress)
    t = time.perf_counter()
    report = texture_report(built, cache, label, progress=progress)
    report_s = time.perf_counter() - t
    table = report["table"]
    kinds = {row["kind"]: {key: (None if pd.isna(row[key]) else round(float(row[key]), 4)) for key in TEXTURE_KEYS}
             for _, row in table.iterrows()}
    best = best_photo_kind(table)
    return {"catalog": catalog.name, "n_items": len(catalog.products), "backbone": backbone.name, "label": label,
            "split": report["split"], "weights": report["weights"], "views": list(cfg.texture.views), "kinds": kinds, "best_kind": best,
            "texture_features_s": round(texture_s, 2), "texture_features_photos": len(paths),
            "images_per_s": rates["images_per_s"], "naive_images_per_s": rates["naive_images_per_s"],
            "speedup_vs_naive": rates["speedup_vs_naive"], "runtime": rates["runtime"],
            "report_s": round(report_s, 2), "reference_s": round(reference, 4),
            "texture_features_s_per_reference": round(texture_s / reference, 1)}


DEMO_MODELS = ("graphsage", "two_tower", "content", "popularity")


def bench_demo(spec: str | None, backbone: Backbone, cache: ArtefactCache, limit: int | None = None,
               models: tuple[str, ...] = DEMO_MODELS, demo=None, progress=None) -> dict:
    """:mod:`core.recs.demo`'s measures of the default split's models: each fitted on the purchases before
    ``SplitConfig().cutoff`` through :func:`core.recs.contract.fitted` with ``cache`` and the demo's seed (the
    artefacts the evaluation trains, so nothing is trained twice). ``taste_overlap`` and ``taste_fit``
    per model; ``added_product_rank`` per model that places new products (``core.recs.demo.AddsProducts``);
    ``fit_s`` per model (a load when cached), ``n_products``, the counts and seed used, ``seconds``."""
    from core.recs.demo import AddsProducts, DemoConfig, added_product_rank, taste_overlap, taste_fit
    from core.recs.evaluate import EvalConfig
    from core.recs.contract import rec_data, require_purchases
    from core.recs.registry import fitted
    demo = demo or DemoConfig()
    t0 = time.perf_counter()
    evaluation = EvalConfig()
    catalog = load_catalog(spec, limit)
    require_purchases(catalog, evaluation.split.cutoff, "bench demo")
    embeddings, _, _ = embed_catalog(catalog, backbone, cache)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, evaluation.split.cutoff, embeddings,
                    evaluation.hybrid_weight)
    types, colours = (data.products[c].fillna("").astype(str).to_numpy() if c in data.products
                      else np.full(data.n_products, "") for c in ("product_type", "colour"))
    out = {"catalog": catalog.name, "backbone": backbone.name, "cutoff": evaluation.split.cutoff,
           "seed": demo.seed, "n_products": data.n_products, "k": demo.k, "n_liked": demo.n_liked,
           "taste_pairs": demo.n_pairs, "taste_customers": demo.n_customers, "added_products": demo.n_added,
           "added_near": demo.n_near, "added_max_customers": demo.max_buyers, "rank_under": demo.rank_under,
           "models": list(models), "fit_s": {}, "taste_overlap": {}, "taste_fit": {}, "added_product_rank": {},
           "seconds_per_model": {}}
    for name in models:
        t = time.perf_counter()
        model = fitted(name, data, cache, demo.seed, progress)
        out["fit_s"][name] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        overlap, fit = taste_overlap(model, types, colours, demo), taste_fit(model, types, colours, demo)
        out["taste_overlap"][name] = None if overlap is None else round(overlap, 4)
        out["taste_fit"][name] = None if fit is None else round(fit, 4)
        if isinstance(model, AddsProducts):
            added = added_product_rank(model, data, demo)
            out["added_product_rank"][name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in added.items()}
        out["seconds_per_model"][name] = round(time.perf_counter() - t, 2)
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
