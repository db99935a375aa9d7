"""Warm-up: what every page opens with, computed right after a build, in the order the pages need it.

A build gives the embeddings, indexes and neighbour tables (Catalogue and Neighbours need nothing more).
The stages here compute, into the artefact cache, what the other pages would otherwise compute on a visit:
the cluster map the Clusters page opens on, the backbone's held-out evaluation, the texture report, the
recommenders on the evaluation split with their evaluation, and last the maps of the other embedding kinds.
A stage whose result is cached already takes the time of a lookup. ``python -m core build`` runs them after
publishing its version; the app runs them in the background after its own build.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from core.cache import ArtefactCache
from core.embeddings.pipeline import Built
from core.progress import Progress

log = logging.getLogger(__name__)
STATES = ("queued", "running", "done", "failed")
# The learned recommenders the Cold start page opens with, fitted before the evaluation (which loads them): the
# page's demo is warm minutes before its "How good is it" section. The baselines fit in seconds on a visit.
DEMO_MODELS = ("graphsage", "two_tower")
# The first evaluation's seeds: one, so "How good is it" has numbers minutes after the demo (its seed-0 fits are the
# demo's); the full evaluation (three seeds, as the page asks for) comes last and replaces it.
FIRST_SEEDS = (0,)


@dataclass
class Task:
    """A named computation and its state while it waits, runs and after: what a status panel shows and a page
    waits on. Progress (``step``, ``done`` of ``total``) comes from the computation's own reports; one that
    reports none still shows for how long it has been running. ``page``: the page its result warms;
    ``key``: what it computes, for a page asking whether its result is on the way."""
    name: str
    compute: Callable[[Progress], Any] = field(repr=False)
    page: str = ""
    key: tuple = ()
    state: str = "queued"  # one of STATES
    step: str = ""
    done: int = 0
    total: int = 0
    started_at: float | None = None  # time.monotonic()
    ended_at: float | None = None
    error: str | None = None
    result: Any = field(default=None, repr=False)

    def progress(self, step: str, done: int, total: int) -> None:
        self.step, self.done, self.total = step, done, total

    def seconds(self) -> float:
        """How long it ran (so far, while running); 0 while queued."""
        if self.started_at is None:
            return 0.0
        return (self.ended_at or time.monotonic()) - self.started_at

    def describe_error(self, e: Exception) -> str:
        return f"{e.__class__.__name__}: {e}"

    def run(self, observer: Progress | None = None) -> None:
        """Compute here (in the caller's thread); a failure is kept in ``error`` and logged, never raised.
        ``observer`` also receives the progress, as ("<name>: <step>", done, total)."""
        self.state, self.started_at = "running", time.monotonic()

        def progress(step: str, done: int, total: int) -> None:
            self.progress(step, done, total)
            if observer:
                observer(step if step.startswith(self.name) else f"{self.name}: {step}" if step else self.name,
                         done, total)
        try:
            self.result = self.compute(progress)
            self.state = "done"
        except Exception as e:  # one stage failing must not keep the others from warming their pages
            self.error = self.describe_error(e)
            self.state = "failed"
            log.warning("%s failed", self.name, exc_info=True)
        finally:
            self.ended_at = time.monotonic()


def run_tasks(tasks: Sequence[Task], progress: Progress | None = None) -> dict[str, float]:
    """Run each task in order, one at a time (they share the machine's cores: side by side, the first result
    only comes later); returns each task's seconds. ``progress``: as :meth:`Task.run`'s ``observer``."""
    for task in tasks:
        task.run(progress)
    return {task.name: round(task.seconds(), 2) for task in tasks}


def summary(tasks: Sequence[Task]) -> dict:
    """{"warm": {task: seconds, or "failed: <why>"}, "maps": {kind: n_clusters, noise_fraction, seconds}} of tasks
    that ran: what ``python -m core build`` prints."""
    maps = {t.key[1]: {"n_clusters": t.result.scores["n_clusters"],
                       "noise_fraction": t.result.scores["noise_fraction"], "seconds": round(t.seconds(), 2)}
            for t in tasks if t.key[:1] == ("map",) and t.state == "done"}
    return {"warm": {t.name: round(t.seconds(), 2) if t.state == "done" else f"failed: {t.error}" for t in tasks},
            "maps": maps}


# ---------------------------------------------------------------- the stages of a build

def map_stage(built: Built, cache: ArtefactCache, kind: str) -> Task:
    """The cluster map of ``kind`` with the Clusters page's default settings."""
    from core.explore.clustermap import MapConfig, cluster_map
    return Task(f"cluster map ({kind})", lambda progress: cluster_map(built, cache, MapConfig(kind=kind),
                                                                      progress=progress),
                page="Clusters", key=("map", kind))


def dbscan_stage(built: Built, cache: ArtefactCache, kind: str) -> Task:
    """DBSCAN's comparison with the default map of ``kind`` (the Clusters page's second tab)."""
    from core.explore.clustermap import MapConfig, cluster_map, dbscan_comparison

    def compute(progress: Progress):
        cmap = cluster_map(built, cache, MapConfig(kind=kind))  # cached by the map's stage: a lookup
        progress("DBSCAN over its eps grid", 0, 0)
        return dbscan_comparison(built, cache, cmap)
    return Task(f"DBSCAN comparison ({kind})", compute, page="Clusters", key=("dbscan", kind))


def thumbnail_stage(built: Built, cache: ArtefactCache) -> Task:
    """Small JPEGs of every product's photo, which the map's hover shows (core.explore.thumbnails)."""
    from core.explore.thumbnails import catalog_thumbnails
    return Task("photo thumbnails", lambda progress: catalog_thumbnails(built.catalog.products, cache, progress),
                page="Clusters", key=("thumbnails",))


def backbone_stage(built: Built, cache: ArtefactCache) -> Task:
    """offline-lit's held-out evaluation (the Backbone page)."""
    from core.embeddings.quality import lit_evaluation

    def compute(progress: Progress):
        progress("training heads without the held-out products, then measuring on them", 0, 0)
        return lit_evaluation(built.catalog, cache)
    return Task("backbone evaluation", compute, page="Backbone", key=("backbone",))


def texture_stage(built: Built, cache: ArtefactCache, label: str) -> Task:
    """The texture report for ``label`` (the Texture failures page)."""
    from core.explore.texture import texture_report
    return Task("texture report", lambda progress: texture_report(built, cache, label, progress=progress),
                page="Texture failures", key=("texture", label))


def evaluation_stage(built: Built, cache: ArtefactCache, models: Sequence[str], cutoff: str, end: str,
                     seeds: tuple[int, ...] | None = None) -> Task:
    """The recommenders fitted on the purchases before ``cutoff`` and evaluated on ``[cutoff, end)`` (the
    Cold start page's "How good is it"), with the evaluation's seeds (default: EvalConfig's three) or ``seeds``
    (the quick first evaluation: one seed, shown as such until the full one is there)."""
    from core.recs.evaluate import EvalConfig, evaluate
    from core.recs.split import SplitConfig
    cfg = EvalConfig(split=SplitConfig(cutoff=cutoff, end=end))
    key = ("evaluation", tuple(sorted(models)), cutoff, end)
    if seeds is not None and seeds != cfg.seeds:
        cfg = dataclasses.replace(cfg, seeds=seeds)
        key += (seeds,)
    name = "evaluation" if len(cfg.seeds) > 1 else "evaluation (first, one seed)"
    return Task(name, lambda progress: evaluate(built.catalog, built.embeddings, list(models), cfg, cache, progress),
                page="Cold start", key=key)


def recommender_stage(built: Built, cache: ArtefactCache, name: str, cutoff: str) -> Task:
    """The recommender ``name`` fitted on the purchases before ``cutoff`` as the Cold start page fits it
    (:func:`core.recs.evaluate.as_evaluated`: with the settings a stored evaluation chose, else its defaults;
    seed 0, the evaluation's first fit, so the evaluation loads it rather than training it again)."""
    from core.recs.contract import rec_data
    from core.recs.evaluate import EvalConfig, as_evaluated, cached_evaluation
    from core.recs.registry import label, list_recommenders
    from core.recs.split import SplitConfig

    def compute(progress: Progress):
        catalog = built.catalog
        data = rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff, built.embeddings,
                        EvalConfig().hybrid_weight)
        evaluation = cached_evaluation(catalog, built.embeddings, list_recommenders(),
                                       EvalConfig(split=SplitConfig(cutoff=cutoff)), cache)
        return as_evaluated(name, data, evaluation, cache, progress=progress)
    return Task(f"{label(name)} on the purchases before {cutoff}", compute, page="Cold start",
                key=("recommender", name, cutoff))


