"""The retrieval service, through an in-process client: every endpoint, bad input, micro-batching, a product
added without retraining, and the swap to a newly published version under load."""
from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.cache import ArtefactCache
from core.serve.release import added_products, current, prepare, publish
from core.serve.service import Service, ServiceConfig
from core.serve.api import create_app

SPEC = "synthetic:120:0"
TINY = "random:atelier-tiny"
UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def cache(published_synthetic) -> ArtefactCache:
    """An artefact cache holding one published version of the synthetic catalogue (as after a build)."""
    assert current(published_synthetic, SPEC) is not None
    return published_synthetic


def loaded(cache: ArtefactCache, **cfg) -> Service:
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0, max_upload_bytes=UPLOAD_LIMIT, **cfg), cache)
    service.load_current()
    return service


@pytest.fixture(scope="module")
def served(cache) -> tuple[Service, TestClient]:
    """A loaded service nobody adds products to (tests that add one get their own cache)."""
    service = loaded(cache)
    with TestClient(create_app(service, start=False)) as client:
        yield service, client


@pytest.fixture
def own_cache(cache, tmp_path) -> ArtefactCache:
    """A copy of the published cache, for a test that changes it."""
    import shutil
    shutil.copytree(cache.root, tmp_path / "own-cache")
    return ArtefactCache(tmp_path / "own-cache")


def with_photo(service: Service) -> str:
    products = service.release.catalog.products
    return str(products.index[products["image_path"] != ""][0])


