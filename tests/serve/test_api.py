"""The retrieval service's HTTP API (the routes over a loaded service: test_service.py)."""
from __future__ import annotations

import re

import pytest

from core.serve.api import _product
from tests.serve import test_faults_client

cache, client = test_faults_client.cache, test_faults_client.client  # its fixtures: a synthetic:60:0 version


def test_a_product_s_photo_is_given_as_its_url():
    assert _product({"id": "a", "title": "t", "image_path": "/x/a.png"}) == \
        {"id": "a", "title": "t", "image_url": "/products/a/image"}
    assert _product({"id": "b", "title": "t", "image_path": ""}) == {"id": "b", "title": "t", "image_url": None}


@pytest.mark.faults  # issue 20, as in test_faults_client.py
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
