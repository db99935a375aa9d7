"""The recommender contract (core.recs.contract): declared capabilities, and the wrappers that pass them on."""
from __future__ import annotations

import numpy as np
import pytest

from core.recs.contract import (ADD_PRODUCT, CAPABILITIES, CUSTOMER_VECTORS, PRODUCT_VECTOR, REASONS, SAVES_STATE,
                                SESSION, NotSupported, Recommender, scoring_batch, top_k)
from core.recs.fusion import RankFusion
from core.recs.newcustomer import NewCustomerFallback
from core.recs.registry import create_recommender, declares, list_recommenders

# What each model can do beyond scoring; every other model of the registry declares nothing.
DECLARED = {"graphsage": {CUSTOMER_VECTORS, PRODUCT_VECTOR, ADD_PRODUCT, SAVES_STATE},
            "two_tower": {CUSTOMER_VECTORS, PRODUCT_VECTOR, ADD_PRODUCT, SESSION, SAVES_STATE},
            "ranker": {SAVES_STATE, REASONS},
            "lightgcn": {SAVES_STATE}}
# One call per capability, as the serving code and the page make it, on an unfitted model.
CALLS = {CUSTOMER_VECTORS: lambda m: m.customer_vectors(),
         PRODUCT_VECTOR: lambda m: m.product_vector(np.zeros(4, np.float32), np.zeros(4, np.float32)),
         ADD_PRODUCT: lambda m: m.add_product("new", None, np.zeros(4, np.float32)),
         SESSION: lambda m: m.session_vector(text=np.zeros(4, np.float32)),
         SAVES_STATE: lambda m: m.state_arrays(),
         REASONS: lambda m: m.reasons_for(np.zeros(0, np.int64), np.zeros(0, np.int64))}


@pytest.mark.parametrize("capability", CAPABILITIES)
@pytest.mark.parametrize("name", list_recommenders(blends=True))
def test_each_model_declares_exactly_its_capabilities(name, capability):
    model = create_recommender(name)
    has = capability in DECLARED.get(name, set())
    assert model.supports(capability) is has
    assert declares(name, capability) is has
    if not has:  # the base class's method says so, by name
        with pytest.raises(NotSupported, match=name):
            CALLS[capability](model)


def test_an_unknown_capability_is_an_error():
    with pytest.raises(ValueError, match="unknown capability"):
        create_recommender("popularity").supports("teleport")


class Recorder(Recommender):
    """Declares every capability but SAVES_STATE's and records each call: what a wrapper must pass on."""
    name = "recorder"
    capabilities = frozenset(CAPABILITIES)

    def __init__(self):
        self.calls = []

    def customer_vectors(self):
        self.calls.append("customer_vectors")
        return np.eye(2, dtype=np.float32)

    def product_vector(self, image, text, attributes=None, has_image=True, hide_row=None):
        self.calls.append(("product_vector", attributes, has_image, hide_row))
        return np.ones(2, np.float32)

    def add_product(self, product_id, image, text, attributes=None, has_image=True):
        self.calls.append(("add_product", product_id, attributes, has_image))
        return 7

    def session_vector(self, image=None, text=None):
        self.calls.append(("session_vector", image is not None, text is not None))
        return np.ones(2, np.float32)

    def search(self, vectors, k, exclude=None):
        self.calls.append(("search", k))
        return np.zeros((1, k), np.int64), np.zeros((1, k), np.float32)


def test_the_new_customer_fallback_passes_the_models_capabilities_on():
    inner = Recorder()
    both = NewCustomerFallback(inner, create_recommender("popularity"))
    # its saved state would be the model's alone, without the fallback: not declared
    assert both.capabilities == frozenset(CAPABILITIES) - {SAVES_STATE}
    assert not NewCustomerFallback(create_recommender("content"), create_recommender("popularity")).capabilities
    np.testing.assert_array_equal(both.customer_vectors(), np.eye(2))
    both.product_vector(None, np.zeros(2), {"colour": "red"}, False, hide_row=3)
    assert both.add_product("n1", None, np.zeros(2), {"colour": "red"}, False) == 7
    both.session_vector(text=np.zeros(2))
    assert both.search(np.ones((1, 2)), 4)[0].shape == (1, 4)
    assert inner.calls == ["customer_vectors", ("product_vector", {"colour": "red"}, False, 3),
                           ("add_product", "n1", {"colour": "red"}, False), ("session_vector", False, True),
                           ("search", 4)]


def test_a_rank_fusion_declares_nothing_whatever_its_parts():
    fused = RankFusion("blend", [Recorder(), create_recommender("two_tower")])
    assert all(not fused.supports(c) for c in CAPABILITIES)
    with pytest.raises(NotSupported):
        fused.customer_vectors()


def test_top_k_equals_a_full_sort_with_ties_by_row_nan_last_and_exclusions():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(40, 300)).astype(np.float32)  # many ties, also at the k-th place
    scores[rng.random(scores.shape) < 0.05] = np.nan
    exclude = [rng.choice(300, size=int(rng.integers(0, 20)), replace=False) for _ in range(40)]
    for k in (1, 10, 299, 300, 400):
        rows, got = top_k(scores, k, exclude)
        for i in range(40):
            s = np.nan_to_num(scores[i], nan=-np.inf)
            s[exclude[i]] = -np.inf
            want = np.lexsort((np.arange(300), -s))[:min(k, 300)]  # best first, then the lower row
            assert np.array_equal(rows[i], want), (k, i)
            assert np.array_equal(got[i], s[want])
    assert top_k(scores[:0], 5)[0].shape == (0, 5) and top_k(scores, 0)[0].shape == (40, 0)


def test_the_scoring_batch_shrinks_as_the_catalogue_grows():
    assert scoring_batch(24_717) == 256  # the H&M sample: as many customers at once as ever
    assert scoring_batch(1_000_000) == 16  # a million products: 64 MB of scores, not 1 GB
    assert scoring_batch(10**9) == 1  # never none
    sizes = [100, 10_000, 100_000, 1_000_000, 10_000_000]
    assert all(scoring_batch(n) * n <= max(256 * 65_536, n) for n in sizes)
