"""Faults replayed against the store of added products and the service's versions: a damaged store file, a
process killed in the middle of a publish (of an addition: test_store.py), a damaged uploaded photo, a swap
that fails, and added products used through every capability of every served model. Each asserts what
survives."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.serve.release import added_products, current, prepare, publish
from core.serve.service import Service, ServiceConfig
from core.serve.api import create_app
from tests.serve.test_service import SPEC, TINY, loaded, png, with_photo
from tests.serve.test_store import record

pytestmark = pytest.mark.faults
PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def published(published_synthetic):
    """An artefact cache with one published version of the synthetic catalogue (test_service's)."""
    assert current(published_synthetic, SPEC) is not None
    return published_synthetic


@pytest.fixture
def own_cache(published, tmp_path):
    """A copy of the published cache (its store of added products is empty, beside it in tmp_path)."""
    import shutil
    from core.cache import ArtefactCache
    shutil.copytree(published.root, tmp_path / "cache")
    return ArtefactCache(tmp_path / "cache")


def add(client: TestClient, pid: str, photo: bytes | None = None, **fields) -> dict:
    files = {"photo": ("p.png", photo, "image/png")} if photo else None
    got = client.post("/products", data={"id": pid, "title": f"Striped top {pid}", **fields}, files=files)
    assert got.status_code == 201, got.text
    return got.json()


# ---------------------------------------------------------------- the store of added products

def test_a_damaged_store_loses_only_the_damaged_record_and_keeps_the_file_aside(own_cache, caplog):
    service = loaded(own_cache)
    with TestClient(create_app(service, start=False)) as client:
        for i in range(4):
            add(client, f"added-{i}", png(colour=(40 * i, 90, 200)))
    store = service.added
    lines = store.log_path.read_bytes().splitlines(keepends=True)
    damaged = lines[0] + lines[1].replace(b"added-1", b"added-X") + lines[2] + lines[3][:-10]  # a changed record, a torn tail
    store.log_path.write_bytes(damaged)
    photos = sorted(p.name for p in store.photo_dir.iterdir())

    with caplog.at_level(logging.ERROR):
        restarted = loaded(own_cache)
    assert sorted(restarted.release.added) == ["added-0", "added-2"]
    named = " ".join(r.getMessage() for r in caplog.records)
    assert "record 2 (product 'added-X')" in named and "record 4 (product 'added-3')" in named
    aside = list(store.log_path.parent.glob(f"{store.log_path.name}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damaged  # the file as it was, kept whole
    assert sorted(p.name for p in store.photo_dir.iterdir()) == photos  # no photo deleted
    with TestClient(create_app(restarted, start=False)) as client:
        problems = client.get("/readyz").json()["problems"]
        assert any("added-X" in p for p in problems) and any("added-3" in p for p in problems)
        add(client, "added-4")  # the repaired log takes new records
    assert [r["id"] for r in added_products(own_cache, SPEC).records()] == ["added-0", "added-2", "added-4"]


def test_kill_9_in_the_middle_of_publishing_leaves_a_readable_current_version(published, tmp_path):
    from core.cache import ArtefactCache
    manifest = current(published, SPEC)
    publisher = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(PROJECT)!r})
        from core.cache import ArtefactCache
        from core.serve.release import publish
        manifest = json.loads(sys.argv[1])
        cache = ArtefactCache({str(tmp_path / "cache")!r})
        for i in range(100000):
            publish(cache, {{**manifest, "version": f"v{{i}}", "padding": "x" * 200000}})
            print(i, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", publisher, json.dumps(manifest)], stdout=subprocess.PIPE, text=True)
    for _ in range(20):
        proc.stdout.readline()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    got = current(ArtefactCache(tmp_path / "cache"), SPEC)
    assert got is not None and got["version"].startswith("v") and got["catalog"] == manifest["catalog"]


# ---------------------------------------------------------------- damaged photos and failed swaps

def test_a_damaged_uploaded_photo_neither_blocks_start_up_nor_loses_the_product(own_cache):
    service = loaded(own_cache)
    with TestClient(create_app(service, start=False)) as client:
        add(client, "with-photo", png(64))
        add(client, "other", png(64, (10, 200, 10)))
    damaged = next(p for p in service.added.photo_dir.iterdir() if p.read_bytes() == png(64))
    damaged.write_bytes(png(64)[:40])  # truncated on disk

    restarted = Service(ServiceConfig(catalog=SPEC, poll_s=0), own_cache)
    restarted.start()
    deadline = time.time() + 60
    while restarted.release is None:
        assert restarted.load_error is None, restarted.load_error
        assert time.time() < deadline, "never ready"
        time.sleep(0.1)
    restarted.stop()
    with TestClient(create_app(restarted, start=False)) as client:
        ready = client.get("/readyz").json()
        assert ready["added_products"] == 2
        assert any("with-photo" in p and "served without its photo" in p for p in ready["problems"])
        assert client.get("/products/with-photo").json()["image_url"] is None
        assert client.get("/products/other/image").content == png(64, (10, 200, 10))
    assert damaged.exists()  # the damaged file is left for a person to look at


def test_the_watcher_survives_a_failed_swap_counts_it_and_takes_the_next_version(own_cache, monkeypatch):
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0.05), own_cache)
    with TestClient(create_app(service)) as client:
        deadline = time.time() + 120
        while client.get("/readyz").status_code != 200:
            assert time.time() < deadline
            time.sleep(0.05)
        first = service.release.version
        add(client, "added-photo", png(48))
        # the photo is damaged while the service runs, and the next version's warm-up fails outright
        photo = next(service.added.photo_dir.iterdir())
        photo.write_bytes(b"not a photo any more")
        from core.serve.release import Release
        real_warm_up = Release.warm_up
        monkeypatch.setattr(Release, "warm_up", lambda self: (_ for _ in ()).throw(RuntimeError("disk full")))
        second = prepare(SPEC, backbone=TINY, cache=own_cache, models=("two_tower", "popularity"))
        publish(own_cache, second.manifest)
        while "atelier_version_swap_failures_total 1.0" not in client.get("/metrics").text:
            assert time.time() < deadline, "the failed swap was never counted"
            time.sleep(0.05)
        assert service._watcher.is_alive() and service.release.version == first
        monkeypatch.setattr(Release, "warm_up", real_warm_up)
        third = prepare(SPEC, backbone=TINY, cache=own_cache, models=("popularity", "two_tower"))
        publish(own_cache, third.manifest)
        while client.get("/readyz").json()["version"] != third.version:
            assert time.time() < deadline, "the next version was never swapped in"
            time.sleep(0.05)
        assert "atelier_version_swaps_total 1.0" in client.get("/metrics").text
        ready = client.get("/readyz").json()
        assert ready["added_products"] == 1 and any("added-photo" in p for p in ready["problems"])


