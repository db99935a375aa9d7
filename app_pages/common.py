"""App-side state: the st.cache_* wrappers around core, the background build, and the sidebar."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import pandas as pd
import streamlit as st

from core.astlock import guard_ast_parse
from core.cache import ArtefactCache
from core.data.catalog import Catalog, CatalogError
from core.data.exports import PRODUCT_FORMATS, make_spec, mapping, parse_spec, read_as
from core.data.load import CATALOG_ENV, default_catalog_spec, load_catalog
from core.distributed.connect import RAY_ENV, Cluster, ClusterError, connect, ray_address
from core.executor import use
from core.explore.cluster import ClusterConfig
from core.explore.clustermap import ClusterMap, MapConfig, cluster_map, dbscan_comparison
from core.embeddings.backbone import Backbone, WeightsUnavailable
from core.embeddings.registry import create_backbone
from core.embeddings.pipeline import Built, build
from core.recs.contract import RecData, Recommender, rec_data
from core.progress import Progress
from core.warmup import Task
from core.explore.product import TILE_ATTRS
from app_pages.product import build_key, md, view_button  # build_key lives there: product cannot import this module
from core.recs.queries import product_audience, purchase_counts
from core.recs.registry import create_recommender, list_recommenders
from core.recs.report import EvalReport

BACKBONE_ENV = "ATELIER_BACKBONE"
GRID_COLUMNS = 6
guard_ast_parse()  # the build thread parses (imports, .npz headers) while the script thread compiles pages


@st.cache_resource(show_spinner="Loading the catalogue…", max_entries=4)
def get_catalog(spec: str) -> Catalog:
    return load_catalog(spec)


@st.cache_data(show_spinner=False, max_entries=16, ttl=60)
def get_export_reading(spec: str) -> tuple[str, bool, str] | None:
    """:func:`core.data.exports.read_as`: the sidebar asks at every rerun, and it reads the files' headers."""
    return read_as(spec)


@dataclass
class Job(Task):
    """A long computation (fitting a recommender, an evaluation, a warm-up stage) in a background thread: the page
    shows its progress and stays usable, and leaving the page does not stop it. ``result`` once ``finished``."""
    waited: bool = False  # the first page to ask waits a moment, so quick jobs never flash a progress bar
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        return self.state == "done"

    def describe_error(self, e: Exception) -> str:
        if isinstance(e, WeightsUnavailable):  # its message says what was tried and what to do
            return str(e)
        return super().describe_error(e)

    def start(self) -> "Job":
        self.thread = threading.Thread(target=self.run, daemon=True, name=f"atelier-{self.name}")
        self.thread.start()
        return self

    def wait_once(self, seconds: float) -> None:
        if not self.waited and self.thread is not None:
            self.waited = True
            self.thread.join(seconds)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"


def job_line(job: Job) -> str:
    """What a job is doing, in one line: its step and count, or for how long it has been at it."""
    if job.state == "queued":
        return "queued: starts when the computations before it are done"
    step = job.step or "working"
    count = f": {job.done:,} / {job.total:,}" if job.total else ""
    return f"{step}{count} · running for {_minutes(job.seconds())}"


@st.fragment(run_every=1.5)
def job_panel(job: Job, message: str) -> None:
    """What a running (or queued) job is doing; reruns the page when it is done."""
    if job.finished or job.error:
        st.rerun()
    st.info(message)
    fraction = min(job.done / job.total, 1.0) if job.total else 0.0
    st.progress(fraction, text=job_line(job))


def cached_or_job(cached: Any, job: Job | None, clear: Callable[[], None], running: str,
                  ask: Callable[[Job | None], None]) -> Any:
    """A long computation's result: ``cached`` (a cache lookup's, None when not there); else that of ``job`` (its
    background run) once it finished, ``clear`` then dropping the stale lookup (the result is in the artefact
    cache now); else None after showing the job's progress (``running``: what it does) while it runs, or after
    ``ask(job)`` shows why it is missing (and the job's error, if it failed) and how to compute it."""
    if cached is None and job is not None and job.finished:
        cached = job.result
        clear()
    if cached is not None:
        return cached
    if job is not None and not job.error:
        job_panel(job, running)
    else:
        ask(job)
    return None


