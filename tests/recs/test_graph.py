"""The GraphSAGE graph (core.recs.graph): purchase, content and colour-variant edges, features, the neighbour
sampler, on the hand-built two-block catalogue of test_sage."""
from __future__ import annotations

import numpy as np
import torch

from core.recs.graph import (BUYS, REV_BUYS, SIMILAR, GraphConfig, NeighbourSampler, build_graph, content_edges,
                             customer_features, feature_spec, purchase_edges)
from tests.recs.test_sage import two_blocks, unit


def test_purchase_edges_are_distinct_pairs_before_the_point_in_time():
    data = two_blocks()
    edges, days = purchase_edges(data, GraphConfig())
    assert edges.shape == (2, 10) and np.all(days >= 0)
    earlier, _ = purchase_edges(data, GraphConfig(), before_days=56)  # purchases at least 56 days old only
    assert 0 < earlier.shape[1] < edges.shape[1]
    capped, _ = purchase_edges(data, GraphConfig(max_customer_degree=1))
    assert np.all(np.bincount(capped[0]) <= 1)
    last = {data.customer_ids[c]: data.product_ids[p] for c, p in capped.T}
    assert last["c1"] == "a2"  # the cap keeps the most recent purchase


def test_content_edges_join_nearest_products_and_colour_variants():
    vectors = unit(np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]]))
    edges = content_edges(vectors, np.array(["g0", "g1", "g1", "g2"]),
                          GraphConfig(content_k=1, variant_cap=1, variant_relation=False))
    pairs = set(map(tuple, edges.T.tolist()))
    assert {(1, 0), (0, 1), (3, 2), (2, 3)} <= pairs  # nearest neighbour, source -> destination
    assert {(2, 1), (1, 2)} <= pairs  # colour variants of group g1
    assert all(s != d for s, d in pairs)
    sparse = content_edges(vectors, np.array(["g0", "g1", "g2", "g3"]),
                           GraphConfig(content_k=3, variant_cap=0, min_content_sim=0.5))
    assert set(map(tuple, sparse.T.tolist())) == {(1, 0), (0, 1), (3, 2), (2, 3)}  # weak edges dropped


def test_customer_features_handle_missing_and_unknown_customers():
    data = two_blocks()
    spec = feature_spec(data, GraphConfig())
    x = customer_features(data.customers, np.array(["c0", "c3", "nobody"]), spec)
    assert x.shape[0] == 3 and np.isfinite(x).all()
    age = list(spec.customer_numeric).index("age")
    assert x[1, 2 + 2 * age] == 1.0 and x[2, 2 + 2 * age] == 1.0  # missing-age flag for "" and for a stranger
    assert not np.array_equal(x[0], x[1])


def test_one_hot_of_a_few_rows_is_the_one_of_many():
    """Serving encodes one product or customer at a time by dict lookups; the catalogue goes through pandas.
    Both must give the same columns, whatever the values: known, unknown, empty, missing, numbers."""
    import pandas as pd

    from core.recs.graph import SMALL, one_hot
    cats = ["red", "blue", "1.5", "(missing)"]
    values = pd.Series(["blue", "green", "", None, np.nan, 1.5, "red", "(missing)", "Red"] * (SMALL // 3), dtype=object)
    assert len(values) > SMALL
    many = one_hot(values, cats)
    few = np.concatenate([one_hot(values.iloc[i:i + 3], cats) for i in range(0, len(values), 3)])
    np.testing.assert_array_equal(few, many)
    assert many[:9].argmax(1).tolist() == [1, 4, 4, 4, 4, 2, 0, 3, 4]


def test_sampler_respects_fanouts_and_never_uses_excluded_edges():
    data = two_blocks(n_per_block=5, never_bought=0)
    graph = build_graph(data, GraphConfig(content_k=4, variant_cap=0))
    edges = {BUYS: graph.buys, REV_BUYS: graph.buys.flip(0), SIMILAR: graph.similar}
    sampler = NeighbourSampler(edges, {"customer": graph.n_customers, "product": graph.n_products}, fanouts=(2, 1))
    excluded = torch.zeros(graph.buys.shape[1], dtype=torch.bool)
    excluded[0] = True
    seeds = {"customer": graph.buys[0, :1], "product": graph.buys[1, :1]}
    sub = sampler.sample(seeds, {BUYS: excluded, REV_BUYS: excluded}, torch.Generator().manual_seed(3))
    c, p = sub.nodes["customer"], sub.nodes["product"]
    own = (int(graph.buys[0, 0]), int(graph.buys[1, 0]))
    for etype, (src_t, dst_t) in ((BUYS, (c, p)), (REV_BUYS, (p, c))):
        pairs = {(int(src_t[s]), int(dst_t[d])) for s, d in sub.edges[etype].T}
        flipped = {(b, a) for a, b in pairs} if etype == REV_BUYS else pairs
        assert own not in flipped  # the training pair's own edge never carries messages
    first_hop = sub.edges[SIMILAR][:, sub.edges[SIMILAR][1] == 0]  # messages into the seed product
    assert first_hop.shape[1] <= 2


def test_colour_variants_are_a_relation_of_their_own():
    from core.recs.graph import VARIANT, variant_edges
    edges = variant_edges(np.array(["g0", "g1", "g1", "g1", "g2"]), cap=1)
    assert set(map(tuple, edges.T.tolist())) == {(2, 1), (1, 2), (1, 3)}  # each receives from <= 1 sibling
    data = two_blocks()
    graph = build_graph(data, GraphConfig(variant_relation=True))
    assert graph.variants is not None and VARIANT in graph.to_hetero().edge_types
    mixed = build_graph(data, GraphConfig(variant_relation=False))
    assert mixed.variants is None


def test_content_edges_past_the_exact_limit_come_from_the_approximate_index(monkeypatch):
    from core.bench.scale import synthetic_features
    from core.embeddings import index as vector_index
    vectors, _ = synthetic_features(1200, 32, seed=4)
    groups = np.arange(1200).astype(str)  # no variants: content edges only
    cfg = GraphConfig(content_k=5, variant_cap=0)
    exact = content_edges(vectors, groups, cfg)
    built, init = [], vector_index.VectorIndex.__init__

    def recording(self, vectors, ids, cfg=vector_index.IndexConfig()):
        built.append(cfg.factory)
        init(self, vectors, ids, cfg)
    monkeypatch.setattr(vector_index, "EXACT_TABLE_LIMIT", 1000)
    monkeypatch.setattr(vector_index.VectorIndex, "__init__", recording)
    approximate = content_edges(vectors, groups, cfg)
    assert built == ["HNSW32"]  # no exact index beside it
    assert exact.shape[1] == 1200 * 5 and approximate.shape[1] <= 1200 * 5
    same = set(map(tuple, exact.T.tolist())) & set(map(tuple, approximate.T.tolist()))
    assert len(same) >= 0.95 * exact.shape[1]  # the same neighbours, nearly all

