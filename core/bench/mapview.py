"""The map benchmark: the Clusters page's map (``tools/bench_map.py``) at each of ``--sizes`` points, opened in
headless Chromium; per size, seconds from asking for the page to the map drawn, and from releasing a dragged box
to the page showing how many products it holds.

``BENCH_MAP_DRAW=points`` (or ``density``) draws every size one way, to compare the two.

Needs Chromium (Debian's ``chromium``, or ``--browser PATH``) and Playwright's Python client
(``pip install -r requirements-browser.txt``), which drives the browser already on the machine: nothing is
downloaded. Core never imports streamlit: the app runs in a child process (``streamlit run``)."""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.bench.command import BenchContext
from core.bench.measure import reference_s
from core.bench.process import free_port, log_tail, stop_process, wait_ready
from core.config import PROJECT_ROOT

# What Chromium needs here: no sandbox as root, no GPU (software WebGL/canvas), and none of its background
# connections, which a closed network refuses many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}
SELECTED = re.compile(r"selected products: (\d+)")


def _serve(points: int, port: int, log) -> subprocess.Popen:
    env = dict(os.environ, BENCH_MAP_POINTS=str(points))
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "tools" / "bench_map.py"),
                             "--server.headless", "true", "--server.port", str(port),
                             "--browser.gatherUsageStats", "false"],
                            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _selected(page) -> int | None:
    found = SELECTED.search(page.inner_text("body"))
    return int(found.group(1)) if found else None


# The map is painted: Streamlit's Vega-Lite draws to SVG here; the density image's <image> has its size, or the
# scatter's symbols are there (a canvas renderer: some pixel of it is not blank).
PAINTED = """() => {
  const svg = document.querySelector('.vega-embed svg');
  if (svg) {
    const image = svg.querySelector('.mark-image image');
    if (image) return image.getBBox().width > 0 && image.getAttribute('href');
    return svg.querySelectorAll('.mark-symbol path').length > 0;
  }
  const canvas = document.querySelector('.vega-embed canvas');
  if (!canvas || !canvas.width) return false;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) return true;
  return false;
}"""


def _open(context, port: int, timeout_s: float):
    """A new page on the map, and the seconds until it is painted (:data:`PAINTED`) and the script run that
    made it has finished (the selection's count shown below it)."""
    page = context.new_page()
    t = time.perf_counter()
    page.goto(f"http://127.0.0.1:{port}/", timeout=timeout_s * 1000)
    page.wait_for_function("() => /selected products: 0/.test(document.body.innerText)", timeout=timeout_s * 1000)
    page.wait_for_function(PAINTED, timeout=timeout_s * 1000)
    return page, time.perf_counter() - t


def measure(browser, points: int, timeout_s: float, screenshot: str | None = None) -> dict:
    """One size on a fresh server and in a fresh browser context (closed whatever happens): the first visit (the
    server's first run of the page: imports and the synthetic points), then a second visitor's page, timed as a
    user opening the map of a running app, on which a box is dragged."""
    port = free_port()
    with tempfile.NamedTemporaryFile(prefix="atelier-map-", suffix=".log") as log:
        server = _serve(points, port, log)
        context = browser.new_context(viewport=VIEWPORT)
        try:
            wait_ready(f"http://127.0.0.1:{port}", server, Path(log.name), 60.0, interval_s=0.2,
                       path="/_stcore/health")
            page, cold_s = _open(context, port, timeout_s)
            page.close()
            page, first_render_s = _open(context, port, timeout_s)
            chart = page.query_selector(".vega-embed svg, .vega-embed canvas").bounding_box()
            x0, y0 = chart["x"] + chart["width"] * 0.35, chart["y"] + chart["height"] * 0.35
            x1, y1 = chart["x"] + chart["width"] * 0.55, chart["y"] + chart["height"] * 0.6
            page.mouse.move(x0, y0)
            page.mouse.down()
            page.mouse.move(x1, y1, steps=8)
            t = time.perf_counter()
            page.mouse.up()  # Streamlit sends the selection on release
            page.wait_for_function("() => { const m = /selected products: (\\d+)/.exec(document.body.innerText);"
                                   " return m && +m[1] > 0; }", timeout=timeout_s * 1000)
            box_select_s = time.perf_counter() - t
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
            return {"points": points, "first_visit_s": round(cold_s, 2), "first_render_s": round(first_render_s, 2),
                    "box_select_s": round(box_select_s, 2), "selected": _selected(page)}
        except Exception as e:
            tail = log_tail(Path(log.name), 600).strip().splitlines()[-3:]
            raise RuntimeError(f"{e.__class__.__name__}: {str(e).splitlines()[0]}"
                               + (f" (server: {' / '.join(tail)})" if tail else "")) from e
        finally:
            context.close()
            stop_process(server)


def bench_map(sizes: list[int], browser_path: str, timeout_s: float = 120.0, screenshots: str | None = None
              ) -> dict:
    from playwright.sync_api import sync_playwright
    reference = reference_s()
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, headless=True, args=CHROMIUM_ARGS)
        try:
            for n in sizes:
                shot = os.path.join(screenshots, f"map-{n}.png") if screenshots else None
                try:
                    results.append(measure(browser, n, timeout_s, shot))
                except Exception as e:  # a size the browser cannot draw in time: said so, the others still run
                    results.append({"points": n, "failed": str(e)})
        finally:
            browser.close()
    for r in results:
        for key in ("first_visit_s", "first_render_s", "box_select_s"):
            if key in r:
                r[key.removesuffix("_s") + "_per_reference"] = round(r[key] / reference, 1)
    return {"browser": browser_path, "viewport": VIEWPORT, "draw": os.environ.get("BENCH_MAP_DRAW", "auto"),
            "reference_s": round(reference, 4), "sizes": results}


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    browser = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        raise SystemExit("error: no Chromium found: install Debian's chromium, or name one with --browser PATH")
    try:
        import playwright  # noqa: F401  (only whether it is there)
    except ImportError:
        raise SystemExit("error: the map bench drives Chromium with Playwright: pip install -r requirements-browser.txt")
    return bench_map(sizes, browser, min(args.stage_timeout, 600.0), args.screenshots)