@st.cache_resource(show_spinner=False)
def _jobs() -> dict[tuple, Job]:
    """Every background job of this app process, by (build key, what it computes): the warm-up's stages and the
    ones pages start, so a page finds the result on its way whoever started it."""
    return {}


def find_job(built: Built, *key) -> Job | None:
    """The job computing ``key`` (a warm-up stage's key, see core.warmup) for ``built``, if any was started or
    queued."""
    return _jobs().get((build_key(built), *key))


_JOBS_LOCK = threading.Lock()  # sessions and the warm-up register jobs from several threads


def start_job(built: Built, key: tuple, job: Job) -> Job:
    """``job`` started and registered under ``key``, unless one is queued, running or done there already."""
    jobs = _jobs()
    with _JOBS_LOCK:
        known = jobs.get((build_key(built), *key))
        if known is not None and not known.error:
            return known
        jobs[(build_key(built), *key)] = job
    return job.start()


WARM_ENV = "ATELIER_WARM"  # "0": the app computes nothing after the build until a page asks (the tests' setting)
WARM_MODELS_ENV = "ATELIER_WARM_MODELS"  # comma-separated: the recommenders the warm-up evaluates (default: all)


@dataclass
class BuildJob(Job):
    """Loading the backbone and building, in the background, so pages stay responsive and show progress;
    the catalogue page never waits for the model. Then, unless ATELIER_WARM=0, the warm-up stages
    (core.warmup) one after the other in the same thread: the page each one warms shows its progress
    meanwhile, and the sidebar lists them all."""
    backbone: Backbone | None = None
    warm: list[Job] = field(default_factory=list)
    models: tuple[str, ...] = ()  # the recommenders the Cold start page offers (set with the warm-up's plan)
    registry: dict[tuple, Job] = field(default_factory=dict, repr=False)  # the app's _jobs(), where pages look

    @property
    def built(self) -> Built | None:
        return self.result if self.finished else None

    warm_error: str | None = None  # why the warm-up could not be planned (the pages then compute on request)

    def build(self, catalog: Catalog, backbone_name: str, progress: Progress) -> Built:
        """The build, and the warm-up's stages planned and registered before the build counts as finished: a
        page that sees the build sees too which of its results are on their way, and never starts them again."""
        self.backbone = create_backbone(backbone_name)
        progress("loading cached embeddings", 0, 0)
        built = build(catalog, self.backbone, ArtefactCache(), progress=progress)
        if os.environ.get(WARM_ENV, "1") != "0":
            progress("planning what the pages open with", 0, 0)
            self.plan_warm_up(built)
        return built

    def plan_warm_up(self, built: Built) -> None:
        from core.warmup import warm_stages
        self.models = tuple(sorted(creatable_recommenders()[0]))  # in this thread: imports the models' modules
        chosen = os.environ.get(WARM_MODELS_ENV)
        models = [m.strip() for m in chosen.split(",") if m.strip()] if chosen is not None else list(self.models)
        try:
            stages = warm_stages(built, ArtefactCache(), models=models)
        except Exception as e:  # planning reads the purchases and the cache: a failure here must not stop the build
            self.warm_error = f"{e.__class__.__name__}: {e}"
            return
        warm = [Job(stage.name, stage.compute, page=stage.page, key=stage.key) for stage in stages]
        with _JOBS_LOCK:
            for i, job in enumerate(warm):
                known = self.registry.get((build_key(built), *job.key))
                if known is not None and not known.error:  # a page started that computation first: follow it
                    warm[i] = known
                else:
                    self.registry[(build_key(built), *job.key)] = job
        self.warm = warm

    def run(self, observer: Progress | None = None) -> None:
        super().run(observer)
        for job in self.warm if self.finished else []:
            if job.state == "queued" and job.thread is None:  # ours to run (a page's own job runs in its thread)
                job.run()


