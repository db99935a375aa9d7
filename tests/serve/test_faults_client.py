"""Hostile clients against the retrieval service (issue 20, defects 3, 6, 7, 8 and 10): decompression bombs,
input that cannot be echoed, deeply nested JSON, connections that never finish their headers, a 413's
metrics label, non-finite numbers, booleans for integers, bodies that are not UTF-8 and docs with no internet.
Each test replays one case and asserts the service answers it with a 4xx and keeps serving."""
from __future__ import annotations

import io
import json
import re
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.cache import ArtefactCache
from core.serve.release import added_products, prepare, publish
from core.serve.service import Service, ServiceConfig
from core.serve.api import create_app

pytestmark = pytest.mark.faults

SPEC = "synthetic:60:0"
TINY = "random:atelier-tiny"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> ArtefactCache:
    cache = ArtefactCache(tmp_path_factory.mktemp("faults-client") / "cache")
    publish(cache, prepare(SPEC, backbone=TINY, cache=cache, models=("two_tower",)).manifest)
    return cache


@pytest.fixture
def own_cache(cache, tmp_path) -> ArtefactCache:
    import shutil
    shutil.copytree(cache.root, tmp_path / "own-cache")
    return ArtefactCache(tmp_path / "own-cache")


def loaded(cache: ArtefactCache, **cfg) -> Service:
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0, **cfg), cache)
    service.load_current()
    return service


@pytest.fixture(scope="module")
def client(cache):
    with TestClient(create_app(loaded(cache), start=False)) as client:
        yield client


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


def some_id(client) -> str:
    return client.app.state.service.release.product_ids[0]


def posted_json(client, path: str, body: str | bytes):
    return client.post(path, content=body, headers={"content-type": "application/json"})


# ---------------------------------------------------------------- 3. decompression bombs

def test_a_duplicate_id_is_refused_before_its_photo_is_decoded(own_cache, monkeypatch):
    import core.embeddings.backbone
    service = loaded(own_cache)
    bomb = encoded(Image.new("1", (6000, 5000)), "PNG")
    decoded = []
    original = core.embeddings.backbone.Image.Image.load
    monkeypatch.setattr(core.embeddings.backbone.Image.Image, "load", lambda self: decoded.append(self.size) or original(self))
    with TestClient(create_app(service, start=False)) as client:
        got = client.post("/products", data={"id": some_id(client), "title": "clash"},
                          files={"photo": ("bomb.png", bomb, "image/png")})
    assert got.status_code == 409
    assert decoded == []


def test_a_photo_over_the_pixel_limit_is_refused_without_decoding_it(own_cache, monkeypatch):
    import core.embeddings.backbone
    service = loaded(own_cache)
    bomb = encoded(Image.new("1", (6000, 5000)), "PNG")  # 30 MP in 30 KB
    decoded = []
    original = core.embeddings.backbone.Image.Image.load
    monkeypatch.setattr(core.embeddings.backbone.Image.Image, "load", lambda self: decoded.append(self.size) or original(self))
    limit = service.cfg.max_photo_pixels
    assert 6000 * 5000 > limit >= 12_000_000  # a 12 MP phone photo fits
    with TestClient(create_app(service, start=False)) as client:
        for got in (client.post("/products", data={"id": "bomb-1", "title": "Bomb"},
                                files={"photo": ("bomb.png", bomb, "image/png")}),
                    client.post("/search/image", files={"file": ("bomb.png", bomb, "image/png")})):
            assert got.status_code == 413, got.text
            assert "6000x5000" in got.json()["detail"] and f"{limit:,}" in got.json()["detail"]
        assert client.get("/products/bomb-1").status_code == 404
    assert [size for size in decoded if size[0] * size[1] > limit] == []
    assert added_products(own_cache, SPEC).records() == []


