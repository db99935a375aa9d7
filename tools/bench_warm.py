"""How soon each page is warm after the app starts on a cache: prints one JSON object.

Run through ``python -m core bench warm`` (core itself never imports streamlit), which points ATELIER_CACHE at
an empty folder unless told otherwise. The app is started as a first visitor starts it (one script run, which
starts the build and, after it, the warm-up); every few seconds each page not yet warm is opened in a new
session, as a visitor would (every ``BENCH_WARM_POLL`` seconds, 20 by default: each check renders pages, which
takes CPU from the warm-up it measures), and it counts as warm once it shows its content with nothing computing: no
progress bar, no compute button, no "still being computed" / "not computed yet" message.
``<page>_s``: seconds from the app's start to that page warm (null when not within ``--timeout``);
``order``: the pages in the order they became warm; ``stages``: each warm-up stage's seconds (core.warmup),
and ``reference_s`` with ``all_warm_per_reference`` so runs on different machines compare.
"""
import json
import os
import sys
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


def main() -> None:
    from core.bench.measure import reference_s as reference
    timeout = float(os.environ.get("BENCH_WARM_TIMEOUT", "1800"))
    poll = float(os.environ.get("BENCH_WARM_POLL", "20"))
    t = time.perf_counter()
    reference_s = reference()  # the benchmarks' reference workload (core.bench.measure)

    from core.data.load import default_catalog_spec, load_catalog
    catalog = load_catalog(os.environ.get("ATELIER_CATALOG") or default_catalog_spec())
    bestsellers = catalog.purchases["product_id"].astype(str).value_counts().index[:3].tolist()
    PAGES["coldstart_demo"][1]["coldstart_liked"] = bestsellers or catalog.products.index[:3].tolist()

    start = time.perf_counter()
    open_page(None, {})  # the first visitor: loads the catalogue, starts the build and the warm-up
    warm: dict[str, float] = {}
    waiting: dict[str, str] = {}
    while len(warm) < len(PAGES) and time.perf_counter() - start < timeout:
        for name, (page, state) in PAGES.items():
            if name in warm:
                continue
            why = why_not_warm(open_page(page, state))
            if why is None:
                warm[name] = round(time.perf_counter() - start, 1)
                print(f"{warm[name]:7.1f} s  {name} warm", file=sys.stderr, flush=True)
            else:
                waiting[name] = why
        time.sleep(poll)

    from app_pages.common import get_build_job
    job = get_build_job(os.environ.get("ATELIER_CATALOG") or default_catalog_spec(),
                        os.environ.get("ATELIER_BACKBONE", "auto"))
    print(json.dumps({
        **{f"{name}_s": warm.get(name) for name in PAGES},
        "order": sorted(warm, key=warm.get),
        "still_waiting": {name: why for name, why in waiting.items() if name not in warm},
        "build_s": round(job.seconds(), 1),
        "stages": {j.name: round(j.seconds(), 1) if j.state == "done" else j.state for j in job.warm},
        "all_warm_s": max(warm.values()) if len(warm) == len(PAGES) else None,
        "reference_s": round(reference_s, 3),
        "all_warm_per_reference": round(max(warm.values()) / reference_s, 1) if len(warm) == len(PAGES) else None,
        "total_s": round(time.perf_counter() - t, 1)}))


if __name__ == "__main__":
    main()