@st.cache_resource(show_spinner=False, max_entries=4)
def get_build_job(spec: str, backbone_name: str) -> BuildJob:
    catalog = get_catalog(spec)
    job = BuildJob("build", None, step="loading the backbone", registry=_jobs())
    job.compute = lambda progress: job.build(catalog, backbone_name, progress)
    return job.start()


def current_catalog() -> Catalog:
    """The catalogue chosen in the sidebar; stops the page with a clear message if it cannot be loaded."""
    try:
        return get_catalog(st.session_state.get("app_catalog") or default_catalog_spec())
    except CatalogError as e:
        st.error(f"The catalogue could not be loaded: {e}")
        st.stop()


def current_job() -> BuildJob:
    return get_build_job(st.session_state.get("app_catalog") or default_catalog_spec(),
                         st.session_state.get("app_backbone") or os.environ.get(BACKBONE_ENV, "auto"))


def built_or_progress() -> Built | None:
    """The finished build, or None after showing what is still computing (the page refreshes itself)."""
    job = current_job()
    if job.built is not None:
        return job.built
    if job.error:
        st.error(f"No embeddings: {job.error}. Cached work is kept; fix the cause (or choose another backbone "
                 "in the sidebar) and reload.")
        return None
    job_panel(job, "Embeddings are still being computed; this page fills in when they are ready. Finished "
                   "chunks are cached, so nothing is lost if the app stops.")
    return None


def page_build(title: str) -> Built:
    """A page's header, then the finished build; until there is one the page shows progress and stops."""
    st.header(title)
    built = built_or_progress()
    if built is None:
        st.stop()
    if built.backbone.warning:
        st.warning(built.backbone.warning)
    return built


def product_grid(catalog: Catalog, ids: list[str], captions: list[str] | None = None,
                 columns: int = GRID_COLUMNS) -> None:
    """Photos of ``ids`` in rows of ``columns``, each with a caption (id and title by default) and a *View*
    button opening the product view (``app_pages/product.py``)."""
    products = catalog.products
    for start in range(0, len(ids), columns):
        cols = st.columns(columns)
        for col, i in zip(cols, range(start, min(start + columns, len(ids)))):
            row = products.loc[ids[i]]
            with col:
                if row["image_path"]:
                    st.image(row["image_path"], width="stretch")
                else:
                    st.markdown("*(no photo)*")
                view_button(catalog, ids[i], lambda: current_job().built)  # under the photo: aligned along a row
                st.caption(captions[i] if captions else f"{md(ids[i])} · {md(row['title'])}")


def describe(catalog: Catalog, product_id: str) -> str:
    """"id · title (type, colour, pattern)": a product in a chooser."""
    row = catalog.products.loc[product_id]
    attrs = [row[c] for c in TILE_ATTRS if c in row and row[c]]
    return f"{product_id} · {row['title']}" + (f" ({', '.join(attrs)})" if attrs else "")


def export_reading(sb, spec: str) -> None:
    """For a shop's export: the format it was read as, what became what, and a way to read it otherwise (another
    format, drafts kept), which rewrites the catalogue spec (``merchant:<path>``, ``shopify+drafts:<path>``)."""
    reading = get_export_reading(spec)
    if reading is None:
        return
    fmt, drafts, path = reading

    def reread() -> None:
        chosen = st.session_state["app_export_format"]
        st.session_state["app_catalog"] = make_spec(path, None if chosen == "as its header says" else chosen,
                                                    st.session_state["app_export_drafts"])

    with sb.expander(f"Read as a {fmt} export"):
        st.dataframe(pd.DataFrame(list(mapping(fmt).items()), columns=["in the export", "in Atelier"]),
                     hide_index=True)
        st.selectbox("Read it as", ["as its header says", *PRODUCT_FORMATS], key="app_export_format",
                     index=0 if parse_spec(spec)[0] is None else 1 + PRODUCT_FORMATS.index(fmt), on_change=reread)
        st.checkbox("Keep unpublished products (drafts)", value=drafts, key="app_export_drafts", on_change=reread)


