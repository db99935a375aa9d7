"""How soon each page is warm after the app starts on a cache: prints one JSON object.

Run through ``python -m core bench warm`` (core itself never imports streamlit), which points ATELIER_CACHE at
an empty folder unless told otherwise. The app is started as a first visitor starts it (one script run, which
starts the build and, after it, the warm-up). Each page not yet warm is then opened in a new session, as a visitor
would, whenever the build or a warm-up stage has changed state (checked every second, in this process, where the
app's jobs run), and at least every ``BENCH_WARM_POLL`` seconds (120 by default) in case a page warms otherwise:
rendering eight pages takes CPU from the warm-up being measured, so they are rendered when something may have
changed rather than on a clock. A page counts as warm once it shows its content with nothing computing: no
progress bar, no compute button, no "still being computed" / "not computed yet" message.
``<page>_s``: seconds from the app's start to that page warm (null when not within ``--timeout``);
``coldstart_evaluation_first_s``: the evaluation section open on its first, one-seed table (no compute button,
the full evaluation's progress beside it); ``all_open_s``: every page open on its results, that section on its
first table; ``all_warm_s``: every page warm, that section on the full evaluation; ``order``: the pages in the
order they became warm; ``stages``: each warm-up stage's seconds (core.warmup), and ``reference_s`` with
``all_warm_per_reference`` so runs on different machines compare.
"""
import json
import os
import sys
import threading
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP = str(ROOT / "app.py")
# page -> (file, session state): the Cold start page three times: as it opens, with three liked products (its
# demo, GraphSAGE by default, whose list needs the model fitted) and its evaluation section
PAGES = {"catalogue": (None, {}), "neighbours": ("app_pages/neighbours.py", {}),
         "clusters": ("app_pages/clusters.py", {}), "backbone": ("app_pages/backbone.py", {}),
         "texture": ("app_pages/texture.py", {}), "coldstart": ("app_pages/coldstart.py", {}),
         "coldstart_demo": ("app_pages/coldstart.py", {}),  # with liked products: set in main()
         "coldstart_evaluation": ("app_pages/coldstart.py", {"coldstart_section": "How good is it"}),
         "validation": ("app_pages/validation.py", {})}
WAITING = ("still being computed", "not computed yet", "not evaluated yet", "computing", "preparing", "queued")
COMPUTE_BUTTONS = ("compute", "evaluate")


def open_page(page: str | None, state: dict) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=900)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    return at


def why_not_warm(at: AppTest) -> str | None:
    """What the page still waits for, or None when it is warm."""
    if at.exception:
        return f"exception: {at.exception[0].value}"
    if at.main.get("progress"):
        return "a progress bar"
    texts = [e.value for kind in ("info", "warning", "caption", "markdown") for e in at.main.get(kind)]
    waiting = [t for t in texts if any(w in str(t).lower() for w in WAITING)]
    if waiting:
        return f"says: {waiting[0][:80]}"
    buttons = [b.label for b in at.main.get("button") if any(w in b.label.lower() for w in COMPUTE_BUTTONS)]
    if buttons:
        return f"a button: {buttons[0]}"
    return None


def shows_results(at: AppTest) -> bool:
    """A table on the page, no exception and no compute button: the Cold start evaluation's first, one-seed
    table counts, though the full evaluation's progress shows beside it."""
    return not at.exception and bool(at.main.dataframe) and not any(
        w in b.label.lower() for b in at.main.get("button") for w in COMPUTE_BUTTONS)


def job_states(job) -> tuple:
    """The build's state, each warm-up stage's, and the app's other background jobs (a page may start its own,
    e.g. a recommender's fit or the thumbnails; each runs in an "atelier-<name>" thread): a page can only warm
    when one of them changes."""
    threads = sorted(t.name for t in threading.enumerate() if t.name.startswith("atelier-"))
    return (job.state, job.built is not None, tuple((j.name, j.state) for j in job.warm), tuple(threads))


def main() -> None:
    from core.bench.measure import reference_s as reference
    timeout = float(os.environ.get("BENCH_WARM_TIMEOUT", "1800"))
    poll = float(os.environ.get("BENCH_WARM_POLL", "120"))
    t = time.perf_counter()
    reference_s = reference()  # the benchmarks' reference workload (core.bench.measure)

    from core.data.load import default_catalog_spec, load_catalog
    catalog = load_catalog(default_catalog_spec())
    bestsellers = catalog.purchases["product_id"].astype(str).value_counts().index[:3].tolist()
    PAGES["coldstart_demo"][1]["coldstart_liked"] = bestsellers or catalog.products.index[:3].tolist()

    from app_pages.common import get_build_job
    spec = default_catalog_spec()  # as the app reads it
    backbone = os.environ.get("ATELIER_BACKBONE", "auto")
    start = time.perf_counter()
    open_page(None, {})  # the first visitor: loads the catalogue, starts the build and the warm-up
    job = get_build_job(spec, backbone)  # the app's own job (st.cache_resource, shared by every session here)
    warm: dict[str, float] = {}
    waiting: dict[str, str] = {}
    first_table: float | None = None
    seen, rendered = None, -poll
    while len(warm) < len(PAGES) and time.perf_counter() - start < timeout:
        states = job_states(job)
        if states == seen and time.perf_counter() - rendered < poll:
            time.sleep(1)
            continue
        seen, rendered = states, time.perf_counter()
        for name, (page, state) in PAGES.items():
            if name in warm:
                continue
            at = open_page(page, state)
            why = why_not_warm(at)
            if name == "coldstart_evaluation" and first_table is None and shows_results(at):
                first_table = round(time.perf_counter() - start, 1)
                print(f"{first_table:7.1f} s  coldstart_evaluation open on its first table", file=sys.stderr,
                      flush=True)
            if why is None:
                warm[name] = round(time.perf_counter() - start, 1)
                print(f"{warm[name]:7.1f} s  {name} warm", file=sys.stderr, flush=True)
            else:
                waiting[name] = why

    print(json.dumps({
        **{f"{name}_s": warm.get(name) for name in PAGES},
        "coldstart_evaluation_first_s": first_table,
        "order": sorted(warm, key=warm.get),
        "still_waiting": {name: why for name, why in waiting.items() if name not in warm},
        "build_s": round(job.seconds(), 1),
        "stages": {j.name: round(j.seconds(), 1) if j.state == "done" else j.state for j in job.warm},
        "all_warm_s": max(warm.values()) if len(warm) == len(PAGES) else None,
        # every page open on results, the evaluation section on its first one-seed table
        "all_open_s": max([first_table] + [s for n, s in warm.items() if n != "coldstart_evaluation"])
        if first_table is not None and set(PAGES) - {"coldstart_evaluation"} <= set(warm) else None,
        "reference_s": round(reference_s, 3),
        "all_warm_per_reference": round(max(warm.values()) / reference_s, 1) if len(warm) == len(PAGES) else None,
        "total_s": round(time.perf_counter() - t, 1)}))


if __name__ == "__main__":
    main()