# ---------------------------------------------------------------- an added product, through every model

def test_an_added_product_works_through_every_capability_of_every_model(own_cache):
    service = loaded(own_cache)
    source = with_photo(service)
    record = service.release.product(source)
    photo = open(record["image_path"], "rb").read()
    with TestClient(create_app(service, start=False)) as client:
        add(client, "added-1", photo, description=record["description"], attributes=json.dumps(record["attributes"]))
        assert set(service.release.models) == {"two_tower", "graphsage"}
        for model in service.release.models:
            liked = client.post("/recommendations", json={"liked": ["added-1"], "k": 10, "model": model})
            assert liked.status_code == 200, (model, liked.text)
            ids = [r["id"] for r in liked.json()["results"]]
            assert len(ids) == 10 and "added-1" not in ids  # what was liked is not recommended back
            both = client.post("/recommendations", json={"liked": ["added-1", source], "text": "striped", "model": model})
            assert both.status_code == 200, (model, both.text)
            vector = client.post("/embeddings", json={"ids": ["added-1", source], "kind": model}).json()["embeddings"]
            assert vector[0]["vector"] is not None and len(vector[0]["vector"]) == len(vector[1]["vector"])
            customer = str(service.release.data.customer_ids[0])
            got = client.get(f"/customers/{customer}/recommendations", params={"model": model, "k": 100})
            assert got.status_code == 200
        assert client.get("/products/added-1/similar", params={"kind": "image"}).json()["results"][0]["id"] == source


def test_a_stored_photo_over_the_upload_limits_is_not_decoded_when_the_product_is_re_added(own_cache):
    """A photo stored before the limits existed (here: over the pixel cap) is held to them at start-up."""
    from io import BytesIO

    from PIL import Image
    big = BytesIO()
    Image.new("RGB", (3000, 3000), (0, 0, 0)).save(big, format="PNG")  # 9 MP: compresses to a few KB
    store = added_products(own_cache, SPEC)
    store.append({"id": "old-big", "title": "Old upload", "description": "", "attributes": {}}, big.getvalue(), ".png")
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0, max_photo_pixels=1_000_000), own_cache)
    service.load_current()
    assert service.release.product("old-big")["image_path"] == ""
    assert any("old-big" in p and "limit" in p for p in service.added_problems)