def sidebar() -> None:
    """Catalogue, backbone and cache state, on every page."""
    sb = st.sidebar
    sb.title("Atelier")
    sb.text_input("Catalogue", value=default_catalog_spec(), key="app_catalog",
                  help="A folder in the H&M or generic layout, a shop's export file (Shopify or WooCommerce CSV, "
                       "Merchant Center TSV or XML) or a folder of them, or synthetic[:n_products[:seed]]")
    try:
        catalog = get_catalog(st.session_state["app_catalog"] or default_catalog_spec())
    except CatalogError as e:
        sb.error(str(e))
        return
    counts = catalog.counts()
    sb.markdown(f"**{catalog.name}**  \n{counts['products']:,} products · {counts['customers']:,} customers · "
                f"{counts['purchases']:,} purchases")
    export_reading(sb, st.session_state["app_catalog"] or default_catalog_spec())
    if catalog.simulated:
        sb.info(f"Synthetic catalogue: customers and purchases are SIMULATED. Point Atelier at real data by "
                f"typing a folder above, with `--catalog DIR` on the CLI, or `{CATALOG_ENV}=DIR`.")
    n_problems = sum(i.count for i in catalog.report.issues)
    sb.page_link("app_pages/validation.py", label=f"Validation report ({n_problems:,} problem rows)" if n_problems
                 else "Validation report (no problems)")

    sb.text_input("Backbone", value=os.environ.get(BACKBONE_ENV, "auto"), key="app_backbone",
                  help="auto, openclip:<model>/<tag or checkpoint path>, openclip:hf-hub:<org>/<repo>, random:<model>")
    job = current_job()
    backbone = job.backbone
    if job.error and backbone is None:
        sb.error(job.error)
    elif backbone is None:
        sb.caption(f"Loading backbone '{st.session_state['app_backbone'] or 'auto'}'…")
    else:
        sb.markdown(f"**{backbone.name}** — {backbone.describe()}")
        if backbone.warning:
            sb.warning(backbone.warning)
        if backbone.fallback:
            sb.info(backbone.fallback)
        with sb.expander("Why this backbone (details)"):
            for note in backbone.notes:
                st.caption(note)
        sb.page_link("app_pages/backbone.py", label="About this backbone (held-out numbers)")

    cluster_setting(sb)
    cache = ArtefactCache()
    n_files, n_bytes = cache.usage()
    state = "ready" if job.built else ("failed" if job.error else f"computing ({job.step})")
    sb.caption(f"Cache: {n_files} files, {n_bytes / 1e6:,.1f} MB in `{cache.root}` · embeddings {state}")
    with sb:
        warm_status()


@dataclass
class ClusterSwitch:
    """Where this app process runs its builds' batch stages and training: a Ray cluster's address, or "" for this
    process. One for the process (every session's builds share the executor), set from the sidebar's box."""
    address: str = ""
    cluster: Cluster | None = None
    error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, address: str) -> None:
        """Connect to ``address`` (see :func:`core.distributed.connect.connect`), or run here when it is empty; an
        address that cannot be used leaves the batch stages here, with ``error`` saying why."""
        with self._lock:
            self.address, self.cluster, self.error = address.strip(), None, ""
            if ray_address(self.address) is None:
                use(None)
                return
            try:
                self.cluster = connect(self.address, ArtefactCache().root.absolute())
            except (ClusterError, ValueError) as e:
                use(None)
                self.error = str(e)


@st.cache_resource(show_spinner="Connecting to the Ray cluster…")
def cluster_switch(initial: str) -> ClusterSwitch:
    """The process's switch, first set to ``initial`` ($ATELIER_RAY when the app started)."""
    switch = ClusterSwitch()
    switch.set(initial)
    return switch


def cluster_setting(sb) -> None:
    """The one switch in the app: a Ray cluster's address (default ``$ATELIER_RAY``), or nothing to run here."""
    switch = cluster_switch(os.environ.get(RAY_ENV, ""))
    sb.text_input("Ray cluster", value=switch.address, key="app_ray",
                  on_change=lambda: switch.set(st.session_state["app_ray"]),
                  help="Where builds run their batch stages and training, for every session of this app: empty for "
                       "this process; auto (the running cluster), local (start one here), ray://host:10001. Needs "
                       "requirements-ray.txt and a cache every node sees")
    if switch.error:
        sb.error(switch.error)
    elif switch.cluster is not None:
        sb.caption(f"Batch stages and training on Ray at `{switch.cluster.address}`: {switch.cluster.nodes} nodes, "
                   f"{switch.cluster.cpus:g} CPUs")


