"""The photos-by-URL benchmark: a shop's export of each kind (Shopify, WooCommerce, Merchant Center TSV and XML),
its photos served by local HTTP servers with 5% of them broken in assorted ways, loaded twice into a scratch
cache: the first load's and the second's seconds and downloads, the defects the validation report counts against
those planted, and how many downloads ran at once."""
from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

from core.bench.command import BenchContext
from core.bench.measure import reference_s

# The defects planted, each in 1% of the products: the cause the report must give each.
DEFECTS = {"missing": "not found (404)", "page": "not an image", "corrupt": "not an image",
           "huge": "too large", "stall": "timed out"}
DELAY_S = 0.02  # each photo's answer waits this long, as a CDN's would


class PhotoServer:
    """Serves ``photos`` (path -> bytes) as JPEGs with an ETag, after ``delay`` seconds; other paths by their
    name: ``/missing/`` 404, ``/page/`` HTML, ``/corrupt/`` bytes that are no image, ``/huge/`` a Content-Length
    over the size cap, ``/stall/`` no answer for ``stall_s``. Counts bodies sent and the most requests at once."""

    def __init__(self, photos: dict[str, bytes], delay: float = DELAY_S, stall_s: float = 60.0):
        self.photos, self.delay, self.stall_s = photos, delay, stall_s
        self.lock, self.bodies, self.in_flight, self.most = threading.Lock(), 0, 0, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                with server.lock:
                    server.in_flight += 1
                    server.most = max(server.most, server.in_flight)
                try:
                    server.answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def _send(self, h, code: int, body: bytes, kind: str, **headers) -> None:
        h.send_response(code)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(headers.pop("length", len(body))))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        if code == 200 and body:
            with self.lock:
                self.bodies += 1

    def answer(self, h) -> None:
        kind = h.path.split("/")[1]
        if kind == "stall":
            time.sleep(self.stall_s)
            return
        time.sleep(self.delay)
        if kind == "ok":
            tag = f'"{h.path}"'
            if h.headers.get("If-None-Match") == tag:
                return self._send(h, 304, b"", "image/jpeg")
            return self._send(h, 200, self.photos[h.path], "image/jpeg", ETag=tag)
        if kind == "missing":
            return self._send(h, 404, b"not here", "text/plain")
        if kind == "page":
            return self._send(h, 200, b"<html><body>Log in to see this photo</body></html>", "text/html")
        if kind == "corrupt":
            return self._send(h, 200, b"\xff\xd8\xff\xe0 truncated", "image/jpeg")
        return self._send(h, 200, b"", "image/jpeg", length=str(64 * 1024 * 1024))  # huge: refused by its length

    def close(self) -> None:
        self.server.shutdown()


