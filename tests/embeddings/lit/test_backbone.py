"""offline-lit: pretrained towers from installed packages, heads trained on the catalogue."""
import dataclasses

import numpy as np
import pytest

from core.cache import ArtefactCache
from core.embeddings.backbone import ImageError, load_image
from core.embeddings.lit.backbone import LitBackbone
from core.embeddings.pipeline import build
from core.embeddings.registry import create_backbone


def test_offline_lit_builds_queries_and_reuses_its_heads(catalog, tmp_path):
    cache = ArtefactCache(tmp_path / "cache")
    backbone = create_backbone("offline-lit")
    assert backbone.warning is None and "heads trained" in backbone.describe()
    with pytest.raises(RuntimeError, match="not trained yet"):
        backbone.encode_text(["a red dress"])
    built = build(catalog, backbone, cache)
    assert built.embeddings.image.shape == (160, 256)
    np.testing.assert_allclose(np.linalg.norm(built.embeddings.image, axis=1), 1, atol=1e-5)
    assert built.stats.images_embedded == 160  # each photo through the tower once, in prepare()

    # the text tower and the photo tower answer queries in the shared space
    hits = built.search(built.text_query("a red striped dress"), "image", 10)
    colours = catalog.products.loc[hits["product_id"], "colour"]
    assert (colours == "red").mean() >= 0.3  # 1 in 6 by chance
    pid = catalog.products.index[7]
    top = built.search(built.photo_query(catalog.products.loc[pid, "image_path"]), "image", 1)
    assert top["product_id"].iloc[0] == pid
    # a query photo goes through the runtime that featurised the catalogue: it lands on its own product's row
    np.testing.assert_allclose(built.photo_query(catalog.products.loc[pid, "image_path"]), built.embeddings.image[7],
                               atol=1e-5)
    # the build, its texture pass and its queries share the one photo tower the backbone holds
    assert isinstance(backbone, LitBackbone) and built.runners is backbone.model.runners

    again = build(catalog, create_backbone("offline-lit"), cache)
    assert again.stats.images_embedded == 0 and again.stats.texts_embedded == 0
    assert [e.kind for e in cache.entries()].count("lit-heads") == 1  # same catalogue: heads reused
    np.testing.assert_array_equal(again.embeddings.text, built.embeddings.text)


def test_heads_from_older_tower_features_are_not_reused(catalog, tmp_path, monkeypatch):
    """A new version of a tower (say, another photo canvas) refits the heads and re-embeds every product, even
    where the photo and sentence bytes are the ones the cached heads were trained on."""
    import core.embeddings.lit.backbone as lit_backbone
    cache = ArtefactCache(tmp_path / "cache")
    build(catalog, create_backbone("offline-lit"), cache)
    monkeypatch.setitem(lit_backbone.TOWERS_CFG, "image", {**lit_backbone.TOWERS_CFG["image"], "version": -1})
    again = build(catalog, create_backbone("offline-lit"), cache)
    assert [e.kind for e in cache.entries()].count("lit-heads") == 2
    assert again.stats.images_embedded == 0  # the tower features are cached by their own key; only heads refit


def test_offline_lit_loads_no_tower_until_used():
    backbone = create_backbone("offline-lit")
    assert backbone.model.text_tower is None and not backbone.model.runners.loaded
    assert not hasattr(backbone.model, "image_tower")  # the eager PyTorch tower is not part of the model


def test_unreadable_photo_is_reported_not_fatal(catalog, tmp_path):
    products = catalog.products.iloc[:40].copy()
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    products.iloc[3, products.columns.get_loc("image_path")] = str(bad)
    small = dataclasses.replace(catalog, products=products)
    with pytest.raises(ImageError):
        load_image(bad)
    built = build(small, create_backbone("offline-lit"), ArtefactCache(tmp_path / "cache"))
    assert not built.embeddings.has_image[3] and built.embeddings.has_image.sum() == 39
    assert any("unreadable" in i.problem for i in built.report.issues)


def test_new_products_go_through_the_towers_alone(catalog, tmp_path):
    from core.bench.embed import with_new_products
    cache = ArtefactCache(tmp_path / "cache")
    build(catalog, create_backbone("offline-lit"), cache)
    grown = build(with_new_products(catalog, 10, tmp_path / "new"), create_backbone("offline-lit"), cache)
    assert grown.stats.images_embedded == 10 and grown.stats.texts_embedded == 10
    assert [e.kind for e in cache.entries()].count("lit-heads") == 2  # a new catalogue: heads retrained