def texture_label(built: Built) -> str | None:
    """The label the texture report is warmed for ("pattern" when the catalogue has it), or None when the
    catalogue cannot have one (no texture kind, or no product type and colour to hold fixed)."""
    products = built.catalog.products
    if built.embeddings.texture is None or not {"pattern", "product_type", "colour"} <= set(products.columns):
        return None
    return "pattern" if (products["pattern"] != "").any() else None


def warm_stages(built: Built, cache: ArtefactCache, models: Sequence[str] | None = None,
                map_kinds: Sequence[str] | None = None) -> list[Task]:
    """The stages after ``built``, in the order pages are warmed: the map the Clusters page opens on (the
    quickest page to warm), the photo thumbnails its hover shows and its DBSCAN comparison, the backbone's held-out evaluation (offline-lit only), the texture report, the Cold
    start page's learned recommenders and a first evaluation with one seed on the default split (when there
    are purchases before its cutoff and in its test window), the maps of the other kinds (``map_kinds``,
    default every kind of the build), which a visitor opens less often, and last the full evaluation (the first
    is left out when the full one is cached already). ``models``: the recommenders to evaluate (None: every
    registered one; empty: none, and no recommender is fitted)."""
    from core.embeddings.lit.backbone import LitBackbone
    from core.explore.clustermap import MapConfig
    from core.recs.contract import no_purchases
    from core.recs.evaluate import EvalConfig, cached_evaluation
    from core.recs.registry import list_recommenders
    from core.recs.split import SplitConfig
    kinds = [k for k in (map_kinds if map_kinds is not None else built.kinds) if k in built.kinds]
    first = [k for k in kinds if k == MapConfig().kind]
    stages = [map_stage(built, cache, kind) for kind in first]
    if kinds and built.embeddings.has_image.any():
        stages.append(thumbnail_stage(built, cache))
    stages += [dbscan_stage(built, cache, kind) for kind in first]
    if isinstance(built.backbone, LitBackbone):
        stages.append(backbone_stage(built, cache))
    label = texture_label(built)
    if label is not None:
        stages.append(texture_stage(built, cache, label))
    split = SplitConfig()
    stamps = built.catalog.purchases["timestamp"]
    tested = ((stamps >= pd.Timestamp(split.cutoff)) & (stamps < pd.Timestamp(split.end))).any()
    models = list_recommenders() if models is None else list(models)
    recommend = bool(models) and tested and not no_purchases(built.catalog, split.cutoff)
    if recommend:
        stages += [recommender_stage(built, cache, name, split.cutoff) for name in DEMO_MODELS if name in models]
        if cached_evaluation(built.catalog, built.embeddings, models, EvalConfig(split=split), cache) is None:
            stages.append(evaluation_stage(built, cache, models, split.cutoff, split.end, seeds=FIRST_SEEDS))
    stages += [map_stage(built, cache, kind) for kind in kinds if kind not in first]
    if recommend:
        stages.append(evaluation_stage(built, cache, models, split.cutoff, split.end))
    return stages
