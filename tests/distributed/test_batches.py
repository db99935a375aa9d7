"""The batch stages on the simulated cluster give what they give in this process: neighbour tables (the index sent
to each worker), the evaluation's ranked lists and sampled ranks, and ``recommend``'s lists in their order."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.embeddings.index import IndexConfig, VectorIndex, neighbour_table
from core.executor import use
from tests.vectors import unit

pytestmark = pytest.mark.ray


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_neighbour_table_on_the_cluster_equals_local(factory, on_cluster):
    vectors = unit(np.random.default_rng(1).normal(size=(600, 32)).astype(np.float32))
    index = VectorIndex(vectors, np.arange(600).astype(str), IndexConfig(factory=factory))
    order = np.random.default_rng(0).permutation(600)
    remote = neighbour_table(index, vectors, k=10, order=order)  # batches cut to 200: one for each worker
    use(None)
    here = neighbour_table(index, vectors, k=10, order=order)
    np.testing.assert_array_equal(remote["rows"], here["rows"])
    np.testing.assert_allclose(remote["scores"], here["scores"], atol=1e-6)


@pytest.fixture(scope="module")
def fitted_models(tmp_path_factory):
    """RecData of synthetic:120:0 before its last fortnight, the purchases after, and fitted two-tower, GraphSAGE,
    content and popularity models (tiny backbone), fitted here."""
    from core.cache import ArtefactCache
    from core.data.load import load_catalog
    from core.embeddings.pipeline import embed_catalog
    from core.embeddings.registry import create_backbone
    from core.recs.contract import rec_data
    from core.recs.registry import fitted
    catalog = load_catalog("synthetic:120:0")
    cache = ArtefactCache(tmp_path_factory.mktemp("batches-cache"))
    embeddings, _, _ = embed_catalog(catalog, create_backbone("random:atelier-tiny"), cache)
    cutoff = catalog.purchases["timestamp"].max() - pd.Timedelta(days=14)
    data = rec_data(catalog.products, catalog.customers, catalog.purchases, cutoff, embeddings)
    test = catalog.purchases[catalog.purchases["timestamp"] >= cutoff]
    return data, test, {name: fitted(name, data, cache) for name in ("two_tower", "graphsage", "content", "popularity")}


@pytest.mark.parametrize("name, from_index", [("content", False), ("popularity", False), ("two_tower", False),
                                              ("two_tower", True), ("graphsage", True)])
def test_evaluation_lists_on_the_cluster_equal_local(fitted_models, name, from_index, on_cluster, monkeypatch):
    from core.recs import evaluate
    from core.recs.evaluate import EvalConfig, rank_customers
    data, test, models = fitted_models
    monkeypatch.setattr(evaluate, "scoring_batch", lambda n: 7)  # several batches of the few test customers
    monkeypatch.setattr(evaluate, "INDEX_BATCH", 7)
    remote = rank_customers(models[name], data, test, EvalConfig(), sampled=True, from_index=from_index)
    use(None)
    here = rank_customers(models[name], data, test, EvalConfig(), sampled=True, from_index=from_index)
    assert len(here.customers) > 14
    for field in ("top_including", "top_excluding", "ranks_including", "ranks_excluding"):
        np.testing.assert_array_equal(getattr(remote, field), getattr(here, field))


@pytest.mark.parametrize("name, exclude_bought", [("two_tower", False), ("two_tower", True), ("graphsage", True)])
def test_recommend_lists_on_the_cluster_equal_local_in_order(fitted_models, name, exclude_bought, on_cluster):
    from core.recs.lists import recommendation_batches
    data, _, models = fitted_models
    customers = data.customer_ids.tolist()[::-1] + ["nobody-knows-me"]  # an unknown id: a new customer
    ticks = []
    remote = pd.concat(recommendation_batches(models[name], data, customers, 12, exclude_bought, batch=9,
                                              progress=lambda s, d, n: ticks.append((d, n))))
    use(None)
    here = pd.concat(recommendation_batches(models[name], data, customers, 12, exclude_bought, batch=9))
    pd.testing.assert_frame_equal(remote.reset_index(drop=True), here.reset_index(drop=True))
    assert remote["customer_id"].drop_duplicates().tolist() == customers  # in the order asked
    assert ticks[-1] == (len(customers), len(customers))
