"""The load test's requests: arrivals planned at the rate, and the request mix drawn from a catalogue."""
from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from core.bench.workload import MIX, Call, LoadConfig, plan_arrivals, workload

MODELS = ["graphsage", "two_tower"]


# ---------------------------------------------------------------- arrivals

def test_arrivals_are_planned_seeded_and_at_the_rate():
    times, n_warm = plan_arrivals(LoadConfig(qps=50, seconds=2, warmup_s=1, arrivals="uniform"))
    assert (n_warm, len(times)) == (50, 150)
    assert np.allclose(np.diff(times[:n_warm]), 0.02) and np.allclose(np.diff(times[n_warm:]), 0.02)
    assert times[n_warm] == pytest.approx(1.0)

    cfg = LoadConfig(qps=1000, seconds=20, warmup_s=1, arrivals="poisson", seed=3)
    times, n_warm = plan_arrivals(cfg)
    assert (n_warm, len(times)) == (1000, 21000)
    assert np.array_equal(times, plan_arrivals(cfg)[0])
    assert not np.array_equal(times, plan_arrivals(dataclasses.replace(cfg, seed=4))[0])
    assert np.all(np.diff(times) >= 0) and times[n_warm - 1] < 1.0 <= times[n_warm] and times[-1] < 21.0
    gaps = np.diff(times[n_warm:])
    assert np.mean(gaps) == pytest.approx(1e-3, rel=0.03)
    assert np.std(gaps) / np.mean(gaps) == pytest.approx(1.0, abs=0.05)  # exponential: sd = mean
    with pytest.raises(ValueError):
        plan_arrivals(LoadConfig(arrivals="bursty"))


# ---------------------------------------------------------------- the workload

@pytest.fixture
def catalog(synthetic_catalog):
    customers = synthetic_catalog.purchases["customer_id"].unique().tolist()
    return synthetic_catalog.products, customers


def _draw(work, n: int = 5000, seed: int = 0) -> list[Call]:
    rng = np.random.default_rng(seed)
    return [work(rng) for _ in range(n)]


def test_the_mix_follows_MIX(catalog):
    products, customers = catalog
    work = workload(products, customers, MODELS, seed=0)
    assert work.mix == pytest.approx(MIX)
    counts = Counter(c.name for c in _draw(work))
    for name, share in MIX.items():
        assert counts[name] / 5000 == pytest.approx(share, abs=0.02), name


def test_every_call_is_well_formed(catalog):
    products, customers = catalog
    work = workload(products, customers, MODELS, seed=0)
    ids, photo_ids = set(products.index), set(products.index[products["image_path"] != ""])
    texts = []
    for call in _draw(work, 3000, seed=1):
        parts = call.path.strip("/").split("/")
        if call.name == "similar":
            assert call.method == "GET" and parts[0] == "products" and parts[1] in ids and parts[2] == "similar"
            assert call.params["k"] == 10 and call.params["kind"] in {"hybrid", "image", "text"}
        elif call.name == "customer_recs":
            assert parts[0] == "customers" and parts[1] in customers and parts[2] == "recommendations"
            assert call.params["k"] == 12 and call.params["model"] in MODELS
            assert call.params["exclude_bought"] in {"true", "false"}
        elif call.name == "search_text":
            assert call.method == "POST" and call.path == "/search/text"
            assert call.json["text"].strip() and call.json["k"] == 10 and call.json["kind"] == "hybrid"
            texts.append(call.json["text"])
        elif call.name == "product":
            assert parts[0] == "products" and parts[1] in ids and len(parts) == 2
        elif call.name == "recs_new":
            assert call.path == "/recommendations" and call.json["k"] == 12 and call.json["model"] in MODELS
            assert len(set(call.json["liked"])) == 3 and set(call.json["liked"]) <= ids
        elif call.name == "image":
            assert parts[1] in photo_ids and parts[2] == "image"
        else:
            assert call.name == "search_image" and call.path == "/search/image"
            name, data, mime = call.files["file"]
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and mime == "image/png"
    # Half the text queries repeat a small popular pool ("black dress"), half are fresh.
    assert 0 < len(work.popular) <= 50 and all(len(q.split()) >= 2 for q in work.popular)
    popular = sum(t in work.popular for t in texts) / len(texts)
    assert 0.35 <= popular <= 0.65
    assert len(set(texts) - set(work.popular)) > 20


def test_kinds_the_data_cannot_supply_are_dropped(catalog):
    products, customers = catalog
    work = workload(products.assign(image_path=""), [], MODELS, seed=0)
    assert set(work.mix) == set(MIX) - {"image", "search_image", "customer_recs"}
    assert sum(work.mix.values()) == pytest.approx(1.0)
    assert work.mix["similar"] == pytest.approx(0.35 / 0.68)
    calls = _draw(work, 2000)
    assert {c.name for c in calls} == set(work.mix)
    assert {c.params["kind"] for c in calls if c.name == "similar"} == {"hybrid", "text"}
