"""The scaling benchmark (``python -m core bench scale --sizes 10000,100000,1000000``): each stage's wall time and
peak memory at each catalogue size, and the growth exponent b of time ~ n^b across sizes.

Features-only mode: photos for a million products cannot be drawn and featurised on 2 cores in a benchmark's time,
so the stages after featurisation run on synthetic features (:func:`synthetic_features`: cluster-structured unit
vectors in place of the embeddings, named as such in the output). The stages that learn from purchases (the purchase
graph, each registered recommender's training, the evaluation's scoring) run on a simulated shop over the same
catalogue (:mod:`core.bench.scale_shop`: customers and purchases in proportion to the products). Each (size, stage)
runs in a fresh interpreter that reads its inputs from a scratch folder and writes its outputs there, so its peak
RSS is its own (its inputs and the modules it imports included; not that of worker processes it starts: HDBSCAN
computes core distances in joblib workers past 16,384 points), and a stage that runs out of time or memory is
reported as such while the others go on.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.bench import scale_photos, scale_shop
from core.bench.command import BenchContext
from core.bench.measure import own_peak_rss_mb, reference_s

DIM = 256  # the shared space of the offline-lit heads (LitConfig.dim): what every stage after them sees
TABLE_K = 50  # neighbours per product in the build's table (BuildConfig.table_k)
FEATURES = "features-only: synthetic cluster-structured unit vectors (core.bench.scale.synthetic_features)"


def synthetic_catalogue(n: int, d: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, d) float32 unit rows shaped like a catalogue's embeddings, (n,) int32 the product type each was drawn
    around and (n,) int32 its variant group: product types of about 400 products, each made of groups of about 8
    variants around a type centre, each product near its group's centre. Neighbour similarities come out close to
    the H&M sample's hybrid embeddings (mean cosine of the 1st, 10th and 50th neighbour 0.82, 0.67, 0.58 at 20,000
    rows; H&M 0.81, 0.71, 0.63), and the local structure does not thin out as n grows (the number of types and
    groups grows with n). Generated in chunks: memory is the output's."""
    rng = np.random.default_rng(seed)
    types = rng.standard_normal((max(1, n // 400), d)).astype(np.float32)
    group_type = rng.integers(0, len(types), max(1, n // 8))
    groups = types[group_type]
    groups += np.float32(0.65) * rng.standard_normal(groups.shape, dtype=np.float32)
    out = np.empty((n, d), np.float32)
    labels = np.empty(n, np.int32)
    members = np.empty(n, np.int32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        group = rng.integers(0, len(groups), m)
        x = groups[group] + np.float32(0.6) * rng.standard_normal((m, d), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        labels[start:start + m] = group_type[group]
        members[start:start + m] = group
    return out, labels, members


def synthetic_features(n: int, d: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The vectors and product types of :func:`synthetic_catalogue`."""
    return synthetic_catalogue(n, d, seed)[:2]


TEXTURE_DIM = 860  # the offline-lit texture descriptor of one view (core.embeddings.lit.descriptor.descriptor_dim)
PATTERNS = ("solid", "stripe", "check", "melange", "dot", "print", "lace", "denim")
PATTERN_SHARES = (0.6, 0.1, 0.08, 0.07, 0.05, 0.04, 0.03, 0.03)  # most garments are plain, as on H&M


def synthetic_descriptors(groups: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Features-only texture descriptors for the products of :func:`synthetic_catalogue` (``groups`` (n,) their
    variant groups): (n, TEXTURE_DIM) float32 and (n,) str pattern labels. Each group has a pattern (most of them
    "solid"), and a descriptor is the square of its pattern's centre plus noise, non-negative as a Gram's entries
    mostly are; the catalogue's vectors do not see the pattern, the situation the texture model is for. Generated
    in chunks: memory is the output's."""
    rng = np.random.default_rng(seed + 1)
    pattern = rng.choice(len(PATTERNS), int(groups.max()) + 1, p=PATTERN_SHARES)[groups]
    centres = rng.standard_normal((len(PATTERNS), TEXTURE_DIM)).astype(np.float32)
    out = np.empty((len(groups), TEXTURE_DIM), np.float32)
    for start in range(0, len(groups), 100_000):
        stop = min(start + 100_000, len(groups))
        x = centres[pattern[start:stop]] + rng.standard_normal((stop - start, TEXTURE_DIM), dtype=np.float32)
        out[start:stop] = x * x
    return out, np.asarray(PATTERNS)[pattern]


def synthetic_tower_features(n: int, seed: int = 0
                             ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """Features-only inputs of the offline-lit heads for ``n`` products: (n, 1280) photo features shaped as
    :func:`synthetic_catalogue`'s vectors (scaled to entries of about 1); (n, 384) sentence features, a fixed linear
    map of the photo's plus noise (a pairing to learn); two caption kinds (n, 384), the same map of the product
    type's centre plus noise (as "a striped dress" names a kind, not a product); and (n,) str variant groups."""
    from scipy.sparse import csr_matrix

    from core.embeddings.lit.towers import IMAGE_FEATURES, TEXT_FEATURES
    image, types, groups = synthetic_catalogue(n, IMAGE_FEATURES, seed)
    image *= np.float32(np.sqrt(IMAGE_FEATURES))  # entries of about unit size, as pooled features have
    rng = np.random.default_rng(seed + 2)
    to_text = (rng.standard_normal((IMAGE_FEATURES, TEXT_FEATURES)) / np.sqrt(IMAGE_FEATURES)).astype(np.float32)
    members = csr_matrix((np.ones(n, np.float32), (types, np.arange(n))))  # (types, n): each type's products
    centres = ((members @ image) @ to_text / np.maximum(np.bincount(types), 1)[:, None]).astype(np.float32)
    text = np.empty((n, TEXT_FEATURES), np.float32)
    captions = [np.empty((n, TEXT_FEATURES), np.float32) for _ in range(2)]
    for start in range(0, n, 100_000):
        stop = min(start + 100_000, n)
        shape = (stop - start, TEXT_FEATURES)
        text[start:stop] = image[start:stop] @ to_text + np.float32(0.5) * rng.standard_normal(shape, dtype=np.float32)
        for caption in captions:
            noise = np.float32(0.5) * rng.standard_normal(shape, dtype=np.float32)
            caption[start:stop] = centres[types[start:stop]] + noise
    return image, text, captions, groups.astype(str)


# ---------------------------------------------------------------- the stages, each in a process of its own

def _features(scratch: Path, n: int) -> dict:
    vectors, types, groups = synthetic_catalogue(n)
    np.save(scratch / "vectors.npy", vectors)
    np.save(scratch / "types.npy", types)
    np.save(scratch / "groups.npy", groups)
    return {}


def _shop(scratch: Path, n: int) -> dict:
    from core.bench.scale_shop import save_shop
    return save_shop(scratch, np.load(scratch / "types.npy"), np.load(scratch / "groups.npy"))


def _vectors(scratch: Path) -> np.ndarray:
    return np.load(scratch / "vectors.npy")


def _index(scratch: Path, n: int) -> dict:
    from core.embeddings.index import VectorIndex
    vectors = _vectors(scratch)
    t = time.perf_counter()
    VectorIndex(vectors, np.arange(n).astype(str))  # the build's own (exact) index, for queries
    return {"seconds": time.perf_counter() - t}


def _heads(scratch: Path, n: int) -> dict:
    """The offline-lit heads' training (:func:`core.embeddings.lit.heads.fit_heads_on`: the epochs chosen on a
    held-out share of the groups, then a fit on every product) over :func:`synthetic_tower_features` (made before
    the clock starts)."""
    from core.embeddings.lit.heads import LitConfig, TrainingFeatures, fit_heads_on
    image, text, captions, groups = synthetic_tower_features(n)
    features = TrainingFeatures(image, text, np.ones(n, bool), captions, {}, groups)
    t = time.perf_counter()
    _, history = fit_heads_on(features, np.ones(n, bool), LitConfig())
    return {"seconds": time.perf_counter() - t, "epochs": len(history), "pairs": n * (1 + len(captions))}


def _texture(scratch: Path, n: int) -> dict:
    """The texture model (:func:`core.embeddings.texture.fit_texture_model`: weights chosen on a validation split of
    the labelled products, then the PCA and the pattern head fitted on them, on a sample past
    ``TextureConfig.fit_sample``) over synthetic descriptors
    (:func:`synthetic_descriptors`; made before the clock starts)."""
    from core.embeddings.texture import fit_texture_model
    groups = np.load(scratch / "groups.npy")
    descriptors, patterns = synthetic_descriptors(groups)
    types = np.load(scratch / "types.npy").astype(str)
    vectors = _vectors(scratch)
    t = time.perf_counter()
    state = fit_texture_model(vectors, descriptors, patterns, groups.astype(str), types)
    chosen = state["selection.chosen"].astype(bool)
    return {"seconds": time.perf_counter() - t, "descriptor_dim": TEXTURE_DIM,
            "weights": [round(float(w), 2) for w in state["weights"]],
            "pattern_agreement": round(float(state["selection.pattern_agreement"][chosen][0]), 4),
            "photo_pattern_agreement": round(float(state["selection.pattern_agreement"][0]), 4)}


def _table(scratch: Path, n: int) -> dict:
    """The build's neighbour table (:func:`build_neighbour_table`: its own index past EXACT_TABLE_LIMIT, and the
    recall check of an approximate one), with the build's exact index held as the build holds it (not timed)."""
    from core.embeddings.index import IndexConfig, VectorIndex, build_neighbour_table, table_index_config
    vectors = _vectors(scratch)
    index = VectorIndex(vectors, np.arange(n).astype(str), IndexConfig())  # BuildConfig's default index
    t = time.perf_counter()
    on = table_index_config(n, index.cfg)
    table = build_neighbour_table(index, vectors, TABLE_K, on)
    seconds = time.perf_counter() - t
    np.save(scratch / "rows.npy", table["rows"])
    np.save(scratch / "scores.npy", table["scores"])
    recall = float(table.get("recall_at_10", 1.0))  # an exact table is its own reference
    return {"seconds": seconds, "index": on.factory, "recall_at_10": round(recall, 4)}


def _compile_umap(dims: int, min_dist: float) -> None:
    """UMAP's numba functions compiled on a small input, both ways (a full fit from a neighbour table, a sampled fit
    placing the rest): compiling takes tens of seconds once per process, the same at every size, and would
    otherwise count as the stage's time and flatten its growth."""
    from core.embeddings.index import VectorIndex, neighbour_table
    from core.explore.projection import ProjectConfig, knn_from_table, umap_project
    x, _ = synthetic_features(5000, 16, seed=1)  # past 4,096 rows UMAP takes the path of large inputs (NN-descent)
    table = neighbour_table(VectorIndex(x, np.arange(len(x)).astype(str)), x, 15)
    umap_project(x, dims, min_dist, ProjectConfig(), knn_from_table(table["rows"], table["scores"], 15))
    umap_project(x, dims, min_dist, ProjectConfig(sample_limit=4500))


def _projection(dims: int, min_dist: float, out: str) -> Callable[[Path, int], dict]:
    def run(scratch: Path, n: int) -> dict:
        from core.explore.projection import ProjectConfig, knn_from_table, umap_project
        _compile_umap(dims, min_dist)
        vectors, cfg = _vectors(scratch), ProjectConfig()
        knn = knn_from_table(np.load(scratch / "rows.npy"), np.load(scratch / "scores.npy"), cfg.n_neighbors)
        t = time.perf_counter()
        points = umap_project(vectors, dims, min_dist, cfg, knn)
        np.save(scratch / out, points)
        return {"seconds": time.perf_counter() - t, "fitted_on": min(n, cfg.sample_limit)}
    return run


def _clustering(scratch: Path, n: int) -> dict:
    from core.explore.cluster import FIT_SAMPLE_LIMIT, hdbscan_clusters
    points = np.load(scratch / "points10.npy")
    hdbscan_clusters(synthetic_features(600, 10, seed=1)[0], sample_limit=300)  # its first call imports and warms up
    t = time.perf_counter()
    got = hdbscan_clusters(points)
    return {"seconds": time.perf_counter() - t, "fitted_on": min(n, FIT_SAMPLE_LIMIT),
            "n_clusters": got.n_clusters, "noise_fraction": round(got.noise_fraction, 4)}


MIN_SAMPLE = 1000  # the smallest sample the agreement check fits on
AGREEMENT_MAX = 200_000  # the largest size at which the sampled map is compared with a full fit (minutes there)


def _agreement(scratch: Path, n: int) -> dict:
    """The sampled path against a full fit at ``n`` (at most AGREEMENT_MAX): clusters of a full 10-D UMAP and a
    full HDBSCAN against those of UMAP fitted on half the rows placing the rest and HDBSCAN fitted on half the
    points predicting the rest (adjusted Rand index; 1 is the same partition, noise counted as a cluster of its
    own). Half, so that the sampled path runs at a size where the full one can be afforded. Both against the
    product types the features were drawn around too (``ari_*_vs_types``): where the two paths disagree, this says
    which of them found the structure that is there."""
    from sklearn.metrics import adjusted_rand_score
    from core.explore.cluster import hdbscan_clusters
    from core.explore.projection import ProjectConfig, umap_project
    if n > AGREEMENT_MAX or n < 2 * MIN_SAMPLE:
        return {"seconds": 0.0, "skipped": f"measured from {2 * MIN_SAMPLE:,} to {AGREEMENT_MAX:,} products"}
    _compile_umap(10, 0.0)
    full_points = np.load(scratch / "points10.npy")  # the projection 10-D stage's (a full fit up to its limit)
    t = time.perf_counter()
    full = hdbscan_clusters(full_points, sample_limit=n)
    half = n // 2
    sampled_points = umap_project(_vectors(scratch), 10, 0.0, ProjectConfig(sample_limit=half))
    sampled = hdbscan_clusters(sampled_points, sample_limit=half)
    both_full_umap = hdbscan_clusters(full_points, sample_limit=half)
    types = np.load(scratch / "types.npy")
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "sample": half, "types": int(len(np.unique(types))),
            "ari_full_vs_types": round(adjusted_rand_score(types, full.labels), 4),
            "ari_sampled_umap_and_hdbscan_vs_types": round(adjusted_rand_score(types, sampled.labels), 4),
            "ari_sampled_hdbscan_only_vs_types": round(adjusted_rand_score(types, both_full_umap.labels), 4),
            "full_umap_fitted_on": min(n, ProjectConfig().sample_limit),
            "ari_sampled_umap_and_hdbscan": round(adjusted_rand_score(full.labels, sampled.labels), 4),
            "ari_sampled_hdbscan_only": round(adjusted_rand_score(full.labels, both_full_umap.labels), 4),
            "clusters_full": full.n_clusters, "clusters_sampled": sampled.n_clusters,
            "noise_full": round(full.noise_fraction, 4), "noise_sampled": round(sampled.noise_fraction, 4)}


# name -> run; in order: a stage after the ones it reads from (NEEDS)
STAGES: dict[str, Callable[[Path, int], dict]] = {
    "index": _index,
    "heads": _heads,
    "texture model": _texture,
    "neighbour table": _table,
    "projection 2-D": _projection(2, 0.1, "points2.npy"),
    "projection 10-D": _projection(10, 0.0, "points10.npy"),
    "clustering": _clustering,
    "sampled against full": _agreement,
    "shop": _shop,
    "graph": scale_shop.graph_stage,
    **{f"fit {name}": scale_shop.fit_stage(name) for name in scale_shop.RECOMMENDERS},
    "evaluation scoring": scale_shop.scoring_stage("content"),  # its fit is a copy: the stage is the scoring
    "evaluation scoring by index": scale_shop.scoring_stage("two_tower", from_index=True),
}
NEEDS = {"neighbour table": (), "index": (), "heads": (), "texture model": (), "projection 2-D": ("neighbour table",),
         "projection 10-D": ("neighbour table",), "clustering": ("projection 10-D",),
         "sampled against full": ("projection 10-D",), "shop": (), "graph": ("shop",),
         **{f"fit {name}": ("shop",) for name in scale_shop.RECOMMENDERS}, "evaluation scoring": ("shop",),
         "evaluation scoring by index": ("shop",)}
# not stages of a build, so no growth exponent: a measurement of the others, and the simulated shop's purchases
CHECKS = {"sampled against full", "shop"}


def _child(name: str, scratch: str, n: int, result: str) -> None:
    """A stage in this (fresh) process, which leads a session of its own (so a timeout stops the workers it may
    start, such as HDBSCAN's core-distance processes); its result, with this process's peak RSS (not its
    workers'), as JSON in ``result``."""
    rss_before = own_peak_rss_mb()  # the interpreter and the modules it imported on start
    setup = {"features": _features, "towers": scale_photos.export_stage}
    fn = setup.get(name) or STAGES.get(name) or scale_photos.STAGES[name]
    t = time.perf_counter()
    out = fn(Path(scratch), n)
    out.setdefault("seconds", time.perf_counter() - t)
    out["seconds"] = round(out["seconds"], 2)
    out["peak_rss_mb"] = round(own_peak_rss_mb(), 1)
    out["rss_at_start_mb"] = round(rss_before, 1)
    Path(result).write_text(json.dumps(out))
    # Out now, past the exit handlers: multiprocessing's joins loky's resource tracker (started by HDBSCAN's
    # core-distance workers), which waits for this process to end first, and the stage would hang there.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


ROOT = Path(__file__).resolve().parents[2]  # the project: what a stage process imports ``core`` from


def run_stage(name: str, scratch: Path, n: int, timeout_s: float) -> dict:
    """One stage at size ``n`` in a fresh interpreter (not multiprocessing: its spawn would run the parent's
    ``__main__`` again, which under pytest after an AppTest is the app script), leading a session of its own:
    its result, or {"failed": why}."""
    result = scratch / f"{name}.json"
    result.unlink(missing_ok=True)
    code = f"from core.bench.scale import _child; _child({name!r}, {str(scratch)!r}, {n}, {str(result)!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the stage and any workers it started
        except ProcessLookupError:
            pass
        process.wait()
        return {"failed": f"not done after {timeout_s:.0f} s"}
    if process.returncode != 0 or not result.exists():
        killed = process.returncode < 0
        return {"failed": "killed (out of memory?)" if killed else f"exit code {process.returncode}"}
    return json.loads(result.read_text())


def growth_exponent(sizes: list[int], seconds: list[float]) -> float | None:
    """b of the least-squares fit of log(seconds) = a + b log(size); None with fewer than two sizes."""
    pairs = [(n, s) for n, s in zip(sizes, seconds) if s is not None and s > 0]
    if len(pairs) < 2:
        return None
    x, y = np.log([p[0] for p in pairs]), np.log([p[1] for p in pairs])
    return round(float(np.polyfit(x, y, 1)[0]), 3)


def bench_scale(sizes: list[int], stages: list[str] | None = None, timeout_s: float = 3600.0,
                root: str | None = None, progress: Callable[[str, int, int], None] | None = None,
                photo_sizes: Sequence[int] = (), catalogue: str | None = None) -> dict:
    """Every stage (default all of :data:`STAGES` and of :data:`core.bench.scale_photos.STAGES`) at every size:
    per stage and size the seconds and peak RSS (MB) of its process, per stage the growth exponent over all sizes
    and between the two largest ("exponent_last"), and ``reference_s`` (:func:`core.bench.measure.reference_s`)
    before and after. The stages after featurisation run in features-only mode at ``sizes``; featurisation runs
    on the real photos and sentences of ``catalogue`` (a spec for :func:`core.data.load.load_catalog`) at
    ``photo_sizes`` (under "featurisation")."""
    everything = [*STAGES, *scale_photos.STAGES]
    unknown = [s for s in stages or [] if s not in everything]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; the stages are {everything}")
    if stages is not None and not photo_sizes and any(s in scale_photos.STAGES for s in stages):
        raise ValueError(f"{[s for s in stages if s in scale_photos.STAGES]} run at the photo sizes; none were given")
    stages = everything if stages is None else stages
    real = [s for s in scale_photos.STAGES if s in stages and photo_sizes]
    stages = [s for s in stages if s in STAGES]
    wanted = set(stages)  # with the stages whose outputs they read, and theirs: computed too, and reported
    while needed := {t for s in wanted for t in NEEDS[s]} - wanted:
        wanted |= needed
    order = [s for s in STAGES if s in wanted]
    before = reference_s()
    table: dict[str, dict] = {s: {} for s in order}
    setup = {}
    steps, done = (len(sizes) * (len(order) + 1) if order else 0) + len(real) * len(photo_sizes), 0
    featurisation = _featurisation(real, sorted(photo_sizes), catalogue, timeout_s, root,
                                   lambda i: progress("stages x sizes", i, steps) if progress else None)
    done += len(real) * len(photo_sizes)
    for n in sorted(sizes) if order else []:
        scratch = Path(tempfile.mkdtemp(prefix="atelier-bench-scale-", dir=root))
        try:
            setup[str(n)] = run_stage("features", scratch, n, timeout_s)
            done += 1
            for name in order:
                if progress:  # one step name: one bar
                    progress("stages x sizes", done, steps)
                failed = [t for t in NEEDS[name] if "failed" in table[t].get(str(n), {"failed": "not run"})]
                failed = ["features"] if "failed" in setup[str(n)] else failed
                table[name][str(n)] = {"failed": f"needs {failed[0]}"} if failed else run_stage(name, scratch, n,
                                                                                               timeout_s)
                done += 1
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    for name, runs in table.items():
        if name not in CHECKS:
            _exponents(runs)
    if progress:
        progress("stages x sizes", steps, steps)
    after = reference_s()
    return {"mode": FEATURES, "dim": DIM, "sizes": sorted(sizes), "features": setup, "stages": table,
            **({"featurisation": featurisation} if real else {}),
            "reference_s": round(min(before, after), 4), "reference_s_before": round(before, 4),
            "reference_s_after": round(after, 4)}


def _exponents(runs: dict[str, dict]) -> None:
    """A stage's growth exponents over its sizes' runs (those that finished), added to ``runs``."""
    measured = sorted((int(n), r["seconds"]) for n, r in runs.items() if "seconds" in r)
    runs["exponent"] = growth_exponent([m[0] for m in measured], [m[1] for m in measured])
    runs["exponent_last"] = growth_exponent([m[0] for m in measured[-2:]], [m[1] for m in measured[-2:]])


def _featurisation(stages: list[str], sizes: list[int], catalogue: str | None, timeout_s: float, root: str | None,
                   step: Callable[[int], None]) -> dict:
    """The featurisation stages (:mod:`core.bench.scale_photos`) at each size the catalogue has photos for, each
    in a process of its own sharing one folder (its store, emptied of features before each stage, and the towers'
    ONNX exports, made once first in a process of their own: "towers" in the output)."""
    if not stages:
        return {}
    from core.data.load import default_catalog_spec
    catalogue = catalogue or default_catalog_spec()
    available = scale_photos.photo_count(catalogue)
    table: dict[str, dict] = {s: {} for s in stages}
    shared = Path(tempfile.mkdtemp(prefix="atelier-bench-scale-photos-", dir=root))
    try:
        (shared / scale_photos.CATALOGUE_FILE).write_text(catalogue)
        towers = run_stage("towers", shared, 0, timeout_s)
        for i, (n, name) in enumerate((n, name) for n in sizes for name in stages):
            step(i)
            if "failed" in towers:
                table[name][str(n)] = {"failed": "needs towers"}
            elif n > available:
                table[name][str(n)] = {"failed": f"the catalogue has {available:,} products with a photo"}
            else:
                table[name][str(n)] = run_stage(name, shared, n, timeout_s)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    for runs in table.values():
        _exponents(runs)
    return {"mode": scale_photos.REAL, "catalogue": catalogue, "products_with_photo": available, "sizes": sizes,
            "towers": towers, "stages": table}


def _sizes(text: str, least: int, flag: str = "--sizes") -> list[int]:
    """Comma-separated sizes (``_`` allowed as a separator of thousands), each at least ``least``."""
    try:
        sizes = [int(s.strip().replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        sizes = [-1]
    if sizes and min(sizes) < least:
        raise SystemExit(f"error: {flag} takes comma-separated whole numbers of products, each at least {least} "
                         f"(got '{text}')")
    return sizes


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    sizes = _sizes(args.sizes, 100)
    if not sizes:
        raise SystemExit("error: --sizes takes comma-separated catalogue sizes of at least 100 products")
    photo_sizes = _sizes(args.photo_sizes, 1, "--photo-sizes")
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else None
    try:
        return bench_scale(sizes, stages, args.stage_timeout, progress=ctx.progress(), photo_sizes=photo_sizes,
                           catalogue=ctx.spec)
    except ValueError as e:
        raise SystemExit(f"error: {e}")
