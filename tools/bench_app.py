"""Render time of every page with streamlit's AppTest, from a warm artefact cache; prints one JSON object.

Run through ``python -m core bench app`` (core itself never imports streamlit).
``app_start_s``: the first script run of a new app process (loads the catalogue and the backbone,
starts the build); ``<page>_first_s``: each page's first render after that (the neighbours page
waits for the build to load from the cache); ``<page>_s``: best of three re-renders, as a user
sees it when moving between pages.
"""
import json
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = {"catalogue": None, "neighbours": "app_pages/neighbours.py", "clusters": "app_pages/clusters.py",
         "backbone": "app_pages/backbone.py",
         "validation": "app_pages/validation.py"}


def render(page: str | None) -> float:
    at = AppTest.from_file(APP, default_timeout=900)
    at.run()
    if page:
        at.switch_page(page)
    t = time.perf_counter()
    at.run()
    while any("still being computed" in i.value for i in at.info):  # the build runs in a thread
        time.sleep(0.05)
        at.run()
    if at.exception:
        sys.exit(f"{page}: {[e.value for e in at.exception]}")
    return time.perf_counter() - t


def main() -> None:
    t = time.perf_counter()
    at = AppTest.from_file(APP, default_timeout=900)
    at.run()
    out = {"app_start_s": round(time.perf_counter() - t, 3)}
    for name, page in PAGES.items():
        out[f"{name}_first_s"] = round(render(page), 3)
    for name, page in PAGES.items():
        out[f"{name}_s"] = round(min(render(page) for _ in range(3)), 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