def test_only_the_documented_formats_are_accepted_and_served_as_what_they_are(own_cache):
    service = loaded(own_cache)
    photo = Image.new("RGB", (64, 96), (30, 120, 200))
    with TestClient(create_app(service, start=False)) as client:
        for fmt in ("TIFF", "GIF", "BMP"):
            got = client.post("/products", data={"id": f"x-{fmt}", "title": "x"},
                              files={"photo": (f"p.{fmt.lower()}", encoded(photo, fmt), "image/x")})
            assert got.status_code == 415, (fmt, got.text)
            assert "JPEG, PNG or WebP" in got.json()["detail"]
            assert client.post("/search/image", files={"file": ("p", encoded(photo, fmt), "image/x")}
                               ).status_code == 415
        for fmt, media_type in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
            data = encoded(photo, fmt)
            got = client.post("/products", data={"id": f"ok-{fmt}", "title": "Blue top"},
                              files={"photo": ("p", data, "application/octet-stream")})
            assert got.status_code == 201, got.text
            image = client.get(f"/products/ok-{fmt}/image")
            assert image.headers["content-type"] == media_type and image.content == data


def test_photo_decodes_in_flight_are_bounded(own_cache):
    service = loaded(own_cache, max_decodes=1, decode_wait_s=0.1)
    photo = encoded(Image.new("RGB", (64, 64), (200, 30, 30)), "PNG")
    with TestClient(create_app(service, start=False)) as client:
        with service.decoding():  # another decode holds the only slot
            busy = client.post("/search/image", files={"file": ("p.png", photo, "image/png")})
            added = client.post("/products", data={"id": "busy-1", "title": "x"},
                                files={"photo": ("p.png", photo, "image/png")})
        for got in (busy, added):
            assert got.status_code == 503 and got.headers["retry-after"]
        assert client.post("/search/image", files={"file": ("p.png", photo, "image/png")}).status_code == 200


# ---------------------------------------------------------------- 6. client errors answered as 500

SURROGATE = '"\\ud800"'  # a JSON string holding a lone surrogate: valid JSON, not valid Unicode text


@pytest.mark.parametrize("path, body", [
    ("/search/text", '{"text": %s}' % SURROGATE),
    ("/recommendations", '{"text": %s}' % SURROGATE),
    ("/recommendations", '{"liked": [%s]}' % SURROGATE),
    ("/embeddings", '{"ids": [%s]}' % SURROGATE),
    ("/embeddings", '{"ids": ["x"], "kind": %s}' % SURROGATE),
])
def test_a_lone_surrogate_is_a_client_error(client, path, body):
    got = posted_json(client, path, body)
    assert 400 <= got.status_code < 500, got.text  # 422 (not valid text) or 404 (no product has that id)
    assert "\\ud800" in json.dumps(got.json())  # echoed escaped, so the reply could be encoded
    assert client.get("/healthz").status_code == 200


def test_deeply_nested_json_is_a_client_error(client):
    got = client.post("/products", data={"id": "deep-1", "title": "x", "attributes": "[" * 100_000})
    assert got.status_code == 422 and "nested" in got.json()["detail"]
    got = posted_json(client, "/search/text", '{"text": ' + "[" * 100_000)
    assert got.status_code == 422


def test_error_bodies_do_not_echo_unbounded_input(client):
    many = posted_json(client, "/embeddings", json.dumps({"ids": [f"id-{i}" for i in range(800_000)]}))
    assert many.status_code == 422 and len(many.content) < 2_000
    long_id = "x" * 8_000
    for got in (posted_json(client, "/embeddings", json.dumps({"ids": [long_id]})),
                client.get(f"/products/{long_id}"),
                client.get(f"/customers/{long_id}/recommendations"),
                client.post("/search/text", json={"text": long_id})):
        assert 400 <= got.status_code < 500 and len(got.content) < 2_000, (got.status_code, len(got.content))
    unknown = {f"key-{i}-" + "k" * 1000: "v" for i in range(200)}
    got = client.post("/products", data={"id": "keys-1", "title": "x", "attributes": json.dumps(unknown)})
    assert got.status_code == 422 and len(got.content) < 2_000


# ---------------------------------------------------------------- 8. metrics

def test_a_413_by_content_length_is_counted_under_its_route(cache):
    service = loaded(cache, max_upload_bytes=10_000)
    with TestClient(create_app(service, start=False)) as client:
        got = client.post("/search/image", files={"file": ("big.jpg", b"\xff" * 200_000, "image/jpeg")})
        assert got.status_code == 413
        text = client.get("/metrics").text
    assert 'atelier_requests_total{endpoint="/search/image",method="POST",status="413"} 1.0' in text
    assert 'endpoint="unmatched"' not in text