def _photo(rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    pixels = rng.integers(0, 255, (96, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out, "JPEG", quality=80)
    return out.getvalue()


def plant(n: int, seed: int) -> tuple[list[str], dict[str, int]]:
    """Each product's photo path on the servers: ``/ok/<i>.jpg`` but for 1% of them per defect, and the counts."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["ok"] * n, dtype=object)
    per = max(n // 100, 1)
    chosen = rng.permutation(n)
    for j, defect in enumerate(DEFECTS):
        kinds[chosen[j * per:(j + 1) * per]] = defect
    return [f"/{k}/{i}.jpg" for i, k in enumerate(kinds)], {d: per for d in DEFECTS}


def _table(columns: list[str], rows: list[dict], sep: str) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, columns, delimiter=sep, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()


def write_exports(folder: Path, urls: list[str]) -> dict[str, Path]:
    """One export of each kind, a product per URL (two colours of one handle / parent for every pair)."""
    names = [f"Product {i // 2}" for i in range(len(urls))]
    colours = ["Black", "White"]
    shopify = []
    for i, u in enumerate(urls):
        first = i % 2 == 0
        shopify.append({"Handle": f"p{i // 2}", "Title": names[i] if first else "", "Body (HTML)":
                        f"<p>Cotton <b>top</b>, {i}</p>" if first else "", "Type": "Top" if first else "",
                        "Option1 Name": "Color" if first else "", "Option1 Value": colours[i % 2],
                        "Variant SKU": f"SKU{i}", "Variant Price": "19.99", "Variant Image": u,
                        "Status": "active" if first else ""})
    woo = []
    for i in range(0, len(urls), 2):
        woo.append({"ID": str(i), "Type": "variable", "SKU": f"P{i}", "Name": names[i], "Published": "1",
                    "Description": "<p>Cotton top</p>", "Categories": "Clothing > Tops", "Images": "",
                    "Parent": "", "Attribute 1 name": "Color", "Attribute 1 value(s)": "Black, White"})
        for j in (i, i + 1):
            if j < len(urls):
                woo.append({"ID": f"v{j}", "Type": "variation", "SKU": f"SKU{j}", "Name": names[j],
                            "Published": "1", "Regular price": "19.99", "Images": urls[j], "Parent": f"id:{i}",
                            "Attribute 1 name": "Color", "Attribute 1 value(s)": colours[j % 2]})
    merchant = [{"id": f"m{i}", "title": names[i], "description": "Cotton top", "image_link": u,
                 "price": "19.99 EUR", "color": colours[i % 2], "pattern": "Solid", "material": "Cotton",
                 "item_group_id": f"g{i // 2}", "availability": "in_stock"} for i, u in enumerate(urls)]
    files = {}
    for kind, text in (("shopify", _table(list(shopify[0]), shopify, ",")),
                       ("woocommerce", _table(list(woo[0]) + ["Regular price"], woo, ",")),
                       ("merchant-tsv", _table(list(merchant[0]), merchant, "\t"))):
        sub = folder / kind
        sub.mkdir()
        files[kind] = sub / ("feed.tsv" if kind == "merchant-tsv" else "products.csv")
        files[kind].write_text(text)
    items = "".join("<item>" + "".join(f"<g:{k}>{v}</g:{k}>" for k, v in m.items()) + "</item>" for m in merchant)
    (folder / "merchant-xml").mkdir()
    files["merchant-xml"] = folder / "merchant-xml" / "feed.xml"
    files["merchant-xml"].write_text('<?xml version="1.0"?><rss version="2.0" xmlns:g="http://base.google.com/ns/'
                                     f'1.0"><channel><title>Shop</title>{items}</channel></rss>')
    return files


def build_twice(path: Path, cache: Path, server: PhotoServer) -> dict:
    """``python -m core build`` of the export at ``path`` twice into ``cache`` (no recommenders, no warm-up): each
    run's seconds, photos downloaded and its summary line."""
    import subprocess
    import sys
    env = {**os.environ, "ATELIER_CACHE": str(cache)}
    runs = {}
    for run in ("first", "second"):
        before, t = server.bodies, time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "core", "build", "--catalog", str(path), "--no-warm",
                               "--models", ""], cwd=Path(__file__).resolve().parents[2], env=env,
                              capture_output=True, text=True)
        runs[run] = {"seconds": round(time.perf_counter() - t, 2), "downloads": server.bodies - before,
                     "returncode": done.returncode, "summary": (done.stdout.strip().splitlines() or [""])[-1]}
    runs["second_over_first"] = round(runs["second"]["seconds"] / runs["first"]["seconds"], 4)
    return runs


def bench_photos(n: int = 2000, seed: int = 0, stall_s: float = 60.0, progress=None, build: bool = False) -> dict:
    """Load each kind of export twice (a scratch cache each kind), its photos by URL from local servers; with
    ``build``, also build the Merchant Center TSV export twice (:func:`build_twice`)."""
    from core.data.load import load_catalog
    paths, planted = plant(n, seed)
    rng = np.random.default_rng(seed)
    photos = {p: _photo(rng) for p in paths if p.startswith("/ok/")}
    main, slow = PhotoServer(photos, stall_s=stall_s), PhotoServer({}, stall_s=stall_s)
    urls = [(slow.url if p.startswith("/stall/") else main.url) + p for p in paths]
    out = {"products": n, "planted": {DEFECTS[d] + f" ({d})": c for d, c in planted.items()},
           "delay_per_photo_s": DELAY_S, "kinds": {}}
    old = os.environ.get("ATELIER_CACHE")
    try:
        with tempfile.TemporaryDirectory(prefix="atelier-bench-photos-") as tmp:
            files = write_exports(Path(tmp), urls)
            for kind, path in files.items():
                os.environ["ATELIER_CACHE"] = str(Path(tmp) / f"cache-{kind}")
                runs = []
                for _ in range(2):
                    main.most, before = 0, main.bodies
                    t0 = time.perf_counter()
                    cat = load_catalog(path, progress=progress)
                    runs.append({"seconds": round(time.perf_counter() - t0, 2), "downloads": main.bodies - before,
                                 "most_at_once": main.most})
                    counted = {i.problem.removeprefix("photos by URL: "): i.count for i in cat.report.issues
                               if i.problem.startswith("photos by URL: ")}
                expected = {}
                for d, c in planted.items():
                    expected[DEFECTS[d]] = expected.get(DEFECTS[d], 0) + c
                out["kinds"][kind] = {
                    "products": len(cat.products), "with_photo": int((cat.products["image_path"] != "").sum()),
                    "first": runs[0], "second": runs[1],
                    "second_over_first": round(runs[1]["seconds"] / runs[0]["seconds"], 4),
                    "failures_counted": counted, "failures_as_planted": counted == expected}
            if build:
                out["build_merchant_tsv"] = build_twice(files["merchant-tsv"], Path(tmp) / "cache-build", main)
    finally:
        main.close()
        slow.close()
        if old is None:
            os.environ.pop("ATELIER_CACHE", None)
        else:
            os.environ["ATELIER_CACHE"] = old
    out["reference_s"] = round(reference_s(), 4)
    return out


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_photos(n=args.limit or 2000, progress=ctx.progress(), build=args.build)
