"""Photos by URL against local HTTP servers on 127.0.0.1 that serve some photos, 404 some, stall on some, answer
HTML for one, ask to come back later, and send too much: each failure named by cause, nothing changed fetched
twice, downloads in parallel, and a stalled host holding up no other."""
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from core.data.photofetch import FetchConfig, PhotoFetcher


def png(colour=(10, 120, 200), size=(8, 8)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


class Shop:
    """A photo server: what it was asked, how many answers it sent with a body, most requests at once."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.lock = delay, threading.Lock()
        self.bodies, self.in_flight, self.most, self.busy_left, self.requests = 0, 0, 0, 1, 0
        self.finished: dict[str, float] = {}
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                with shop.lock:
                    shop.requests += 1
                    shop.in_flight += 1
                    shop.most = max(shop.most, shop.in_flight)
                try:
                    shop.answer(self)
                finally:
                    with shop.lock:
                        shop.in_flight -= 1
                        shop.finished[self.path] = time.monotonic()

        class Server(ThreadingHTTPServer):
            request_queue_size = 64  # the default 5 would drop a burst's connections, to be retried 1 s later

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def send(self, h, code: int, body: bytes = b"", kind: str = "image/png", **headers) -> None:
        h.send_response(code)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k.replace("_", "-"), v)
        h.end_headers()
        h.wfile.write(body)
        if body:
            with self.lock:
                self.bodies += 1

    def answer(self, h) -> None:
        path = h.path
        if path.startswith("/ok/"):
            time.sleep(self.delay)
            tag = f'"{path}-v1"'
            if h.headers.get("If-None-Match") == tag:
                return self.send(h, 304)
            return self.send(h, 200, png(), ETag=tag)
        if path == "/dated.png":
            stamp = "Wed, 01 May 2024 10:00:00 GMT"
            if h.headers.get("If-Modified-Since") == stamp:
                return self.send(h, 304)
            return self.send(h, 200, png((1, 2, 3)), Last_Modified=stamp)
        if path == "/plain.png":  # no validators: the URL keys it
            return self.send(h, 200, png((9, 9, 9)))
        if path == "/missing.png":
            return self.send(h, 404, b"no", "text/plain")
        if path == "/page.png":
            return self.send(h, 200, b"<html><body>Sorry</body></html>", "text/html; charset=utf-8")
        if path == "/broken.png":
            return self.send(h, 200, b"\x89PNG not really")
        if path == "/huge.png":
            return self.send(h, 200, png(size=(300, 300)) + b"\0" * 50_000)
        if path == "/busy.png":
            with self.lock:
                busy, self.busy_left = self.busy_left > 0, self.busy_left - 1
            if busy:
                return self.send(h, 429, b"slow down", "text/plain", Retry_After="1")
            return self.send(h, 200, png((200, 0, 0)))
        if path == "/trickle.png":  # a byte at a time, each within the read timeout: only a limit in all stops it
            h.send_response(200)
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", "1000")
            h.end_headers()
            try:
                for _ in range(1000):
                    time.sleep(0.2)
                    h.wfile.write(b"x")
                    h.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):  # the client gave up, as it should
                pass
            return
        if path.startswith("/stall"):
            time.sleep(6)
            return self.send(h, 200, png())
        return self.send(h, 500, b"?", "text/plain")

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def shop():
    s = Shop()
    yield s
    s.close()


FAST = FetchConfig(read_s=1.0, connect_s=1.0, backoff_s=0.05, max_wait_s=2.0, max_bytes=40_000)


def test_each_failure_is_named_and_a_second_fetch_downloads_nothing_unchanged(shop, tmp_path):
    paths = ["/ok/a.png", "/dated.png", "/plain.png", "/missing.png", "/page.png", "/broken.png", "/huge.png",
             "/busy.png", "/stall.png", "/ok/a.png"]
    fetcher = PhotoFetcher(tmp_path / "photos", FAST)
    got = fetcher.fetch([shop.url + p for p in paths])
    causes = {p: f.cause for p, f in zip(paths, got)}
    assert causes == {"/ok/a.png": "", "/dated.png": "", "/plain.png": "", "/missing.png": "not found (404)",
                      "/page.png": "not an image", "/broken.png": "not an image", "/huge.png": "too large",
                      "/busy.png": "", "/stall.png": "timed out"}
    assert got[0].path == got[-1].path and Image.open(got[0].path).size == (8, 8)  # one URL asked twice: once
    assert all(f.downloaded for f in got if not f.cause) and not any(f.path for f in got if f.cause)
    assert "text/html" in got[4].detail
    bodies = shop.bodies
    asked = shop.requests
    again = PhotoFetcher(tmp_path / "photos", FAST).fetch([shop.url + p for p in paths[:3] + ["/busy.png"]])
    assert [f.cause for f in again] == ["", "", "", ""] and not any(f.downloaded for f in again)
    assert [f.path for f in again] == [got[0].path, got[1].path, got[2].path, got[7].path]
    assert shop.requests == asked  # fetched within the hour: not asked again
    stale = FetchConfig(**{**FAST.__dict__, "fresh_s": 0.0})
    later = PhotoFetcher(tmp_path / "photos", stale).fetch([shop.url + p for p in paths[:3] + ["/busy.png"]])
    assert [f.path for f in later] == [f.path for f in again] and not any(f.downloaded for f in later)
    assert shop.requests == asked + 2 and shop.bodies == bodies  # 304s for the two with validators, no request
    # for the others (nothing to ask them with: the URL keys them)
    asked = shop.requests
    remembered = PhotoFetcher(tmp_path / "photos", FAST).fetch([shop.url + "/missing.png"])[0]
    assert remembered.cause == "not found (404)" and "not asked again" in remembered.detail
    assert shop.requests == asked  # a failure is remembered for an hour, not asked again at every build
    later = PhotoFetcher(tmp_path / "photos", FetchConfig(failure_ttl_s=0)).fetch([shop.url + "/missing.png"])[0]
    assert later.cause == "not found (404)" and shop.requests == asked + 1


def test_a_damaged_record_in_the_store_is_fetched_again(shop, tmp_path):
    fetcher = PhotoFetcher(tmp_path / "photos", FAST)
    first = fetcher.fetch([shop.url + "/ok/b.png"])[0]
    for meta in (tmp_path / "photos" / "meta").iterdir():
        meta.write_text("{not json")
    again = fetcher.fetch([shop.url + "/ok/b.png"])[0]
    assert again.downloaded and again.cause == "" and again.path == first.path


def test_downloads_run_in_parallel_and_a_stalled_host_holds_up_no_other(tmp_path):
    fast, stalled = Shop(delay=0.3), Shop()
    try:
        # twice the stalled host's share of the pool first in the queue: waiting for it must hold no pool slot
        urls = [f"{stalled.url}/stall-{i}.png" for i in range(16)] + [f"{fast.url}/ok/{i}.png" for i in range(24)]
        start = time.monotonic()
        got = PhotoFetcher(tmp_path / "photos", FetchConfig(read_s=4.0, attempts=1)).fetch(urls)
        assert [f.cause for f in got[:16]] == ["timed out"] * 16 and not any(f.cause for f in got[16:])
        assert fast.most >= 8  # at least 8 at once on one host
        last_fast = max(t for p, t in fast.finished.items())
        assert last_fast - start < 4.0  # every fast photo (0.9 s of work, 8 at once) served before the stalled
        # host's first timeout
    finally:
        fast.close()
        stalled.close()


def test_an_export_s_photos_by_url_are_fetched_at_load_and_failures_counted_by_cause(shop, tmp_path, monkeypatch):
    from core.data.load import load_catalog
    monkeypatch.setenv("ATELIER_CACHE", str(tmp_path / "cache"))
    rows = [("A", "/ok/a.png"), ("B", "/missing.png"), ("C", "/page.png"), ("D", "/ok/d.png"), ("E", "")]
    feed = tmp_path / "feed.tsv"
    feed.write_text("id\ttitle\timage_link\n" + "".join(f"{i}\tShirt {i}\t{shop.url + p if p else ''}\n"
                                                       for i, p in rows))
    cat = load_catalog(feed)
    paths = cat.products["image_path"]
    assert paths["A"].startswith(str(tmp_path / "cache" / "photos"))
    assert [bool(paths[i]) for i, _ in rows] == [True, False, False, True, False]
    problems = {i.problem: i for i in cat.report.issues}
    assert problems["photos by URL: not found (404)"].examples[0].startswith("B (")
    assert problems["photos by URL: not an image"].count == 1
    assert problems["products without a photo"].examples == ["E"]
    assert cat.counts()["missing_images"] == 3


def test_a_photo_that_cannot_be_asked_again_is_kept_and_a_bad_address_is_named(shop, tmp_path):
    fetcher = PhotoFetcher(tmp_path / "photos", FAST)
    first = fetcher.fetch([shop.url + "/ok/c.png"])[0]
    shop.close()  # the server is gone when the photo is next checked
    stale = PhotoFetcher(tmp_path / "photos", FetchConfig(**{**FAST.__dict__, "fresh_s": 0.0, "attempts": 1}))
    again = stale.fetch([first.url, "http://[::1/a.jpg", "http://exämple..com/a.jpg"])
    assert again[0].path == first.path and again[0].cause == ""  # the good photo it had, not "could not connect"
    assert [f.cause for f in again[1:]] == ["bad address", "bad address"]


def test_a_server_trickling_bytes_is_cut_off_by_the_limit_in_all(shop, tmp_path):
    cfg = FetchConfig(read_s=1.0, total_s=1.5, timeout_attempts=1)
    start = time.monotonic()
    got = PhotoFetcher(tmp_path / "photos", cfg).fetch([shop.url + "/trickle.png"])[0]
    assert got.cause == "timed out" and "in all" in got.detail
    assert time.monotonic() - start < 10  # not the 200 s the trickle would take