# ---------------------------------------------------------------- 10. small ones

@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_attribute_values_are_refused(own_cache, value):
    service = loaded(own_cache)
    with TestClient(create_app(service, start=False)) as client:
        got = client.post("/products", data={"id": "nan-1", "title": "x", "attributes": '{"colour": %s}' % value})
        assert got.status_code == 422 and value in got.json()["detail"]
        assert client.get("/products/nan-1").status_code == 404
        for value in ("1e400", "true"):  # a number too big for a float is inf; a boolean is no attribute
            got = client.post("/products", data={"id": "nan-2", "title": "x", "attributes": '{"colour": %s}' % value})
            assert got.status_code == 422, value


def test_a_boolean_is_not_a_k(client):
    assert client.post("/search/text", json={"text": "dress", "k": True}).status_code == 422
    assert client.post("/recommendations", json={"text": "dress", "k": True}).status_code == 422
    assert posted_json(client, "/search/text", '{"text": "dress", "k": NaN}').status_code == 422
    assert client.post("/search/text", json={"text": "dress", "k": 3}).status_code == 200


def test_a_body_that_is_not_utf8_gets_the_status_of_malformed_json(client):
    malformed = posted_json(client, "/search/text", b'{"text": ')
    latin1 = posted_json(client, "/search/text", '{"text": "caf\xe9"}'.encode("latin-1"))
    assert malformed.status_code == latin1.status_code == 422
    assert "UTF-8" in latin1.text


def test_the_docs_load_nothing_from_another_host(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)', page.text)
    assert any(url.endswith(".js") for url in assets) and any(url.endswith(".css") for url in assets)
    for url in assets:
        assert url.startswith("/"), url
        asset = client.get(url)
        assert asset.status_code == 200 and (len(asset.content) > 10_000 or url.endswith(".png")), url
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


# ---------------------------------------------------------------- 7. connections that never finish their headers

def test_a_connection_that_never_finishes_its_headers_is_closed(cache):
    import uvicorn

    from core.serve.httpserver import ServerLimits, uvicorn_config
    service = loaded(cache)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    limits = ServerLimits(header_timeout_s=0.5)
    server = uvicorn.Server(uvicorn_config(create_app(service, start=False), "127.0.0.1", port, limits))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.time() + 20
        while not server.started:
            assert time.time() < deadline and thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        held = []
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            held.append(sock)
        silent = socket.create_connection(("127.0.0.1", port))  # sends nothing at all
        held.append(silent)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        for sock in held:
            sock.settimeout(5 * limits.header_timeout_s)
            reply = b""
            while chunk := sock.recv(4096):  # the server closes it: recv returns b"" (a timeout here fails)
                reply += chunk
            assert reply == b"" or reply.startswith(b"HTTP/1.1 408"), reply
            sock.close()
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        with socket.create_connection(("127.0.0.1", port)) as huge:  # headers without end, quickly
            huge.settimeout(5)
            try:
                for i in range(200):
                    huge.sendall(b"GET /healthz HTTP/1.1\r\n" if i == 0 else b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000))
            except (BrokenPipeError, ConnectionResetError):
                pass  # closed while we were still sending: what it should do
            try:
                assert huge.recv(4096).startswith(b"HTTP/1.1 431")
            except ConnectionResetError:
                pass  # closed with our unread bytes in its buffer: a reset may overtake the 431 (held: a timeout)
        with socket.create_connection(("127.0.0.1", port)) as piped:  # a body over the header cap is not headers
            body = b'{"text": "' + b"x" * 100_000 + b'"}'
            piped.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"POST /search/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body) + b"GET /healthz HTTP/1.1\r\n")
            piped.settimeout(5)
            replies = b""
            while chunk := piped.recv(65536):
                replies += chunk
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", replies)  # a response follows the last body directly
            assert statuses[:2] == [b"200", b"422"], statuses  # the third, never finished, may get its 408
    finally:
        server.should_exit = True
        thread.join(10)