def png(size: int = 32, colour=(200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------- every endpoint

def test_health_ready_and_metrics(served):
    service, client = served
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["version"] == current(service.cache, SPEC)["version"]
    assert ready["models"] == ["two_tower", "graphsage"] and ready["products"] == 120
    assert set(ready["kinds"]) == {"image", "text", "hybrid", "texture"}
    pid = with_photo(service)
    client.get(f"/products/{pid}/similar")
    client.get("/products/nope")
    text = client.get("/metrics").text
    assert 'atelier_requests_total{endpoint="/products/{product_id}/similar",method="GET",status="200"}' in text
    assert 'atelier_request_errors_total{endpoint="/products/{product_id}",kind="client"}' in text
    assert 'atelier_stage_seconds_count{endpoint="/products/{product_id}/similar",stage="search"}' in text
    assert 'atelier_request_seconds_bucket{endpoint="/products/{product_id}/similar",le="0.01"}' in text
    assert f'atelier_artefact_version{{version="{ready["version"]}"}} 1.0' in text


def test_product_and_its_photo(served):
    service, client = served
    pid = with_photo(service)
    got = client.get(f"/products/{pid}").json()
    row = service.release.catalog.products.loc[pid]
    assert got["title"] == row["title"] and got["attributes"]["colour"] == row["colour"] and not got["added"]
    photo = client.get(got["image_url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/png"
    assert photo.content == open(row["image_path"], "rb").read()


def test_similar_is_the_build_s_neighbour_table(served):
    service, client = served
    pid = with_photo(service)
    for kind in ("hybrid", "image", "text", "texture"):
        got = client.get(f"/products/{pid}/similar", params={"k": 7, "kind": kind}).json()
        expected = service.release.built.neighbours(pid, kind, 7)
        assert [r["id"] for r in got["results"]] == expected["product_id"].tolist()
        assert np.allclose([r["score"] for r in got["results"]], expected["score"], atol=1e-5)
    beyond_table = client.get(f"/products/{pid}/similar", params={"k": 80}).json()["results"]
    assert len(beyond_table) == 80 and pid not in {r["id"] for r in beyond_table}


def test_text_and_photo_search_match_a_direct_query(served):
    service, client = served
    release = service.release
    got = client.post("/search/text", json={"text": "red striped dress", "k": 5}).json()
    direct = release.search(release.backbone.encode_text(["red striped dress"])[0], "hybrid", 5)
    assert [r["id"] for r in got["results"]] == [h.id for h in direct]
    pid = with_photo(service)
    photo = open(release.product(pid)["image_path"], "rb").read()
    got = client.post("/search/image", files={"file": ("q.png", photo, "image/png")}, data={"k": "3"}).json()
    assert got["results"][0]["id"] == pid and got["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    textured = client.post("/search/image", files={"file": ("q.png", photo, "image/png")},
                           data={"kind": "texture", "k": "3"}).json()
    assert textured["results"][0]["id"] == pid


def test_customer_recommendations_are_the_model_s(served):
    service, client = served
    release = service.release
    customer = str(release.data.customer_ids[0])
    bought = set(release.data.product_ids[release.data.history(customer)])
    for model in ("two_tower", "graphsage"):
        got = client.get(f"/customers/{customer}/recommendations", params={"k": 5, "model": model}).json()
        rows, _ = release.models[model].recommend([customer], 5)
        assert [r["id"] for r in got["results"]] == release.data.product_ids[rows[0]].tolist()
        assert got["purchases"] == len(release.data.history(customer))
        fresh = client.get(f"/customers/{customer}/recommendations",
                           params={"k": 5, "model": model, "exclude_bought": True}).json()
        assert len(fresh["results"]) == 5 and not bought & {r["id"] for r in fresh["results"]}
    assert client.get(f"/customers/{customer}/recommendations").json()["model"] == "two_tower"  # the default


def test_new_customer_recommendations_from_likes_and_words(served):
    service, client = served
    liked = service.release.catalog.products.index[:2].tolist()
    for model in ("two_tower", "graphsage"):
        got = client.post("/recommendations", json={"liked": liked, "k": 6, "model": model}).json()
        assert len(got["results"]) == 6 and not set(liked) & {r["id"] for r in got["results"]}
    words = client.post("/recommendations", json={"text": "navy checked", "k": 4}).json()
    assert len(words["results"]) == 4
    both = client.post("/recommendations", json={"liked": liked, "text": "navy checked", "k": 4,
                                                  "model": "graphsage"})
    assert both.status_code == 200 and len(both.json()["results"]) == 4


def test_embeddings_are_the_index_vectors(served):
    service, client = served
    release = service.release
    ids = release.catalog.products.index[:3].tolist()
    got = client.post("/embeddings", json={"ids": ids, "kind": "text"}).json()
    assert got["dim"] == release.built.embeddings.text.shape[1]
    assert np.allclose([e["vector"] for e in got["embeddings"]], release.built.embeddings.text[:3], atol=1e-5)
    items = client.post("/embeddings", json={"ids": ids, "kind": "graphsage"}).json()
    assert np.allclose([e["vector"] for e in items["embeddings"]],
                       release.models["graphsage"].item_vectors()[:3], atol=1e-5)


# ---------------------------------------------------------------- bad input

def test_bad_input_gets_a_clear_status_and_the_service_goes_on(served):
    service, client = served
    pid = with_photo(service)

    def detail(response) -> str:
        return json.dumps(response.json()["detail"])
    for path in ("/products/nope", "/products/nope/image", "/products/nope/similar"):
        got = client.get(path)
        assert got.status_code == 404 and "'nope'" in detail(got)
    got = client.get("/customers/nobody/recommendations")
    assert got.status_code == 404 and "'nobody'" in detail(got)
    got = client.post("/recommendations", json={"liked": [pid, "ghost"]})
    assert got.status_code == 404 and "'ghost'" in detail(got) and pid not in detail(got)
    assert client.post("/embeddings", json={"ids": ["ghost"]}).status_code == 404
    assert "empty query" in detail(client.post("/search/text", json={"text": "   "}))
    assert client.post("/search/text", json={"text": "x" * 501}).status_code == 422
    for k in (0, 101):
        assert client.get(f"/products/{pid}/similar", params={"k": k}).status_code == 422
        assert client.post("/search/text", json={"text": "dress", "k": k}).status_code == 422
    assert client.get(f"/products/{pid}/similar", params={"kind": "smell"}).status_code == 422
    got = client.get(f"/customers/{service.release.data.customer_ids[0]}/recommendations", params={"model": "magic"})
    assert got.status_code == 422 and "two_tower" in detail(got)
    assert client.post("/recommendations", json={"k": 3}).status_code == 422  # nothing liked, nothing said
    assert client.post("/embeddings", json={"ids": [pid], "kind": "smell"}).status_code == 422

    def upload(data: bytes):
        return client.post("/search/image", files={"file": ("q.jpg", data, "image/jpeg")})
    assert upload(b"%PDF-1.4 not a photo").status_code == 415
    assert upload(png(64)[:60]).status_code == 422  # a PNG cut short
    assert upload(b"").status_code == 422
    too_big = upload(b"\xff" * (UPLOAD_LIMIT + 100_000))
    assert too_big.status_code == 413 and str(UPLOAD_LIMIT) in detail(too_big)
    assert client.get("/healthz").status_code == 200
    assert client.post("/search/text", json={"text": "dress"}).status_code == 200


def test_product_text_is_data_not_html(served):
    service, client = served
    got = client.get(f"/products/{with_photo(service)}")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-content-type-options"] == "nosniff"


def test_not_ready_until_a_version_is_loaded(cache):
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0), cache)
    with TestClient(create_app(service, start=False)) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        got = client.get("/products/x")
        assert got.status_code == 503 and "Retry-After" in got.headers


# ---------------------------------------------------------------- micro-batching

def test_concurrent_text_queries_share_encoder_passes_and_match_one_at_a_time(served):
    service, _ = served
    app = create_app(service, start=False)
    texts = [f"{colour} {kind}" for colour in ("red", "navy", "green", "black") for kind in ("dress", "skirt",
                                                                                              "jacket", "top")]

    async def concurrently() -> list[dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            replies = await asyncio.gather(*(client.post("/search/text", json={"text": t, "k": 5}) for t in texts))
        return [r.json() for r in replies]
    calls_before = service.text_batcher.calls
    got = asyncio.run(concurrently())
    passes = service.text_batcher.calls - calls_before
    assert passes < len(texts) // 2  # 16 queries, a few encoder passes
    release = service.release
    for text, reply in zip(texts, got):
        alone = release.search(release.backbone.encode_text([text])[0], "hybrid", 5)
        assert [r["id"] for r in reply["results"]] == [h.id for h in alone]
        assert np.allclose([r["score"] for r in reply["results"]], [h.score for h in alone], atol=1e-5)


def test_a_repeated_query_is_served_from_the_cache(served):
    service, client = served
    client.post("/search/text", json={"text": "yellow striped skirt"})
    calls, hits = service.text_batcher.calls, service.text_cache.hits
    again = client.post("/search/text", json={"text": "yellow striped skirt"})
    assert again.status_code == 200
    assert service.text_batcher.calls == calls and service.text_cache.hits == hits + 1


# ---------------------------------------------------------------- adding a product

def test_an_added_product_is_found_at_once_and_persisted(own_cache):
    service = loaded(own_cache)
    source = with_photo(service)
    row = service.release.product(source)
    photo = open(row["image_path"], "rb").read()
    models_before = {m: len(r.item_vectors()) for m, r in service.release.models.items()}
    with TestClient(create_app(service, start=False)) as client:
        got = client.post("/products", data={"id": "new-1", "title": row["title"], "description": row["description"],
                                             "attributes": json.dumps(row["attributes"])},
                          files={"photo": ("new.png", photo, "image/png")})
        assert got.status_code == 201, got.text
        assert set(got.json()["kinds"]) == {"image", "text", "hybrid", "texture"}
        for kind in ("image", "hybrid"):  # the same photo and words: the source's nearest product
            similar = client.get(f"/products/{source}/similar", params={"kind": kind, "k": 5}).json()["results"]
            assert similar[0]["id"] == "new-1" and similar[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert client.get("/products/new-1").json()["added"]
        assert client.get("/products/new-1/image").content == photo
        liked = client.post("/recommendations", json={"liked": [source], "k": 10, "model": "two_tower"}).json()
        assert "new-1" in {r["id"] for r in liked["results"]}
        assert client.post("/products", data={"id": "new-1", "title": "again"}).status_code == 409
        assert client.post("/products", data={"id": source, "title": "clash"}).status_code == 409
    # no retraining: each model gained one vector and kept the others as they were
    assert {m: len(r.item_vectors()) for m, r in service.release.models.items()} == \
        {m: n + 1 for m, n in models_before.items()}
    restarted = loaded(own_cache)
    assert restarted.release.has_product("new-1")
    assert restarted.release.similar(source, "image", 1)[0].id == "new-1"


def test_too_many_customers_for_lists_leaves_the_models_answering(own_cache, monkeypatch):
    import core.serve.release
    monkeypatch.setattr(core.serve.release, "LIST_MAX_CUSTOMERS", 5)
    service = loaded(own_cache)
    release = service.release
    customer = str(release.data.customer_ids[0])
    assert not release.recommend_is_lookup("graphsage", 10, False)
    rows, _ = release.models["graphsage"].recommend([customer], 10)
    with TestClient(create_app(service, start=False)) as client:
        got = client.get(f"/customers/{customer}/recommendations", params={"k": 10, "model": "graphsage"}).json()
    assert [r["id"] for r in got["results"]] == release.product_ids[rows[0]].tolist()


def test_bad_products_are_refused_and_nothing_is_stored(own_cache):
    service = loaded(own_cache)
    with TestClient(create_app(service, start=False)) as client:
        for data, status in [({"id": "bad id!", "title": "x"}, 422), ({"id": "ok-1", "title": "  "}, 422),
                             ({"id": "ok-1", "title": "x", "attributes": "[1]"}, 422),
                             ({"id": "ok-1", "title": "x", "attributes": "{not json"}, 422),
                             ({"id": "ok-1", "title": "x", "attributes": '{"smell": "nice"}'}, 422),
                             ({"id": "ok-1", "title": "x", "variant_of": "no-such-product"}, 422)]:
            got = client.post("/products", data=data)
            assert got.status_code == status, (data, got.text)
        got = client.post("/products", data={"id": "ok-1", "title": "x"},
                          files={"photo": ("a.txt", b"hello", "text/plain")})
        assert got.status_code == 415
        assert client.post("/products", data={"id": "ok-2", "title": "<b>Bold</b> shirt"}).status_code == 201
        assert client.get("/products/ok-2").json()["title"] == "<b>Bold</b> shirt"  # stored and returned as text
    assert [r["id"] for r in added_products(own_cache, SPEC).records()] == ["ok-2"]


def test_a_product_added_as_a_colour_variant_is_linked_to_its_group(own_cache, monkeypatch):
    service = loaded(own_cache)
    release = service.release
    source = release.catalog.products.index[0]
    seen = {}
    model = release.models["graphsage"]
    original = model.add_product
    monkeypatch.setattr(model, "add_product", lambda pid, image, text, attributes=None, has_image=True:
                        seen.setdefault(pid, dict(attributes or {})) and original(pid, image, text, attributes,
                                                                                 has_image))
    with TestClient(create_app(service, start=False)) as client:
        got = client.post("/products", data={"id": "variant-1", "title": "Same dress, new colour",
                                             "variant_of": source})
        assert got.status_code == 201, got.text
        assert client.get("/products/variant-1").json()["attributes"]["group_id"] == release.group_of(source)
    assert seen["variant-1"]["group_id"] == str(release.catalog.products.at[source, "group_id"])


# ---------------------------------------------------------------- hot swap

def test_a_new_version_is_swapped_in_while_requests_keep_succeeding(own_cache):
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0.1), own_cache)
    with TestClient(create_app(service)) as client:
        deadline = time.time() + 120
        while client.get("/readyz").status_code != 200:
            assert time.time() < deadline, "the service never became ready"
            time.sleep(0.1)
        first = client.get("/readyz").json()["version"]
        assert client.post("/products", data={"id": "added-before", "title": "Red striped top"}).status_code == 201
        pid = str(service.release.catalog.products.index[0])
        customer = str(service.release.data.customer_ids[0])
        replies: list[tuple[int, str]] = []
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                for got in (client.get(f"/products/{pid}/similar"),
                            client.get(f"/customers/{customer}/recommendations"),
                            client.post("/search/text", json={"text": "navy dress"})):
                    replies.append((got.status_code, got.json().get("version", "")))
        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        # a rebuild with other recommenders publishes another version (what `python -m core build` does)
        second = prepare(SPEC, backbone=TINY, cache=own_cache, models=("two_tower", "popularity"))
        publish(own_cache, second.manifest)
        while client.get("/readyz").json()["version"] != second.version:
            assert time.time() < deadline, "the new version was never swapped in"
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        for t in threads:
            t.join()
        assert second.version != first
        assert {status for status, _ in replies} == {200}
        assert {version for _, version in replies} == {first, second.version}  # both answered, nothing failed
        assert client.get("/products/added-before").status_code == 200  # added products carry over
        assert client.get("/readyz").json()["models"] == ["two_tower", "popularity"]
