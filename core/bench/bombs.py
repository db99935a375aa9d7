"""The bombs benchmark: decompression-bomb uploads, then photos just under the pixel limit, at a started service
(``python -m core bench bombs``); its memory and answers."""
from __future__ import annotations

import argparse
import asyncio
import io
import time
from collections import Counter

import httpx
from PIL import Image

from core.bench.command import BenchContext
from core.bench.hostile import StartedService, grey_png, memory_during, ordinary_statuses
from core.bench.process import wait_ready
from core.data.load import load_catalog

BOMB_SIDE = 13_000  # 169 MP: under PIL's own limit (179 MP), so PIL alone decodes it (~0.5-0.7 GB each)
BOMB_FORMATS = ("GIF", "PNG", "JPEG")


def bomb_photos(side: int = BOMB_SIDE, formats: tuple[str, ...] = BOMB_FORMATS) -> dict[str, bytes]:
    """One flat grey ``side`` x ``side`` photo per format: a few hundred KB each, gigabytes once decoded."""
    img = Image.new("L", (side, side), 128)
    out = {}
    for fmt in formats:
        buffer = io.BytesIO()
        img.save(buffer, format=fmt)
        out[fmt] = buffer.getvalue()
    return out


async def _send_all(url: str, requests: list[dict], timeout_s: float) -> list[dict]:
    """``requests`` ({path, data, files}) all at once, each on its own connection; status, seconds, detail."""
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, trust_env=False,
                                 limits=httpx.Limits(max_connections=len(requests))) as client:
        async def one(r: dict) -> dict:
            t = time.perf_counter()
            try:
                got = await client.post(r["path"], data=r.get("data"), files=r["files"])
                status, detail = got.status_code, got.text[:160]
            except httpx.HTTPError as e:
                status, detail = None, f"{e.__class__.__name__}: {e}"[:160]
            return {"path": r["path"], "what": r["what"], "status": status, "seconds": round(time.perf_counter() - t, 3),
                    "detail": detail}
        return list(await asyncio.gather(*(one(r) for r in requests)))


def _uploads(n: int, photos: dict[str, bytes], existing_id: str, tag: str) -> list[dict]:
    """``n`` uploads cycling through the photos: a quarter to POST /products with an id the catalogue has
    (409 expected: the id is checked first), a quarter with new ids, half to POST /search/image."""
    out = []
    names = list(photos)
    for i in range(n):
        fmt = names[i % len(names)]
        files = {"photo" if i % 4 < 2 else "file": (f"{tag}-{i}.{fmt.lower()}", photos[fmt], "image/" + fmt.lower())}
        if i % 4 == 0:
            out.append({"path": "/products", "what": f"{fmt}, existing id", "files": files,
                        "data": {"id": existing_id, "title": "bomb"}})
        elif i % 4 == 1:
            out.append({"path": "/products", "what": f"{fmt}, new id", "files": files,
                        "data": {"id": f"{tag}-{i}", "title": "bomb"}})
        else:
            out.append({"path": "/search/image", "what": fmt, "files": files})
    return out


def bench_bombs(catalog: str, backbone: str = "auto", models: str | None = None, n: int = 20,
                side: int = BOMB_SIDE, limit_side: int = 4_900, timeout_s: float = 300.0) -> dict:
    """``n`` decompression bombs (:func:`bomb_photos`, ``side`` px square) uploaded at once to a started
    service; then ``n`` photos just under its pixel limit (``limit_side`` px square, PNG) to POST
    /search/image at once, which it does decode, so its bound on decodes in flight is what keeps the memory.

    Returns per attack: statuses (counts), each request (what, status, seconds, detail), the service's
    memory (:func:`memory_during`), and ``target_met`` for the bombs: every answer a 4xx and the peak
    growth under 1 GB; then the statuses of ordinary requests afterwards."""
    products = load_catalog(catalog).products
    existing = str(products.index[0])
    photos = bomb_photos(side)
    small = grey_png(64)
    extra = ["--backbone", backbone] + (["--models", models] if models else [])
    result: dict = {"catalog": catalog, "bomb": {"side": side, "bytes": {f: len(b) for f, b in photos.items()},
                                                 "decoded_mb_each": round(side * side * 4 / 2**20)}}
    with StartedService(catalog, extra) as service:
        ready = wait_ready(service.url, service.proc, service.log, 900.0)
        result["version"] = ready.get("version")
        result["ordinary_before"] = ordinary_statuses(service.url, existing, small)
        replies, memory = memory_during(service.proc.pid, lambda: asyncio.run(
            _send_all(service.url, _uploads(n, photos, existing, "bomb"), timeout_s)))
        statuses = Counter(r["status"] for r in replies)
        result["bombs"] = {"requests": n, "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)},
                           **memory, "replies": replies,
                           "target_met": all(r["status"] is not None and 400 <= r["status"] < 500 for r in replies)
                           and memory["peak_growth_mb"] < 1024}
        service.check_alive()
        at_limit = grey_png(limit_side)
        # bytes after IEND are ignored by decoders but make each photo new to the query cache (keyed by digest)
        requests = [{"path": "/search/image", "what": f"PNG {limit_side}x{limit_side}",
                     "files": {"file": (f"limit-{i}.png", at_limit + b"%d" % i, "image/png")}} for i in range(n)]
        replies, memory = memory_during(service.proc.pid, lambda: asyncio.run(
            _send_all(service.url, requests, timeout_s)))
        statuses = Counter(r["status"] for r in replies)
        result["at_limit"] = {"requests": n, "side": limit_side, "bytes": len(at_limit),
                              "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, **memory,
                              "seconds_max": max(r["seconds"] for r in replies)}
        service.check_alive()
        result["ordinary_after"] = ordinary_statuses(service.url, existing, small)
        result["server_log"] = str(service.log)
    return result


def command(args: argparse.Namespace, ctx: BenchContext) -> dict:
    return bench_bombs(args.catalog or "synthetic:200:0", args.backbone, args.models)