STATE_MARKS = {"done": ":material/check_circle:", "running": ":material/progress_activity:", "queued": "·",
               "failed": ":material/error:"}


@st.fragment(run_every=2)
def warm_status() -> None:
    """The warm-up in one place (the sidebar): each stage done, running (with its progress) or queued, and the
    page it warms; one line once every page is warm."""
    job = current_job()
    if job.warm_error:
        st.caption(f"The pages were not warmed after the build ({job.warm_error}); each computes on request.")
    if not job.warm:
        return
    failed = [j for j in job.warm if j.error]
    if all(j.state in ("done", "failed") for j in job.warm):
        st.caption(f"Every page is warm: computed in {_minutes(sum(j.seconds() for j in job.warm))} after the build"
                   + (f"; failed: {', '.join(f'{j.name} ({j.error})' for j in failed)}" if failed else "") + ".")
        return
    with st.container(border=True):
        st.markdown("**Computing what the pages open with**")
        for j in job.warm:
            line = f"{STATE_MARKS[j.state]} {j.name} · *{j.page}*"
            if j.state == "running":
                st.progress(min(j.done / j.total, 1.0) if j.total else 0.0, text=f"{line}  \n{job_line(j)}")
            else:
                st.caption(line + (f" · {_minutes(j.seconds())}" if j.state == "done" else "")
                           + (f" · failed: {j.error}" if j.error else ""))


def report_frame(catalog: Catalog, built: Built | None) -> pd.DataFrame:
    frame = catalog.report.to_frame()
    if built is not None and not built.report.ok:
        frame = pd.concat([frame, built.report.to_frame()], ignore_index=True)
    return frame


@st.cache_resource(show_spinner="Projecting (UMAP) and clustering (HDBSCAN); cached after the first time…",
                   max_entries=12)
def get_cluster_map(_built: Built, build_key: tuple, kind: str, min_cluster_size: int,
                    min_samples: int) -> ClusterMap:
    """``build_key`` stands in for the unhashable build: (catalogue, backbone, id of the build)."""
    return cluster_map(_built, ArtefactCache(), MapConfig(kind=kind, cluster=ClusterConfig(min_cluster_size,
                                                                                          min_samples)))


@st.cache_data(show_spinner="Running DBSCAN over its eps grid (about 10 s for 25,000 products)…",
               max_entries=12)
def get_dbscan_table(_built: Built, _cmap: ClusterMap, map_key: tuple) -> pd.DataFrame:
    return dbscan_comparison(_built, ArtefactCache(), _cmap)


# ---------------------------------------------------------------- recommenders (the Cold start page)

@st.cache_resource(show_spinner=False)
def recommender_names() -> tuple[list[str], dict[str, str]]:
    """The recommenders that can be created here, and why each of the others cannot (e.g. a module missing)."""
    return creatable_recommenders()


def creatable_recommenders() -> tuple[list[str], dict[str, str]]:
    """:func:`recommender_names`, uncached: creating each imports its module (4 s for all of them), so the build's
    thread asks this, never a page's first run."""
    available, missing = [], {}
    for name in list_recommenders():
        try:
            create_recommender(name)
            available.append(name)
        except Exception as e:  # an optional module missing or broken: the page lists the rest
            missing[name] = f"{e.__class__.__name__}: {e}"
    return available, missing


def _eval_hybrid_weight() -> float:
    """The evaluation's hybrid weight, so the page's fitted models are the very artefacts it evaluates."""
    from core.recs.evaluate import EvalConfig
    return EvalConfig().hybrid_weight


