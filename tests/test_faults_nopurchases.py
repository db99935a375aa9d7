"""Issue 20, defect 9: a catalogue without purchases (a shop's product export alone, or purchases that cannot be
used) builds, publishes a version without recommenders, and the service, the app and the CLI run on it, saying
why there are no recommendations instead of failing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from core.cache import ArtefactCache
from core.data.load import load_catalog
from core.recs.contract import NoPurchases, no_purchases, require_purchases
from core.serve.release import current, prepare, publish

pytestmark = pytest.mark.faults
PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY = "random:atelier-tiny"
COLOURS = {"red": (200, 30, 40), "blue": (30, 60, 200), "black": (20, 20, 20), "white": (240, 240, 240)}
TYPES = ("dress", "shirt", "trousers")
# what interactions.csv holds, per case; None: no file at all
INTERACTIONS = {
    "no file": None,
    "unknown products": "user_id,item_id,timestamp\nu1,zz1,2020-01-01\nu2,zz2,2020-01-02\nu2,zz1,2020-01-03\n",
    "header only": "user_id,item_id,timestamp\n",
    "empty file": "",
    "no dates": "user_id,item_id\nu1,p1\nu2,p3\n",
}


def write_shop(root: Path, interactions: str | None) -> Path:
    """A generic catalogue of 12 products (4 colours x 3 types, plain or striped) with PNG photos; the same
    colour and pattern share a photo, as a small shop's export may."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    lines = ["item_id,title,description,image,colour,pattern,product_type"]
    for i in range(12):
        colour, ptype, pattern = list(COLOURS)[i % 4], TYPES[i // 4], "stripe" if i % 2 else "solid"
        photo = root / "img" / f"{colour}-{pattern}.png"
        if not photo.exists():
            img = Image.new("RGB", (48, 64), COLOURS[colour])
            if pattern == "stripe":
                for y in range(0, 64, 8):
                    ImageDraw.Draw(img).rectangle([0, y, 48, y + 3], fill=(250, 220, 0))
            img.save(photo)
        lines.append(f"p{i},{colour.title()} {pattern} {ptype},A {colour} {pattern} {ptype}.,img/{photo.name},"
                     f"{colour},{pattern},{ptype}")
    (root / "items.csv").write_text("\n".join(lines) + "\n")
    if interactions is not None:
        (root / "interactions.csv").write_text(interactions)
    return root


def run_cli(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ATELIER_CATALOG"}
    env |= {"ATELIER_CACHE": str(cache), "ATELIER_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """The merchandiser's first use: items.csv and photos, no interactions.csv. Shared: do not modify."""
    return write_shop(tmp_path_factory.mktemp("nopurchases") / "shop", None)


@pytest.fixture(scope="module")
def built_shop(shop, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """``python -m core build --catalog shop`` with the defaults (maps of every kind, both recommenders asked)."""
    cache = tmp_path_factory.mktemp("nopurchases-cache") / "cache"
    return cache, run_cli(cache, "build", "--catalog", str(shop), "--backbone", TINY)


# ---------------------------------------------------------------- the check

@pytest.mark.parametrize("case", list(INTERACTIONS))
def test_no_purchases_says_why_for_every_kind_of_missing_purchases(tmp_path, case):
    catalog = load_catalog(write_shop(tmp_path / "shop", INTERACTIONS[case]))
    reason = no_purchases(catalog)
    assert reason and "in shop" in reason and len(catalog.products) == 12
    if case == "unknown products":
        assert "3 purchase(s) are all of products not in the catalogue" in reason
    if case == "no dates":
        assert "none of its 2 purchase(s) has a timestamp" in reason
    with pytest.raises(NoPurchases, match="recommend has nothing to learn from"):
        require_purchases(catalog, what="recommend")


def test_a_blank_interactions_file_reads_as_no_purchases_and_is_reported(tmp_path):
    catalog = load_catalog(write_shop(tmp_path / "shop", " \n"))
    assert catalog.purchases.empty
    assert [i.action for i in catalog.report.issues if i.file == "interactions.csv"] == ["read as no purchases"]


def test_purchases_make_the_check_pass_and_a_cutoff_before_them_does_not(tmp_path):
    catalog = load_catalog(write_shop(tmp_path / "shop", "user_id,item_id,timestamp\nu1,p1,2020-05-01\n"))
    assert no_purchases(catalog) is None
    assert no_purchases(catalog, "2020-04-01") == "no purchases in shop before 2020-04-01"


# ---------------------------------------------------------------- build

def test_build_without_interactions_exits_0_and_publishes_a_version_without_models(built_shop):
    cache, got = built_shop
    assert got.returncode == 0, got.stderr[-3000:]
    out = json_line(got.stdout)
    assert out["models"] == [] and out["products"] == 12
    assert set(out["maps"]) == {"hybrid", "image", "text", "texture"}  # everything else is built
    said = [line for line in got.stderr.splitlines() if "recommenders not fitted" in line]
    assert len(said) == 1 and "no purchases in shop" in said[0] and "similar products and search" in said[0]
    assert "Traceback" not in got.stderr


def test_build_publishes_the_version_a_service_loads(built_shop, shop):
    cache, got = built_shop
    published = current(ArtefactCache(cache), str(shop))
    assert published["version"] == json_line(got.stdout)["version"] and published["models"] == []


def test_build_with_every_purchase_of_unknown_products_exits_0_without_models(tmp_path):
    shop = write_shop(tmp_path / "shop", INTERACTIONS["unknown products"])
    got = run_cli(tmp_path / "cache", "build", "--catalog", str(shop), "--backbone", TINY, "--map-kinds", "")
    assert got.returncode == 0, got.stderr[-3000:]
    assert json_line(got.stdout)["models"] == []
    assert "no purchases of known products in shop" in got.stderr and "recommenders not fitted" in got.stderr


@pytest.mark.parametrize("case", ["header only", "empty file", "no dates"])
def test_prepare_fits_no_recommender_and_says_why(tmp_path, tiny_backbone, case):
    shop = write_shop(tmp_path / "shop", INTERACTIONS[case])
    release = prepare(str(shop), backbone=tiny_backbone, cache=ArtefactCache(tmp_path / "cache"))
    assert release.models == {} and release.manifest["models"] == []
    assert "so no recommenders were fitted" in release.models_note
    assert len(release.similar("p0", "hybrid", 3)) == 3


def test_the_version_of_a_catalogue_without_purchases_does_not_change_with_the_day(shop, tmp_path, tiny_backbone,
                                                                                    monkeypatch):
    cache = ArtefactCache(tmp_path / "cache")
    first = prepare(str(shop), backbone=tiny_backbone, cache=cache).version
    monkeypatch.setattr(pd.Timestamp, "now", classmethod(lambda cls, tz=None: pd.Timestamp("2031-02-03")))
    assert prepare(str(shop), backbone=tiny_backbone, cache=cache).version == first


def test_texture_model_of_photos_fewer_than_its_components_is_finite():
    from core.embeddings.texture import TextureConfig, TextureModel
    rng = np.random.default_rng(0)
    distinct = rng.random((3, 40)).astype(np.float32)  # 12 products, 3 distinct photos: rank 2 after centring
    descriptors, photo = distinct[np.arange(12) % 3], rng.standard_normal((12, 8)).astype(np.float32)
    model = TextureModel(TextureConfig()).fit(photo, descriptors)
    assert np.isfinite(model.transform(photo, descriptors)).all()


# ---------------------------------------------------------------- the service

@pytest.fixture(scope="module")
def client(shop, tmp_path_factory):
    from fastapi.testclient import TestClient

    from core.serve.service import Service, ServiceConfig
    from core.serve.api import create_app
    cache = ArtefactCache(tmp_path_factory.mktemp("nopurchases-service") / "cache")
    publish(cache, prepare(str(shop), backbone=TINY, cache=cache).manifest)
    service = Service(ServiceConfig(catalog=str(shop), poll_s=0), cache)
    service.load_current()
    with TestClient(create_app(service, start=False)) as c:
        yield c


def test_service_is_ready_without_models_and_says_why(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] and body["models"] == [] and body["products"] == 12
    assert body["models_note"] == "no purchases in shop, so no recommenders were fitted"


def test_service_search_and_similar_products_work_without_purchases(client):
    assert len(client.get("/products/p0/similar", params={"k": 5}).json()["results"]) == 5
    assert client.get("/products/p0").json()["title"] == "Red solid dress"
    found = client.post("/search/text", json={"text": "red dress", "k": 3})
    assert found.status_code == 200 and len(found.json()["results"]) == 3
    got = client.post("/embeddings", json={"ids": ["p0"], "kind": "hybrid"})
    assert got.status_code == 200 and got.json()["dim"] > 0


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/customers/u1/recommendations", None),
    ("GET", "/customers/u1/recommendations?model=graphsage", None),
    ("POST", "/recommendations", {"liked": ["p0"]}),
    ("POST", "/recommendations", {"text": "a red dress", "model": "two_tower"}),
])
def test_recommendation_endpoints_answer_503_naming_the_reason(client, method, path, body):
    got = client.request(method, path, json=body)
    assert got.status_code == 503
    assert "no purchases in shop, so no recommenders were fitted" in got.json()["detail"]


def test_a_model_s_vectors_are_refused_with_the_reason_and_products_can_be_added(client):
    got = client.post("/embeddings", json={"ids": ["p0"], "kind": "two_tower"})
    assert got.status_code == 422 and "no purchases in shop" in got.json()["detail"]
    added = client.post("/products", data={"id": "new-1", "title": "Red linen dress",
                                           "attributes": '{"colour": "red"}'})
    assert added.status_code == 201 and added.json()["models"] == []
    assert "new-1" in [h["id"] for h in client.post("/search/text", json={"text": "red linen dress", "k": 13})
                       .json()["results"]]


def test_service_with_nothing_published_builds_a_version_without_models(shop, tmp_path):
    from core.serve.service import Service, ServiceConfig
    service = Service(ServiceConfig(catalog=str(shop), backbone=TINY, poll_s=0), ArtefactCache(tmp_path / "cache"))
    release = service.load_current()  # the default models are asked for; there is nothing to fit them on
    assert release.models == {} and current(service.cache, str(shop))["models"] == []


# ---------------------------------------------------------------- the CLI's commands that need purchases

@pytest.mark.parametrize("args", [
    ["recommend", "--out", "{tmp}/recs.csv"],
    ["recommend", "--model", "two_tower", "--out", "{tmp}/recs.csv"],
    ["bench", "recs"],
    ["bench", "demo"],
    ["evaluate", "--models", "popularity"],
])
def test_commands_that_need_purchases_exit_with_one_line(shop, tmp_path, capsys, args):
    from core.__main__ import main
    with pytest.raises(SystemExit) as e:
        main([a.format(tmp=tmp_path) for a in args] + ["--catalog", str(shop), "--backbone", TINY])
    assert str(e.value.code).startswith("error: no purchases in shop, so ")
    assert "has nothing to learn from" in str(e.value.code)
    assert not (tmp_path / "recs.csv").exists()


# ---------------------------------------------------------------- the app

PAGES = ["app_pages/catalogue.py", "app_pages/clusters.py", "app_pages/neighbours.py", "app_pages/texture.py",
         "app_pages/coldstart.py", "app_pages/backbone.py", "app_pages/validation.py"]


@pytest.fixture
def app_shop(shop, monkeypatch, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "nopurchases-app-cache"  # one for the module: later pages are warm
    monkeypatch.setenv("ATELIER_CACHE", str(cache))
    monkeypatch.setenv("ATELIER_CATALOG", str(shop))
    monkeypatch.setenv("ATELIER_BACKBONE", TINY)
    return shop


@pytest.mark.app
@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_a_catalogue_without_purchases(app_shop, page):
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(page)
    at.run()
    deadline = time.monotonic() + 120
    while any("still being computed" in i.value for i in at.info):
        assert time.monotonic() < deadline, "the build did not finish"
        time.sleep(0.3)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    if page.endswith("coldstart.py"):
        said = [i.value for i in at.info if "No recommendations for shop" in i.value]
        assert said and "no purchases in shop" in said[0] and "interactions.csv" in said[0]
        assert not at.radio  # no section to choose: nothing to recommend with
    if page.endswith("neighbours.py"):
        ids = set(load_catalog(app_shop).products.index)  # similar products of a product: tiles name their ids
        assert any(ids & set(c.value.replace("·", " ").split()) for c in at.caption)

def test_a_stored_texture_model_with_a_zero_variance_component_is_refitted(shop, tmp_path, tiny_backbone):
    """One stored before zero-variance components were dropped gave NaN texture rows, and the build's map crashed."""
    from core.embeddings.pipeline import build
    cache = ArtefactCache(tmp_path / "cache")
    catalog = load_catalog(shop)
    build(catalog, tiny_backbone, cache)
    [entry] = [e for e in cache.entries() if e.kind == "texture-model"]
    state = cache.load("texture-model", entry.key)
    state["model.pca_scale_"][-1] = 0.0
    cache.save("texture-model", entry.key, state, entry.meta)
    built = build(catalog, tiny_backbone, cache)
    assert np.isfinite(built.embeddings.texture).all()
    assert (cache.load("texture-model", entry.key)["model.pca_scale_"] > 0).all()
