"""Tests of nearest-neighbour search against an exact numpy reference on 200 random unit vectors."""
from __future__ import annotations

import numpy as np
import pytest

from core.embeddings.index import (IndexConfig, VectorIndex, brute_force_topk, build_neighbour_table, locality_order,
                                   neighbour_table, table_recall)

N, D, K = 200, 32, 10


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit_rows(N, D, seed=0)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return unit_rows(25, D, seed=1)


def ids_of(n: int) -> np.ndarray:
    return np.array([f"p{i:03d}" for i in range(n)])


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.mark.parametrize("cfg", [IndexConfig("Flat"), IndexConfig("IVF16,Flat", nprobe=16)],
                         ids=["flat", "ivf-all-lists"])
def test_exact_layouts_equal_brute_force(vectors, queries, cfg):
    index = VectorIndex(vectors, ids_of(N), cfg)
    assert len(index) == N
    scores, rows = index.search(queries, K)
    true_scores, true_rows = brute_force_topk(vectors, queries, K)
    assert scores.shape == rows.shape == (len(queries), K)
    np.testing.assert_array_equal(rows, true_rows)
    np.testing.assert_allclose(scores, true_scores, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # descending


def test_hnsw_recall(vectors, queries):
    index = VectorIndex(vectors, ids_of(N), IndexConfig("HNSW32"))
    _, rows = index.search(queries, K)
    _, true_rows = brute_force_topk(vectors, queries, K)
    assert recall_at_k(rows, true_rows) >= 0.9


def test_search_one_query_and_k_beyond_n(vectors):
    index = VectorIndex(vectors[:5], ids_of(5))
    scores, rows = index.search(vectors[3], 10)  # a (d,) query; k > n is capped at n
    assert rows.shape == (1, 5)
    assert rows[0, 0] == 3 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat", "HNSW32"])
def test_reconstruct_returns_the_stored_vector(vectors, factory):
    index = VectorIndex(vectors, ids_of(N), IndexConfig(factory, nprobe=16))
    np.testing.assert_allclose(index.reconstruct("p007"), vectors[7], atol=1e-6)
    assert index.row["p007"] == 7


def test_neighbour_table_matches_brute_force(vectors):
    table = neighbour_table(VectorIndex(vectors, ids_of(N)), vectors, k=K, batch_size=64)
    assert table["rows"].shape == table["scores"].shape == (N, K)
    assert table["rows"].dtype == np.int32 and table["scores"].dtype == np.float32
    true_scores, true_rows = brute_force_topk(vectors, vectors, K + 1)
    assert np.all(true_rows[:, 0] == np.arange(N))  # random vectors: each is its own nearest
    np.testing.assert_array_equal(table["rows"], true_rows[:, 1:])
    np.testing.assert_allclose(table["scores"], true_scores[:, 1:], atol=1e-5)


def test_the_order_queries_are_asked_in_changes_nothing_in_the_table(vectors):
    index = VectorIndex(vectors, ids_of(N), IndexConfig("HNSW32"))
    natural = neighbour_table(index, vectors, k=K, batch_size=64)
    shuffled = neighbour_table(index, vectors, k=K, batch_size=64, order=np.random.default_rng(5).permutation(N))
    local = neighbour_table(index, vectors, k=K, batch_size=64, order=locality_order(vectors))
    for table in (shuffled, local):
        np.testing.assert_array_equal(table["rows"], natural["rows"])
        np.testing.assert_array_equal(table["scores"], natural["scores"])


def test_locality_order_is_a_permutation_that_keeps_nearby_rows_together():
    centres = unit_rows(8, D, seed=4)
    group = np.random.default_rng(6).integers(0, 8, 800)
    x = centres[group] + 0.05 * unit_rows(800, D, seed=7)
    order = locality_order(x / np.linalg.norm(x, axis=1, keepdims=True))
    assert np.array_equal(np.sort(order), np.arange(800))
    runs = 1 + np.count_nonzero(group[order][1:] != group[order][:-1])
    assert runs <= 3 * 8  # rows of one group asked one after another (in random order: about 700 runs)


def test_neighbour_table_excludes_the_query_among_duplicates():
    base = unit_rows(20, 8, seed=3)
    # rows 0..2 are one vector three times, rows 3, 4 another one twice
    vectors = np.concatenate([base[[0, 0, 0, 1, 1]], base[2:]])
    table = neighbour_table(VectorIndex(vectors, ids_of(len(vectors))), vectors, k=4)
    rows, scores = table["rows"], table["scores"]
    for i in range(len(vectors)):
        assert i not in rows[i], (i, rows[i])
        assert len(set(rows[i].tolist())) == 4
    assert set(rows[0, :2].tolist()) == {1, 2} and np.allclose(scores[0, :2], 1.0, atol=1e-5)
    assert set(rows[1, :2].tolist()) == {0, 2}
    assert set(rows[2, :2].tolist()) == {0, 1}
    assert rows[3, 0] == 4 and rows[4, 0] == 3
    assert scores[3, 0] == pytest.approx(1.0, abs=1e-5)
    assert scores[3, 1] < 1.0 - 1e-4  # after the duplicate come true neighbours


def test_neighbour_table_of_tiny_sets():
    one = unit_rows(1, 8, seed=0)
    table = neighbour_table(VectorIndex(one, ids_of(1)), one, k=5)
    assert table["rows"].shape == (1, 0)
    three = unit_rows(3, 8, seed=0)
    table = neighbour_table(VectorIndex(three, ids_of(3)), three, k=5)
    assert table["rows"].shape == (3, 2)
    for i in range(3):
        assert sorted(table["rows"][i].tolist()) == sorted(set(range(3)) - {i})


def test_mismatched_ids_and_vectors_raise(vectors):
    with pytest.raises(ValueError, match="200 vectors but 199 ids"):
        VectorIndex(vectors, ids_of(199))


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat", "HNSW16"])
def test_added_rows_are_found_and_named(factory):
    from core.embeddings.index import IndexConfig, VectorIndex
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(200, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(vectors[:150], np.array([f"p{i}" for i in range(150)]), IndexConfig(factory, nprobe=4))
    index.add(vectors[150:], np.array([f"p{i}" for i in range(150, 200)]))
    assert len(index) == 200 and index.row["p170"] == 170 and index.ids[170] == "p170"
    _, rows = index.search(vectors[170], 1)
    assert rows[0, 0] == 170
    np.testing.assert_allclose(index.reconstruct("p170"), vectors[170], atol=1e-6)
    with pytest.raises(ValueError, match="already indexed: p3"):
        index.add(vectors[:1], np.array(["p3"]))
    assert len(index) == 200


def test_a_neighbour_table_holds_no_missing_rows_score(vectors):
    # IVF with one list visited finds fewer than k + 1 rows for some queries: FAISS's -1 becomes -1 with score 0
    table = neighbour_table(VectorIndex(vectors, ids_of(N), IndexConfig("IVF16,Flat", nprobe=1)), vectors, k=40)
    missing = table["rows"] < 0
    assert missing.any() and (table["rows"] >= -1).all()
    assert (table["scores"][missing] == 0).all() and (table["scores"][~missing] > -1.01).all()
    for i in range(N):  # what was found comes first, the query itself never
        found = table["rows"][i][table["rows"][i] >= 0]
        assert i not in found and (table["rows"][i][len(found):] == -1).all()


def test_tables_past_the_exact_limit_come_from_a_graph():
    from core.embeddings import index
    assert index.table_index_config(index.EXACT_TABLE_LIMIT) == IndexConfig()
    assert index.table_index_config(index.EXACT_TABLE_LIMIT + 1) == index.TABLE_APPROXIMATE
    assert "HNSW" in index.TABLE_APPROXIMATE.factory
    ivf = IndexConfig("IVF16,Flat")
    assert index.table_index_config(10 * index.EXACT_TABLE_LIMIT, ivf) == ivf  # already approximate: kept


def test_an_hnsw_graph_is_built_with_the_beam_asked_for():
    import faiss
    vectors = unit_rows(1500, 16, seed=5)
    graphs = {ef: VectorIndex(vectors, ids_of(1500), IndexConfig("HNSW8", ef_search=16, ef_construction=ef))
              for ef in (8, 200)}
    assert [faiss.downcast_index(g.index).hnsw.efConstruction for g in graphs.values()] == [8, 200]
    # a wider beam while building makes a better graph: the same narrow search finds more of the true neighbours
    recall = {ef: table_recall(vectors, neighbour_table(g, vectors, k=10)["rows"], k=10, sample=300)
              for ef, g in graphs.items()}
    assert recall[200] > recall[8]


def test_table_recall_against_exact_search():
    vectors = unit_rows(2000, 16, seed=4)
    exact = neighbour_table(VectorIndex(vectors, ids_of(2000)), vectors, k=20)
    assert table_recall(vectors, exact["rows"], k=10, sample=300) == 1.0
    shifted = exact["rows"].copy()
    shifted[:, :10] = exact["rows"][:, 10:20]  # the 11th to 20th neighbours in place of the first ten
    assert table_recall(vectors, shifted, k=10, sample=300) == 0.0
    half = exact["rows"].copy()
    half[:, 5:10] = exact["rows"][:, 10:15]
    assert table_recall(vectors, half, k=10, sample=2000) == pytest.approx(0.5)
    graph = neighbour_table(VectorIndex(vectors, ids_of(2000), IndexConfig("HNSW8", ef_search=16)), vectors, k=20)
    recall = table_recall(vectors, graph["rows"], k=10, sample=300)
    assert 0.5 < recall < 1.0  # a small beam misses some
    flat = VectorIndex(vectors, ids_of(2000))
    assert table_recall(vectors, graph["rows"], k=10, sample=300, exact=flat) == recall  # the build's exact index
    built = build_neighbour_table(flat, vectors, 20, IndexConfig("HNSW8", ef_search=16))
    np.testing.assert_array_equal(built["rows"], graph["rows"])
    assert float(built["recall_at_10"]) == pytest.approx(table_recall(vectors, graph["rows"], k=10), abs=1e-6)
    assert "recall_at_10" not in build_neighbour_table(flat, vectors, 20, IndexConfig())  # exact: no check
