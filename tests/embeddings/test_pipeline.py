"""Tests of the build pipeline on the synthetic catalogue with the tiny backbone: embeddings, incremental
rebuilds, unreadable photos, neighbours and queries."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from core.bench.embed import with_new_products
from core.cache import ArtefactCache
from core.data.catalog import Catalog
from core.data.load import load_catalog
from core.embeddings.backbone import ImageError
from core.embeddings.registry import create_backbone
from core.embeddings.index import IndexConfig, brute_force_topk
from core.embeddings.pipeline import KINDS, BuildConfig, build

N = 60  # products in the synthetic_catalog fixture


@pytest.fixture(scope="module")
def built(synthetic_catalog, tiny_backbone, tmp_path_factory):
    return build(synthetic_catalog, tiny_backbone, ArtefactCache(tmp_path_factory.mktemp("built-cache")))


def with_products(catalog: Catalog, products) -> Catalog:
    return dataclasses.replace(catalog, products=products)


def assert_unit_rows(x: np.ndarray) -> None:
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


# ---------------------------------------------------------------- one build

def test_embeddings(built, synthetic_catalog, tiny_backbone):
    emb = built.embeddings
    assert emb.ids.tolist() == synthetic_catalog.products.index.tolist()
    for rows in (emb.image, emb.text):
        assert rows.shape == (N, tiny_backbone.dim) and rows.dtype == np.float32
        assert_unit_rows(rows)
    assert emb.has_image.all()
    assert built.stats.images_embedded == N and built.stats.texts_embedded == N
    assert built.report.ok
    for kind in KINDS:
        assert len(built.indexes[kind]) == N
        vectors, _ = emb.matrix(kind, built.cfg.hybrid_weight)
        assert_unit_rows(vectors)
    with pytest.raises(ValueError, match="unknown embedding kind"):
        emb.matrix("audio", 0.5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [1, 10, 55])  # 55 is past the precomputed table (50): a search
def test_neighbours_exclude_the_product_and_are_sorted(built, kind, k):
    for pid in ("syn00000", "syn00031", "syn00059"):
        got = built.neighbours(pid, kind, k)
        assert list(got.columns) == ["product_id", "score"]
        assert len(got) == k
        assert pid not in set(got["product_id"])
        assert got["product_id"].is_unique
        assert set(got["product_id"]) <= set(built.embeddings.ids)
        assert np.all(np.diff(got["score"].to_numpy()) <= 1e-6)


def test_neighbours_beyond_the_table_extend_it(built):
    table = built.neighbours("syn00007", "image", 50)
    searched = built.neighbours("syn00007", "image", 55)
    np.testing.assert_allclose(np.sort(searched["score"].to_numpy())[::-1][:50], table["score"], atol=1e-5)


def test_neighbours_of_an_unknown_product_raise(built):
    with pytest.raises(KeyError, match="no-such-id"):
        built.neighbours("no-such-id", "image")


def test_text_neighbour_table_agrees_with_brute_force(built):
    text = built.embeddings.text
    table = built.tables["text"]
    k = table["rows"].shape[1]
    assert k == min(built.cfg.table_k, N - 1)
    sims = text @ text.T
    np.fill_diagonal(sims, -np.inf)  # a product is never its own neighbour
    true_scores, _ = brute_force_topk(text, text, N)
    for i in range(N):
        rows, scores = table["rows"][i], table["scores"][i]
        assert i not in rows and len(set(rows.tolist())) == k
        np.testing.assert_allclose(scores, sims[i, rows], atol=1e-5)  # the rows have the scores shown
        np.testing.assert_allclose(scores, np.sort(sims[i])[::-1][:k], atol=1e-5)  # and they are the top k
        assert true_scores[i, 0] >= scores[0] - 1e-5


def test_text_query(built):
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="empty query"):
            built.text_query(empty)
    q = built.text_query("red striped dress")
    assert q.shape == (built.backbone.dim,)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)
    hits = built.search(q, "text", 5)
    assert len(hits) == 5 and np.all(np.diff(hits["score"].to_numpy()) <= 1e-6)


def test_photo_query_finds_the_product(built, synthetic_catalog):
    pid = "syn00012"
    q = built.photo_query(synthetic_catalog.products.loc[pid, "image_path"])
    np.testing.assert_allclose(q, built.embeddings.image[12], atol=1e-5)
    hits = built.search(q, "image", 3)
    assert hits["product_id"].iloc[0] == pid
    assert hits["score"].iloc[0] == pytest.approx(1.0, abs=1e-4)


def test_photo_query_rejects_a_non_image(built, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(ImageError, match="notes.txt"):
        built.photo_query(str(notes))
    with open(notes, "rb") as f:
        with pytest.raises(ImageError):
            built.photo_query(f)



def test_photo_descriptor_reads_the_tower_from_the_builds_cache(built, synthetic_catalog, isolated_env):
    import shutil

    from core.embeddings.lit.features import catalog_texture_features
    from core.embeddings.lit.runtime import FeatureRunners
    cache, path = built.cache, synthetic_catalog.products.loc["syn00012", "image_path"]
    assert built.runners is not None and (cache.root / "onnx").is_dir()  # the texture pass exported the tower there
    fresh = dataclasses.replace(built, runners=FeatureRunners())  # as in a process that has not loaded it yet
    shutil.rmtree(cache.root / "onnx")
    try:
        descriptor = fresh.photo_descriptor(path)
        assert sorted(p.suffix for p in (cache.root / "onnx").iterdir() if p.suffix != ".lock") == [".json", ".onnx"]
        assert not (isolated_env / "onnx").exists()  # nothing written to the default cache ($ATELIER_CACHE)
    finally:
        fresh.runners.get(cache)  # the shared fixture keeps a complete cache for the other tests
    stored, _ = catalog_texture_features(synthetic_catalog, cache, runners=fresh.runners)
    np.testing.assert_allclose(descriptor, stored[12], rtol=1e-5, atol=1e-4)  # as the catalogue pass gave it


# ---------------------------------------------------------------- incremental builds

def test_second_build_embeds_nothing(synthetic_catalog, tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    first = build(synthetic_catalog, tiny_backbone, cache)
    n_files = len(list(cache.root.rglob("*.npz")))
    second = build(synthetic_catalog, tiny_backbone, cache)
    assert (second.stats.images_embedded, second.stats.texts_embedded) == (0, 0)
    np.testing.assert_array_equal(second.embeddings.image, first.embeddings.image)
    np.testing.assert_array_equal(second.embeddings.text, first.embeddings.text)
    for kind in KINDS:
        np.testing.assert_array_equal(second.tables[kind]["rows"], first.tables[kind]["rows"])
    assert len(list(cache.root.rglob("*.npz"))) == n_files


def test_new_products_embed_only_themselves(synthetic_catalog, tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    build(synthetic_catalog, tiny_backbone, cache)
    grown = with_new_products(synthetic_catalog, 7, tmp_path / "new")
    assert len(grown.products) == N + 7
    again = build(grown, tiny_backbone, cache)
    assert (again.stats.images_embedded, again.stats.texts_embedded) == (7, 7)
    assert again.embeddings.has_image.all()
    assert len(again.indexes["image"]) == N + 7
    assert "new000003" in set(again.neighbours("syn00003", "text", N + 6)["product_id"])


def test_changed_sentence_re_embeds_one_text(synthetic_catalog, tiny_backbone, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    before = build(synthetic_catalog, tiny_backbone, cache)
    products = synthetic_catalog.products.copy()
    products.loc["syn00005", "sentence"] = "A completely different product sentence."
    after = build(with_products(synthetic_catalog, products), tiny_backbone, cache)
    assert (after.stats.images_embedded, after.stats.texts_embedded) == (0, 1)
    changed = np.any(np.abs(after.embeddings.text - before.embeddings.text) > 1e-6, axis=1)
    assert np.flatnonzero(changed).tolist() == [5]


def test_unreadable_photo_is_reported_and_left_out_of_image_space(synthetic_catalog, tiny_backbone, tmp_path):
    broken = tmp_path / "syn00003.png"
    broken.write_text("this file is not a PNG")
    products = synthetic_catalog.products.copy()
    products.loc["syn00003", "image_path"] = str(broken)
    got = build(with_products(synthetic_catalog, products), tiny_backbone, ArtefactCache(tmp_path / "cache"))

    (issue,) = [i for i in got.report.issues if "unreadable" in i.problem]
    assert issue.count == 1 and "syn00003" in issue.examples[0] and "syn00003.png" in issue.examples[0]
    assert got.stats.images_embedded == N - 1
    row = got.embeddings.ids.tolist().index("syn00003")
    assert not got.embeddings.has_image[row]
    assert got.embeddings.has_image.sum() == N - 1
    assert "syn00003" not in got.indexes["image"].row
    assert len(got.indexes["image"]) == N - 1
    for kind in ("text", "hybrid"):
        assert "syn00003" in got.indexes[kind].row
        assert len(got.neighbours("syn00003", kind, 5)) == 5
    assert got.neighbours("syn00003", "image").empty
    assert "syn00003" not in set(got.neighbours("syn00004", "image", N)["product_id"])
    hybrid, _ = got.embeddings.matrix("hybrid", got.cfg.hybrid_weight)
    np.testing.assert_allclose(hybrid[row], got.embeddings.text[row], atol=1e-6)


def test_product_without_a_photo(synthetic_catalog, tiny_backbone, tmp_path):
    products = synthetic_catalog.products.copy()
    products.loc["syn00010", "image_path"] = ""
    got = build(with_products(synthetic_catalog, products), tiny_backbone, ArtefactCache(tmp_path / "cache"))
    assert got.report.ok  # a missing photo is the loader's to report, not the build's
    assert got.stats.images_embedded == N - 1
    assert "syn00010" not in got.indexes["image"].row
    assert got.neighbours("syn00010", "image").empty
    assert len(got.neighbours("syn00010", "text", 3)) == 3


def test_ivf_index_neighbours_beyond_the_table(synthetic_catalog, tiny_backbone, tmp_path):
    cfg = BuildConfig(index=IndexConfig("IVF4,Flat", nprobe=4), table_k=5)
    got = build(synthetic_catalog, tiny_backbone, ArtefactCache(tmp_path / "cache"), cfg)
    for k in (5, 12):
        result = got.neighbours("syn00001", "image", k)
        assert len(result) == k and "syn00001" not in set(result["product_id"])


def test_overwritten_checkpoint_is_not_served_from_the_cache(synthetic_catalog, tiny_backbone, tmp_path):
    catalog = synthetic_catalog.head(8)
    path = tmp_path / "finetuned.pt"
    cache = ArtefactCache(tmp_path / "cache")
    torch.save(tiny_backbone.model.state_dict(), path)
    build(catalog, create_backbone(f"openclip:atelier-tiny/{path}"), cache)
    torch.save(create_backbone("random:atelier-tiny/1").model.state_dict(), path)  # new weights, same path
    retrained = create_backbone(f"openclip:atelier-tiny/{path}")
    again = build(catalog, retrained, cache)
    fresh = build(catalog, retrained, ArtefactCache(tmp_path / "fresh-cache"))
    np.testing.assert_allclose(again.embeddings.image, fresh.embeddings.image, atol=1e-5)
    assert again.stats.images_embedded == 8


# ---------------------------------------------------------------- real sample

@pytest.mark.integration
def test_build_on_real_hm_sample(hm_dir, tiny_backbone, tmp_path):
    catalog = load_catalog(hm_dir, limit=300)
    assert len(catalog.products) == 300
    got = build(catalog, tiny_backbone, ArtefactCache(tmp_path / "cache"))
    assert got.report.ok, got.report.summary()
    assert got.stats.images_embedded == 300
    assert got.embeddings.has_image.all()
    assert_unit_rows(got.embeddings.image)
    pid = catalog.products.index[0]
    for kind in KINDS:
        result = got.neighbours(pid, kind, 10)
        assert len(result) == 10 and pid not in set(result["product_id"])
        assert np.all(np.diff(result["score"].to_numpy()) <= 1e-6)
    assert Path(catalog.products["image_path"].iloc[0]).is_relative_to(hm_dir.resolve())


def test_texture_kind_with_more_views_finds_a_products_own_photo(synthetic_catalog, tiny_backbone, tmp_path):
    from core.embeddings.texture import TextureConfig
    cfg = BuildConfig(texture=TextureConfig(views=("photo", "centre")))
    got = build(synthetic_catalog, tiny_backbone, ArtefactCache(tmp_path / "cache"), cfg)
    assert "texture" in got.kinds and got.texture_model is not None
    vectors, ids = got.embeddings.matrix("texture", cfg.hybrid_weight)
    assert len(ids) == N
    assert_unit_rows(vectors)
    pid = synthetic_catalog.products.index[7]
    path = synthetic_catalog.products.at[pid, "image_path"]
    query = got.in_space("texture", got.photo_query(path), got.photo_descriptor(path))
    assert got.search(query, "texture", 1)["product_id"].tolist() == [pid]  # its own photo, through both views
    text = got.in_space("texture", got.text_query("a red striped dress"))
    assert text.shape == vectors.shape[1:] and got.search(text, "texture", 3)["product_id"].size == 3
    untextured = build(synthetic_catalog, tiny_backbone, ArtefactCache(tmp_path / "cache"),
                       BuildConfig(texture=None))
    assert untextured.kinds == ("image", "text", "hybrid") and untextured.embeddings.texture is None


def test_the_texture_reports_version_is_part_of_its_key(built, monkeypatch):
    """The backbone's own "version" used to overwrite the report's in the key: a bump recomputed nothing."""
    from core.explore import texture
    key = built.cache.key(*texture._report_key(built, "pattern", 10, 0, True))
    monkeypatch.setattr(texture, "REPORT_VERSION", texture.REPORT_VERSION + 1)
    assert built.cache.key(*texture._report_key(built, "pattern", 10, 0, True)) != key


def test_a_catalogue_without_photos_builds_without_the_texture_kind(synthetic_catalog, tiny_backbone, tmp_path):
    products = synthetic_catalog.products.copy()
    products["image_path"] = ""
    got = build(with_products(synthetic_catalog, products), tiny_backbone, ArtefactCache(tmp_path / "cache"))
    assert got.kinds == ("image", "text", "hybrid") and got.texture_model is None
    assert got.neighbours(products.index[0], "text", 3)["product_id"].size == 3
    from core.explore.texture import texture_report
    with pytest.raises(ValueError, match="no texture kind"):
        texture_report(got, ArtefactCache(tmp_path / "cache"))


def test_past_the_exact_limit_tables_come_from_a_graph_and_say_their_recall(synthetic_catalog, tiny_backbone,
                                                                             tmp_path, monkeypatch):
    from core.embeddings import index
    cache = ArtefactCache(tmp_path / "cache")
    exact = build(synthetic_catalog, tiny_backbone, cache, BuildConfig(texture=None))
    assert "recall_at_10" not in exact.tables["image"]
    monkeypatch.setattr(index, "EXACT_TABLE_LIMIT", N - 1)  # the catalogue is now "large"
    graph = build(synthetic_catalog, tiny_backbone, cache, BuildConfig(texture=None))
    for kind in graph.kinds:
        table = graph.tables[kind]
        vectors, _ = graph.embeddings.matrix(kind, graph.cfg.hybrid_weight)
        assert float(table["recall_at_10"]) == pytest.approx(index.table_recall(vectors, table["rows"], 10))
        assert table["rows"].shape == exact.tables[kind]["rows"].shape
        assert not (table["rows"] == np.arange(N)[:, None]).any()
    result = graph.neighbours("syn00001", "image", 5)
    assert len(result) == 5 and "syn00001" not in set(result["product_id"])
    monkeypatch.setattr(index, "EXACT_TABLE_LIMIT", N)  # small again: the exact tables, from the cache
    again = build(synthetic_catalog, tiny_backbone, cache, BuildConfig(texture=None))
    assert "recall_at_10" not in again.tables["image"]