@st.cache_resource(show_spinner="Preparing the purchase history…", max_entries=8)
def get_rec_data(_built: Built, build_key: tuple, cutoff: str) -> RecData:
    """What every recommender learns from: the build's products and content vectors, purchases before ``cutoff``."""
    catalog = _built.catalog
    return rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff, _built.embeddings,
                    _eval_hybrid_weight())


@st.cache_resource(show_spinner=False, max_entries=32)
def get_recommender(_built: Built, build_key: tuple, name: str, cutoff: str, evaluated: bool = False) -> Job:
    """A job fitting ``name`` on the purchases before ``cutoff`` as the stored evaluation of the default models
    served it, if there is one (its settings chosen on validation, its new-customer fallback:
    ``core.recs.evaluate.as_evaluated``), else with its defaults; through the artefact cache, so the learned models
    are trained once, then loaded. Started at the first call. ``evaluated``: whether the warm-up's evaluation
    was done when asked (a new job then, which serves the evaluation's choices)."""
    from core.recs.evaluate import as_evaluated
    data = get_rec_data(_built, build_key, cutoff)
    return Job(f"fit-{name}", lambda progress: as_evaluated(name, data, served_evaluation(_built, build_key, cutoff),
                                                          ArtefactCache(), progress=progress),
               step=f"loading {name} from the cache, or preparing its training data").start()


def recommender_job(built: Built, name: str, cutoff: str, end: str) -> Job:
    """The job fitting ``name`` for the Cold start page: the warm-up's fit while it runs or until the warm-up's
    evaluation (at ``cutoff``, ``end``) is done, else :func:`get_recommender`'s, which serves what that
    evaluation chose."""
    warm = find_job(built, "recommender", name, cutoff)
    evaluation = find_job(built, "evaluation", current_job().models, cutoff, end)
    evaluated = evaluation is not None and evaluation.finished
    if warm is not None and not warm.error and not (evaluated and warm.finished):
        return warm
    return get_recommender(built, build_key(built), name, cutoff, evaluated)


@st.cache_resource(show_spinner=False, ttl=60, max_entries=8)
def served_evaluation(_built: Built, build_key: tuple, cutoff: str) -> EvalReport | None:
    """The stored evaluation of the default models at ``cutoff`` (or None), looked up once for every model
    the page fits (the lookup fingerprints the purchases: seconds on the H&M sample); kept a minute, so an
    evaluation finished meanwhile is served."""
    from core.recs.evaluate import EvalConfig, cached_evaluation
    from core.recs.split import SplitConfig
    return cached_evaluation(_built.catalog, _built.embeddings, list_recommenders(),
                                    EvalConfig(split=SplitConfig(cutoff=cutoff)), ArtefactCache())


@st.cache_resource(show_spinner="Splitting the purchases at the cutoff…", max_entries=8)
def get_split(_built: Built, build_key: tuple, cutoff: str, end: str):
    """``core.recs.evaluate.Split``: purchases before ``cutoff`` (train) and in ``[cutoff, end)`` (test)."""
    from core.recs.split import temporal_split
    return temporal_split(_built.catalog.purchases, cutoff, end)


@st.cache_data(show_spinner=False, max_entries=8)
def get_purchase_counts(_built: Built, build_key: tuple, cutoff: str, end: str) -> pd.DataFrame:
    return purchase_counts(_built.catalog.purchases, cutoff, end, _built.catalog.customers.index)


@st.cache_data(show_spinner="Ranking the product in every customer's list…", max_entries=64)
def get_audience(_model: Recommender, build_key: tuple, name: str, cutoff: str, product_id: str,
                 _customer_ids: list[str]) -> pd.DataFrame:
    """``core.recs.contract.product_audience`` of a catalogue product; ``_customer_ids`` follow from the build
    and the cutoff (the customers with purchases before it)."""
    return product_audience(_model, _customer_ids, product_row=_model.data_.product_row[product_id])


