"""Hostile clients against the retrieval service (issue 20, defects 3, 6 and 10): decompression bombs,
input that cannot be echoed, deeply nested JSON, non-finite numbers, booleans for integers and bodies that
are not UTF-8 (defect 7, headers never finished: test_httpserver.py; 8, a 413's metrics label:
test_guard.py; docs with no internet: test_api.py). Each test replays one case and asserts the service
answers it with a 4xx and keeps serving."""
from __future__ import annotations

import io
import json

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