def test_a_catalogue_changed_after_its_build_is_loaded_once_not_on_every_poll(tmp_path):
    """The published version names the catalogue as built; when the files changed since, the service
    serves their content as of now (another version id). The watcher must not take that for a new
    publication and reload the whole version on every poll."""
    from core.cache import ArtefactCache
    from tests.test_faults_nopurchases import write_shop
    shop = write_shop(tmp_path / "shop", "user_id,item_id,timestamp\nu1,p1,2020-01-01\nu2,p3,2020-01-02\n")
    cache = ArtefactCache(tmp_path / "cache")
    publish(cache, prepare(str(shop), backbone=TINY, cache=cache, models=("popularity",)).manifest)
    with open(shop / "items.csv", "a") as f:
        f.write("p99,Red solid top,A red solid top.,,red,solid,top\n")
    service = Service(ServiceConfig(catalog=str(shop), poll_s=0), cache)
    service.load_current()
    assert service.release.version != current(cache, str(shop))["version"]
    assert not service.check_for_new_version() and not service.check_for_new_version()


# ---------------------------------------------------------------- edges found in review

def test_an_id_stored_but_not_served_is_a_409_and_an_mpo_photo_is_a_jpeg(own_cache):
    from io import BytesIO

    from PIL import Image
    service = loaded(own_cache)
    service.added.append(record("stored-only"), None)  # e.g. left out of this version (see /readyz)
    mpo = BytesIO()
    Image.new("RGB", (64, 64), (200, 0, 0)).save(mpo, format="MPO", save_all=True,
                                                 append_images=[Image.new("RGB", (64, 64), (0, 200, 0))])
    with TestClient(create_app(service, start=False)) as client:
        assert client.post("/products", data={"id": "stored-only", "title": "Again"}).status_code == 409
        got = client.post("/products", data={"id": "phone", "title": "Phone photo"},
                          files={"photo": ("p.jpg", mpo.getvalue(), "image/jpeg")})
        assert got.status_code == 201, got.text
        assert client.get("/products/phone/image").headers["content-type"] == "image/jpeg"


def test_a_first_load_that_fails_is_tried_again_and_an_unreadable_store_does_not_block_it(own_cache, monkeypatch):
    import core.serve.service as service_module
    real_load, calls = service_module.load, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("the cache disk is not mounted yet")
        return real_load(*args, **kwargs)
    monkeypatch.setattr(service_module, "load", flaky)
    service = Service(ServiceConfig(catalog=SPEC, poll_s=0, retry_s=0.05), own_cache)
    service.added.log_path.mkdir(parents=True)  # a folder where the log should be: reading it fails
    service.start()
    deadline = time.time() + 60
    while service.release is None:
        assert time.time() < deadline, service.load_error
        time.sleep(0.05)
    service.stop()
    assert len(calls) == 2 and service.load_error is None
    assert any("added products cannot be read" in p for p in service.added_problems)


def test_a_recommender_that_cannot_take_a_product_leaves_it_added_everywhere_else(own_cache, monkeypatch):
    service = loaded(own_cache)
    broken = type(service.release.models["graphsage"])
    monkeypatch.setattr(broken, "add_product", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory")))
    source = with_photo(service)
    with TestClient(create_app(service, start=False)) as client:
        add(client, "added-1", png(40))
        assert client.get("/products/added-1").status_code == 200
        assert client.post("/search/text", json={"text": "Striped top added-1", "k": 100}).status_code == 200
        for model in ("two_tower", "graphsage"):
            got = client.post("/recommendations", json={"liked": ["added-1", source], "k": 100, "model": model})
            assert got.status_code == 200, (model, got.text)
        two_tower = client.post("/recommendations", json={"liked": [source], "k": 100, "model": "two_tower"}).json()
        graphsage = client.post("/recommendations", json={"liked": [source], "k": 100, "model": "graphsage"}).json()
        assert "added-1" not in {r["id"] for r in graphsage["results"]}
        assert len(two_tower["results"]) == 100
        add(client, "added-2")  # later products still reach every index and the models that can take them
        assert client.get("/products/added-2").status_code == 200