@st.cache_data(show_spinner=False, ttl=60, max_entries=16)
def get_evaluation(_built: Built, build_key: tuple, models: tuple[str, ...], cutoff: str, end: str,
                   seeds: tuple[int, ...] | None = None) -> EvalReport | None:
    """The stored evaluation of exactly these models at this split (with ``seeds``: of those seeds, e.g. the
    warm-up's first, one-seed evaluation), or None (``core.recs.evaluate.cached_evaluation``); kept a minute, so a
    result computed by ``python -m core evaluate`` meanwhile shows up."""
    import dataclasses

    from core.recs.evaluate import EvalConfig, cached_evaluation
    from core.recs.split import SplitConfig
    cfg = EvalConfig(split=SplitConfig(cutoff=cutoff, end=end))
    return cached_evaluation(_built.catalog, _built.embeddings, list(models),
                             dataclasses.replace(cfg, seeds=seeds) if seeds else cfg, ArtefactCache())


def first_evaluation_job(built: Built, models: tuple[str, ...], cutoff: str, end: str) -> Job | None:
    """The warm-up's first evaluation (one seed) of these models, if the warm-up planned one: what *How good is
    it* shows while the full evaluation computes."""
    from core.warmup import FIRST_SEEDS
    return find_job(built, "evaluation", tuple(sorted(models)), cutoff, end, FIRST_SEEDS)


def backbone_job(built: Built, start: bool = False) -> Job | None:
    """offline-lit's held-out evaluation running, queued or run in the background (the warm-up's, or the Backbone
    page's); with ``start``, a new one unless one is there (cached as an artefact)."""
    job = find_job(built, "backbone")
    if start:
        from core.warmup import backbone_stage
        stage = backbone_stage(built, ArtefactCache())
        job = start_job(built, stage.key, Job("backbone-evaluation", stage.compute, page=stage.page, key=stage.key))
    return job


def pending_job(built: Built, *key) -> Job | None:
    """The warm-up's job computing ``key`` (e.g. "map", kind), if it is queued or running: a page waits for it
    rather than computing the same thing beside it."""
    job = find_job(built, *key)
    return job if job is not None and job.state in ("queued", "running") else None


def evaluation_job(built: Built, models: tuple[str, ...], cutoff: str, end: str, start: bool = False,
                   fresh: bool = False) -> Job | None:
    """The evaluation running, queued or run in the background for these models and split (the warm-up's, or
    one a page started); with ``start``, a new one unless one is there or has finished (``core.recs.evaluate
    .evaluate``, cached as an artefact). With ``fresh`` too, the stored evaluations are dropped first and a
    finished job is not reused, so a result stored by an earlier version is computed again."""
    key = ("evaluation", tuple(sorted(models)), cutoff, end)
    job = find_job(built, *key)
    if start and fresh and (job is None or job.finished or job.error):
        from core.recs.evaluate import KIND
        ArtefactCache().clear(KIND)
        _jobs().pop((build_key(built), *key), None)
    if start:
        from core.warmup import evaluation_stage
        stage = evaluation_stage(built, ArtefactCache(), models, cutoff, end)
        job = start_job(built, key, Job("evaluate", stage.compute, page=stage.page, key=key))
    return job


# ---------------------------------------------------------------- texture report (the Texture failures page)

@st.cache_data(show_spinner=False, ttl=60, max_entries=16)
def get_texture_report(_built: Built, build_key: tuple, label: str) -> dict | None:
    """The stored ``core.explore.texture.texture_report`` of this build for ``label``, or None; computes nothing but
    the data's fingerprint. Raises ValueError when the catalogue lacks the columns it needs. Kept a minute,
    so a report computed meanwhile by another session shows up."""
    from core.explore.texture import cached_texture_report
    return cached_texture_report(_built, ArtefactCache(), label)


def texture_report_job(built: Built, label: str, start: bool = False) -> Job | None:
    """The texture report running, queued or run in the background for this build and label (the warm-up's, or
    one a page started); with ``start``, a new one unless one is there (cached as an artefact)."""
    job = find_job(built, "texture", label)
    if start:
        from core.warmup import texture_stage
        stage = texture_stage(built, ArtefactCache(), label)
        job = start_job(built, stage.key, Job("texture-report", stage.compute, step="reading the texture descriptors "
                                              "of the photos", page=stage.page, key=stage.key))
    return job
