"""A loaded version (core.serve.release.Release), queried directly: similar products (the build's neighbour table,
merged with added products), known and new customers' lists, and products added without retraining."""
from __future__ import annotations

import numpy as np
import pytest

from core.cache import ArtefactCache
from core.recs.contract import ADD_PRODUCT
from core.recs.newcustomer import NEW_CUSTOMER_SEEDS, recommend_new
from core.serve.release import Release, current, load

SPEC = "synthetic:120:0"


@pytest.fixture
def release(published_synthetic) -> Release:
    """A fresh Release of the published synthetic catalogue (tests add products to it), warmed up as the
    service does (its customers' lists precomputed)."""
    cache: ArtefactCache = published_synthetic
    loaded = load(current(cache, SPEC), cache)
    loaded.warm_up()
    return loaded


def add_copy(release: Release, source: str, pid: str) -> None:
    """A near copy of ``source`` (its title changed, so no exact ties), added as the service adds one."""
    record = release.product(source)
    photo = open(record["image_path"], "rb").read() if record["image_path"] else None
    new = {"id": pid, "title": record["title"] + " II", "description": record["description"],
           "attributes": record["attributes"]}
    release.add_product({**new, "image_path": ""}, release.encode_product(new, photo))


def test_known_customers_lists_are_the_models_and_take_an_added_product(release):
    """Known customers are answered from lists precomputed when the version loads. They must be what the
    model itself answers, for every customer, with and without their purchases, before and after a product
    is added (merged into the lists, not recomputed)."""
    data, customers = release.data, release.data.customer_ids.tolist()

    def agree(model: str, k: int = 10) -> None:
        assert release.recommend_is_lookup(model, k, False) and release.recommend_is_lookup(model, k, True)
        for c in customers:
            for exclude_bought in (False, True):
                got = release.recommend(c, model, k, exclude_bought)
                rows, scores = release.models[model].recommend([c], k, [data.history(c)] if exclude_bought else None)
                assert [h.id for h in got] == release.product_ids[rows[0]].tolist(), (model, c, exclude_bought)
                np.testing.assert_allclose([h.score for h in got], scores[0], rtol=1e-4, atol=1e-5)

    for model in release.models:
        agree(model)
    # a near copy of the product most often recommended (its title changed, so no exact ties): it enters lists
    counts = {}
    for c in customers:
        for h in release.recommend(c, "two_tower", 3, False):
            counts[h.id] = counts.get(h.id, 0) + 1
    source = max(counts, key=counts.get)
    record = release.product(source)
    photo = open(record["image_path"], "rb").read() if record["image_path"] else None
    new = {"id": "copy-1", "title": record["title"] + " II", "description": record["description"],
           "attributes": record["attributes"]}
    release.add_product({**new, "image_path": ""}, release.encode_product(new, photo))
    for model in release.models:
        agree(model)
    assert any(h.id == "copy-1" for c in customers for h in release.recommend(c, "two_tower", 10, True))
    assert not release.recommend_is_lookup("two_tower", 101, False)  # beyond the lists: the model answers


def brute_force(release: Release, product_id: str, kind: str, k: int) -> list[str]:
    index = release.built.indexes[kind]
    vectors = np.stack([index.reconstruct(p) for p in index.ids.tolist()])
    scores = vectors @ index.reconstruct(product_id)
    scores[index.row[product_id]] = -np.inf
    return index.ids[np.argsort(-scores, kind="stable")[:k]].tolist()


def test_similar_reads_the_table_merges_added_products_and_searches_beyond_it(release):
    products = release.catalog.products
    source = str(products.index[products["image_path"] != ""][0])
    width = release.built.tables["text"]["rows"].shape[1]
    assert release.similar_is_lookup(source, "text", width) and not release.similar_is_lookup(source, "text", width + 1)
    table = release.similar(source, "text", 5)
    assert [h.id for h in table] == release.built.neighbours(source, "text", 5)["product_id"].tolist()
    assert [h.id for h in table] == brute_force(release, source, "text", 5)
    add_copy(release, source, "copy-1")
    for kind in ("text", "image"):
        hits = release.similar(source, kind, 5)  # the table's answer, with the added copy merged in
        assert [h.id for h in hits] == brute_force(release, source, kind, 5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert release.similar(source, "image", 1)[0].id == "copy-1"  # the same photo
    assert not release.similar_is_lookup("copy-1", "text", 5)  # past the table: searched
    assert release.similar("copy-1", "image", 1)[0].id == source
    beyond = release.similar(source, "text", width + 5)
    assert [h.id for h in beyond] == brute_force(release, source, "text", width + 5)


def test_a_new_customer_gets_the_one_new_customer_rule(release):
    """Release.recommend_new is core.recs.newcustomer.recommend_new over the build's hybrid index."""
    query = release.backbone.encode_text(["navy checked shirt"])[0]
    liked = release.catalog.products.index[:2].tolist()
    hybrid = release.built.indexes["hybrid"]
    _, near = hybrid.search(query, NEW_CUSTOMER_SEEDS)
    seeds = [release.product_row[str(hybrid.ids[j])] for j in near[0] if j >= 0]
    for name, model in release.models.items():
        rows = [release.product_row[p] for p in liked]
        for given, text in ((liked, None), (liked, query), ([], query)):
            got = release.recommend_new(given, text, name, 8)
            want, _ = recommend_new(model, rows if given else [], 8, text, nearest=lambda q: seeds)
            assert [h.id for h in got] == release.product_ids[want[0]].tolist(), (name, given, text is None)
    alone = release.models["two_tower"]  # its session mode: the words alone, no stand-in products
    rows, _ = alone.search(alone.session_vector(text=query)[None], 5)
    assert [h.id for h in release.recommend_new([], query, "two_tower", 5)] == release.product_ids[rows[0]].tolist()


def test_added_products_reach_the_models_that_declare_they_take_them(release):
    declared = [name for name, model in release.models.items() if model.supports(ADD_PRODUCT)]
    assert sorted(declared) == ["graphsage", "two_tower"]
    before = dict(release._model_rows)
    add_copy(release, release.catalog.products.index[0], "copy-2")
    assert all(release._model_rows[n] == before[n] + 1 for n in declared)
