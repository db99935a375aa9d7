"""offline-lit: pretrained towers from installed packages, heads trained on the catalogue."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.cache import ArtefactCache
from core.embed import ImageError, create_backbone, load_image
from core.evaluate import label_agreement_at_k, retrieval_recall
from core.lit import IMAGE_FEATURES, TEXT_FEATURES, LitConfig, LitHeads, LitImagePreprocess, catalog_features, \
    fit_heads, random_heads_like
from core.pipeline import build
from core.synthetic import make_catalog


@pytest.fixture(autouse=True)
def eager_tower(monkeypatch):
    monkeypatch.setenv("ATELIER_COMPILE", "0")  # no one-off compile in a test run


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_catalog(160, seed=3, image_dir=tmp_path_factory.mktemp("lit-photos"))


@pytest.fixture(scope="module")
def features(catalog, tmp_path_factory):
    return catalog_features(catalog, ArtefactCache(tmp_path_factory.mktemp("lit-cache")))


def test_preprocess_pads_a_portrait_photo_onto_white():
    img = Image.new("RGB", (128, 192), (0, 0, 0))
    x = LitImagePreprocess()(img)
    assert x.shape == (3, 224, 224)
    assert torch.all(x >= -1) and torch.all(x <= 1)
    np.testing.assert_allclose(x[:, :, :30].numpy(), 128 / 128, atol=1e-6)  # white side bands: (255-127)/128
    np.testing.assert_allclose(x[:, :, 100:124].numpy(), -127 / 128, atol=1e-6)  # the black garment, whole


def test_tower_features_know_patterns_and_colours(features, catalog):
    image, text, has_image, errors = features
    assert image.shape == (160, IMAGE_FEATURES) and text.shape == (160, TEXT_FEATURES)
    assert has_image.all() and not errors
    products = catalog.products
    # Pretrained ImageNet features group the synthetic photos by pattern and silhouette far above
    # chance (measured 0.68 and 0.70 against 0.25 and 0.20; colour only 0.21 against 0.17: ImageNet
    # features are texture- and shape-biased). Random weights would sit at chance.
    for col in ("pattern", "product_type"):
        assert label_agreement_at_k(image, products[col].to_numpy()) > 2 / products[col].nunique()
    # MiniLM's sentence features do too (the sentences name them).
    assert label_agreement_at_k(text, products["pattern"].to_numpy()) > 2 / products["pattern"].nunique()


def test_heads_learn_the_pairing(features):
    image, text, _, _ = features
    heads, history = fit_heads(image, text, LitConfig(epochs=60, batch_size=64))
    assert history[-1] < 0.5 * history[0]
    with torch.inference_mode():
        trained = retrieval_recall(heads.embed_text(torch.from_numpy(text)).numpy(),
                                   heads.embed_image(torch.from_numpy(image)).numpy())
        rand = random_heads_like(heads)
        floor = retrieval_recall(rand.embed_text(torch.from_numpy(text)).numpy(),
                                 rand.embed_image(torch.from_numpy(image)).numpy())
    assert trained[10] > 0.5 and trained[10] > 3 * floor[10]


def test_heads_round_trip_through_arrays(features):
    image, text, _, _ = features
    heads, _ = fit_heads(image[:64], text[:64], LitConfig(epochs=2))
    again = LitHeads.from_arrays(heads.state_arrays())
    with torch.inference_mode():
        x = torch.from_numpy(image[:5])
        np.testing.assert_allclose(heads.embed_image(x).numpy(), again.embed_image(x).numpy(), atol=1e-6)


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

    again = build(catalog, create_backbone("offline-lit"), cache)
    assert again.stats.images_embedded == 0 and again.stats.texts_embedded == 0
    assert [e.kind for e in cache.entries()].count("lit-heads") == 1  # same catalogue: heads reused
    np.testing.assert_array_equal(again.embeddings.text, built.embeddings.text)


def test_unreadable_photo_is_reported_not_fatal(catalog, tmp_path):
    import dataclasses
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
    from core.bench import with_new_products
    cache = ArtefactCache(tmp_path / "cache")
    build(catalog, create_backbone("offline-lit"), cache)
    grown = build(with_new_products(catalog, 10, tmp_path / "new"), create_backbone("offline-lit"), cache)
    assert grown.stats.images_embedded == 10 and grown.stats.texts_embedded == 10
    assert [e.kind for e in cache.entries()].count("lit-heads") == 2  # a new catalogue: heads retrained
