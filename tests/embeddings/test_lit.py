"""offline-lit: pretrained towers from installed packages, heads trained on the catalogue."""
import numpy as np
import pytest
import torch
from PIL import Image

from core.cache import ArtefactCache
from core.embeddings.backbone import ImageError, load_image
from core.embeddings.registry import create_backbone
from core.embeddings.quality import label_agreement_at_k, retrieval_recall
from core.embeddings.lit import IMAGE_FEATURES, TEXT_FEATURES, LitConfig, LitHeads, LitImagePreprocess, catalog_features, \
    fit_heads, random_heads_like
from core.embeddings.pipeline import build
from core.data.synthetic import make_catalog


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
    # a query photo goes through the runtime that featurised the catalogue: it lands on its own product's row
    np.testing.assert_allclose(built.photo_query(catalog.products.loc[pid, "image_path"]), built.embeddings.image[7],
                               atol=1e-5)

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
    from core.bench.embed import with_new_products
    cache = ArtefactCache(tmp_path / "cache")
    build(catalog, create_backbone("offline-lit"), cache)
    grown = build(with_new_products(catalog, 10, tmp_path / "new"), create_backbone("offline-lit"), cache)
    assert grown.stats.images_embedded == 10 and grown.stats.texts_embedded == 10
    assert [e.kind for e in cache.entries()].count("lit-heads") == 2  # a new catalogue: heads retrained


# ---------------------------------------------------------------- bulk featurisation (ONNX Runtime)

def draw_photo(kind: str, colour=(200, 30, 40), size=(160, 240)) -> Image.Image:
    """A garment-like block with known stripes or checks on a white photo (``blank``: white only)."""
    from PIL import ImageDraw
    img = Image.new("RGB", size, (255, 255, 255))
    if kind == "blank":
        return img
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = 30, 40, size[0] - 30, size[1] - 30
    draw.rectangle((x0, y0, x1, y1), fill=(250, 250, 250) if kind != "solid" else colour)
    for i, x in enumerate(range(x0, x1, 8)):
        for j, y in enumerate(range(y0, y1, 8)):
            on = {"hstripes": j % 2 == 0, "vstripes": i % 2 == 0, "checks": (i + j) % 2 == 0}.get(kind, False)
            if on:
                draw.rectangle((x, y, x + 7, y + 7), fill=colour)
    return img


PHOTO_KINDS = ("hstripes", "vstripes", "checks", "solid", "blank")


@pytest.fixture(scope="module")
def photo_batch() -> torch.Tensor:
    """(5, 3, 224, 224): the drawn photos, preprocessed."""
    pre = LitImagePreprocess()
    return torch.stack([pre(draw_photo(k)) for k in PHOTO_KINDS])


@pytest.fixture(scope="module")
def onnx_tower(tmp_path_factory):
    from core.embeddings.lit import load_onnx_tower
    return load_onnx_tower(ArtefactCache(tmp_path_factory.mktemp("onnx-cache")))


def assert_same_outputs(got, want, rel: float = 1e-4) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=0, atol=rel * max(float(np.abs(w).max()), 1e-6))


def test_onnx_and_torch_towers_give_the_same_features(onnx_tower, photo_batch):
    from core.embeddings.lit import FeatureTower, TorchFeatureTower, feature_names, image_tower
    assert onnx_tower.runtime == "onnxruntime" and onnx_tower.names == feature_names() == ["pooled", "mean4", "gram4"]
    assert onnx_tower.widths == [IMAGE_FEATURES, 40, 40 * 41 // 2]
    with torch.inference_mode():
        want = [t.numpy() for t in FeatureTower(image_tower())(photo_batch)]
        pooled = image_tower()(photo_batch[:2]).numpy()
    got = onnx_tower(photo_batch.numpy())
    assert_same_outputs(got, want)
    assert_same_outputs([got[0][:2]], [pooled])  # FeatureTower's pooled features are ImageTower's
    assert_same_outputs(onnx_tower(photo_batch[:1]), [w[:1] for w in want])  # any batch size, torch input too
    assert_same_outputs(TorchFeatureTower(image_tower())(photo_batch[:2]), [w[:2] for w in want], rel=1e-5)
    # the texture part tells the patterns apart, and the blank photo has no garment: zero moments
    gram = got[2]
    assert not np.allclose(gram[0], gram[2], rtol=1e-2) and np.all(got[1][4] == 0) and np.all(gram[4] == 0)


def test_export_is_cached_and_a_corrupt_file_is_replaced(tmp_path, monkeypatch, photo_batch, onnx_tower):
    import core.embeddings.lit as lit
    exports = []
    real_export = lit.export_feature_tower
    monkeypatch.setattr(lit, "export_feature_tower", lambda *a: exports.append(a) or real_export(*a))
    cache = ArtefactCache(tmp_path / "cache")
    path = lit.onnx_path(cache)
    lit.load_onnx_tower(cache)
    assert len(exports) == 1 and path.is_file() and path.with_suffix(".json").is_file()
    mtime = path.stat().st_mtime_ns
    again = lit.load_onnx_tower(cache)
    assert len(exports) == 1 and path.stat().st_mtime_ns == mtime  # reused, not exported again
    assert_same_outputs(again(photo_batch), onnx_tower(photo_batch), rel=1e-6)

    path.write_bytes(b"not an onnx model")  # unreadable
    assert_same_outputs(lit.load_onnx_tower(cache)(photo_batch), onnx_tower(photo_batch), rel=1e-6)
    assert len(exports) == 2
    data = bytearray(path.read_bytes())  # readable, but one weight byte changed: the recorded digest catches it
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_same_outputs(lit.load_onnx_tower(cache)(photo_batch), onnx_tower(photo_batch), rel=1e-6)
    assert len(exports) == 3
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == \
        sorted([path.name, path.with_suffix(".json").name])  # no temporary files left behind


def test_runtime_env_forces_torch_with_the_same_outputs(tmp_path, monkeypatch, photo_batch, onnx_tower):
    from core.embeddings.lit import create_feature_tower
    monkeypatch.setenv("ATELIER_RUNTIME", "torch")
    cache = ArtefactCache(tmp_path / "cache")
    tower = create_feature_tower(cache)
    assert tower.runtime == "torch" and "ATELIER_RUNTIME" in tower.reason
    assert not (cache.root / "onnx").exists()  # nothing exported
    assert_same_outputs(tower(photo_batch), onnx_tower(photo_batch))
    monkeypatch.setenv("ATELIER_RUNTIME", "tensorrt")
    with pytest.raises(ValueError, match="ATELIER_RUNTIME"):
        create_feature_tower(cache)


def test_missing_onnxruntime_falls_back_to_torch(tmp_path, monkeypatch, caplog, photo_batch, onnx_tower):
    import sys
    from core.embeddings.lit import create_feature_tower
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    cache = ArtefactCache(tmp_path / "cache")
    with caplog.at_level("WARNING", logger="core.embeddings.lit"):
        tower = create_feature_tower(cache)
    assert tower.runtime == "torch" and "onnxruntime" in tower.reason
    assert any("ONNX Runtime unavailable" in r.message for r in caplog.records)
    assert_same_outputs(tower(photo_batch), onnx_tower(photo_batch))
    monkeypatch.setenv("ATELIER_RUNTIME", "onnxruntime")  # asked for by name: an error, not a fallback
    with pytest.raises(ImportError):
        create_feature_tower(cache)


class CountingTower:
    """A feature runner that counts the photos it is given."""

    def __init__(self, tower):
        self.tower, self.photos = tower, 0
        self.names, self.widths, self.runtime, self.reason = tower.names, tower.widths, tower.runtime, tower.reason

    def __call__(self, x):
        self.photos += len(x)
        return self.tower(x)


@pytest.fixture
def counting(monkeypatch, onnx_tower):
    import core.embeddings.lit as lit
    counter = CountingTower(onnx_tower)
    monkeypatch.setattr(lit, "feature_tower", lambda cache, blocks=lit.TEXTURE_BLOCKS: counter)
    return counter


def test_catalog_texture_features_fill_both_stores_in_one_pass(synthetic_catalog, tmp_path, counting):
    from core.cache import RowStore
    from core.embeddings.lit import IMAGE_TOWER_CFG, catalog_texture_features, descriptor_dim, photo_features, texture_cfg, \
        texture_descriptor
    cache = ArtefactCache(tmp_path / "cache")
    n = len(synthetic_catalog.products)
    texture, has_image = catalog_texture_features(synthetic_catalog, cache)
    assert texture.shape == (n, descriptor_dim()) == (n, 40 + 820) and texture.dtype == np.float32
    assert has_image.all() and counting.photos == n  # each photo through the tower once
    assert len(RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG)) == n
    assert len(RowStore(cache, "lit-texture-features", texture_cfg())) == n
    paths = synthetic_catalog.products["image_path"].tolist()[:4]
    pooled, descriptors, _ = photo_features(paths, tower=counting.tower)
    np.testing.assert_allclose(texture[:4], texture_descriptor(descriptors), rtol=1e-6, atol=1e-6)

    again, _ = catalog_texture_features(synthetic_catalog, cache)
    computed = {}
    image, _, has, errors = catalog_features(synthetic_catalog, cache, computed=computed)
    assert counting.photos == n and computed["images"] == 0  # nothing featurised a second time
    np.testing.assert_array_equal(again, texture)
    np.testing.assert_allclose(image[:4], pooled, rtol=1e-6, atol=1e-6)
    assert has.all() and not errors


def test_rows_cached_by_the_torch_path_stay_and_texture_is_added(synthetic_catalog, tmp_path, counting):
    from core.cache import RowStore
    from core.embeddings.lit import IMAGE_TOWER_CFG, catalog_texture_features, image_features, image_tower
    cache = ArtefactCache(tmp_path / "cache")
    paths = synthetic_catalog.products["image_path"].tolist()
    old = RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG)
    torch_rows, _ = image_features(image_tower(), paths[:10])  # what the earlier, torch-only build stored
    old.put(cache.file_digests(paths[:10]), torch_rows)
    computed = {}
    image, _, _, _ = catalog_features(synthetic_catalog, cache, computed=computed)
    assert computed["images"] == len(paths) == counting.photos  # every photo lacked its texture
    np.testing.assert_array_equal(image[:10], torch_rows)  # stored rows kept as they were
    assert len(old) == len(paths)  # the other photos added, none twice
    texture, has_image = catalog_texture_features(synthetic_catalog, cache)
    assert has_image.all() and counting.photos == len(paths)


def test_unreadable_photo_gives_a_zero_row_and_an_error(synthetic_catalog, tmp_path, counting):
    import dataclasses
    from core.embeddings.lit import catalog_texture_features, photo_features
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    paths = synthetic_catalog.products["image_path"].tolist()[:6]
    paths[2] = str(bad)
    pooled, descriptors, errors = photo_features(paths, batch_size=4, tower=counting.tower)
    assert list(errors) == [2] and "not a readable image" in errors[2]
    assert not pooled[2].any() and not any(d[2].any() for d in descriptors.values())
    assert pooled[[0, 1, 3, 4, 5]].any(axis=1).all()

    products = synthetic_catalog.products.iloc[:6].copy()
    products["image_path"] = paths
    small = dataclasses.replace(synthetic_catalog, products=products)
    cache = ArtefactCache(tmp_path / "cache")
    texture, has_image = catalog_texture_features(small, cache)
    assert has_image.tolist() == [True, True, False, True, True, True] and not texture[2].any()
    _, _, has, errors = catalog_features(small, cache)
    assert not has[2] and list(errors) == [2]


def test_photo_descriptors_of_an_uploaded_photo_match_the_catalogue_pass(synthetic_catalog, counting):
    from core.embeddings.lit import descriptor_dim, photo_descriptors, photo_features, texture_descriptor
    paths = synthetic_catalog.products["image_path"].tolist()[:3]
    one = photo_descriptors([load_image(p) for p in paths])
    _, descriptors, _ = photo_features(paths, tower=counting.tower)
    np.testing.assert_allclose(one, texture_descriptor(descriptors), rtol=1e-5, atol=1e-5)
    assert photo_descriptors([]).shape == (0, descriptor_dim())


@pytest.mark.integration
def test_onnx_pooled_features_of_hm_photos_are_the_torch_towers(hm_dir, onnx_tower):
    from core.embeddings.lit import image_features, image_tower, photo_features
    paths = [str(p) for p in sorted((hm_dir / "images").glob("*/*.jpg"))[:8]]
    pooled, _, errors = photo_features(paths, tower=onnx_tower)
    want, _ = image_features(image_tower(), paths)  # what the torch path stored in lit-image-features
    assert not errors
    np.testing.assert_allclose(pooled, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_texture_views_are_extra_passes_side_by_side(synthetic_catalog, tmp_path, counting):
    from core.embeddings.lit import CentrePreprocess, GrayPreprocess, catalog_texture_features, descriptor_dim, \
        photo_descriptors
    cache = ArtefactCache(tmp_path / "cache")
    n, d = len(synthetic_catalog.products), descriptor_dim()
    photo, _ = catalog_texture_features(synthetic_catalog, cache)
    assert counting.photos == n
    views, has_image = catalog_texture_features(synthetic_catalog, cache, views=("photo", "gray", "centre"))
    assert views.shape == (n, 3 * d) and has_image.all()
    assert counting.photos == 3 * n  # one pass per new view; the photo view came from the store
    np.testing.assert_array_equal(views[:, :d], photo)
    assert not np.allclose(views[:, d:2 * d], photo)  # coloured garments: grey is another view
    assert not np.allclose(views[:, 2 * d:], photo)
    again, _ = catalog_texture_features(synthetic_catalog, cache, views=("gray", "centre"))
    assert counting.photos == 3 * n
    np.testing.assert_array_equal(again, views[:, d:])
    # an uploaded photo gets the same descriptor as the catalogue pass
    path = synthetic_catalog.products["image_path"].iloc[0]
    np.testing.assert_allclose(photo_descriptors([load_image(path)], views=("photo", "gray", "centre"))[0],
                               views[0], rtol=1e-5, atol=1e-4)
    # the centre crop zooms into the garment: (almost) no white background is left in it
    crop, full = CentrePreprocess()(load_image(path)), LitImagePreprocess()(load_image(path))
    white = [float((x.amin(dim=0) >= 0.9).float().mean()) for x in (crop, full)]
    assert crop.shape == (3, 224, 224) and white[0] < 0.1 < white[1], white
    grey = GrayPreprocess()(load_image(path))
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[1], grey[2])
    with pytest.raises(ValueError, match="unknown texture view"):
        catalog_texture_features(synthetic_catalog, cache, views=("photo", "sepia"))


# ---------------------------------------------------------------- text encoding (ONNX Runtime)

LONG = " ".join(["pattern"] * 300)  # 300 words: more tokens than max_seq_length (256), so truncated
SENTENCES = ["a red striped dress", "", "Slim-fit jeans in washed stretch denim with a regular waist and zip fly.",
             LONG, "top", "Soft jersey T-shirt with a round neck"]


@pytest.fixture(scope="module")
def onnx_text_cache(tmp_path_factory):
    return ArtefactCache(tmp_path_factory.mktemp("onnx-text-cache"))


@pytest.fixture(scope="module")
def onnx_text(onnx_text_cache):
    from core.embeddings.lit import load_onnx_text_tower, text_tower
    return load_onnx_text_tower(onnx_text_cache, text_tower())


class RecordingSession:
    """An ONNX Runtime session that records the (batch, tokens) shape of each call."""

    def __init__(self, session):
        self.session, self.shapes = session, []

    def run(self, names, feed):
        self.shapes.append(feed["input_ids"].shape)
        return self.session.run(names, feed)


def test_onnx_text_features_are_the_sentence_transformers_ones(onnx_text):
    from core.embeddings.lit import TorchTextTower, text_tower
    model = text_tower().model
    assert onnx_text.runtime == "onnxruntime" and onnx_text.max_length == model.max_seq_length == 256
    assert len(model.tokenizer(LONG)["input_ids"]) > 256
    want = TorchTextTower(model)(SENTENCES)
    got = onnx_text(SENTENCES)
    assert got.shape == (len(SENTENCES), TEXT_FEATURES) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    # truncated as SentenceTransformer truncates: words past the 256th token change nothing
    np.testing.assert_allclose(onnx_text([LONG + " stripes and checks in red"]), got[[3]], rtol=0, atol=1e-6)
    assert onnx_text([]).shape == TorchTextTower(model)([]).shape == (0, TEXT_FEATURES)


def test_text_batches_go_longest_first_and_rows_keep_their_order(onnx_text, monkeypatch):
    alone = np.concatenate([onnx_text([s]) for s in SENTENCES])
    recording = RecordingSession(onnx_text.session)
    monkeypatch.setattr(onnx_text, "session", recording)
    got = onnx_text(SENTENCES, batch_size=2)
    np.testing.assert_allclose(got, alone, rtol=0, atol=1e-5)  # row i is sentence i's, padded or not
    assert [b for b, _ in recording.shapes] == [2, 2, 2]
    tokens = [t for _, t in recording.shapes]
    assert tokens[0] == 256 and tokens == sorted(tokens, reverse=True)  # the truncated one first, then shorter


def test_export_of_the_text_encoder_is_reused(onnx_text_cache, onnx_text, monkeypatch):
    import core.embeddings.lit as lit
    exports = []
    monkeypatch.setattr(lit, "export_sentence_encoder", lambda *a: exports.append(a))
    again = lit.load_onnx_text_tower(onnx_text_cache, lit.text_tower())
    assert not exports and lit.text_onnx_path(onnx_text_cache, lit.text_tower().model_dir).is_file()
    np.testing.assert_array_equal(again(SENTENCES[:3]), onnx_text(SENTENCES[:3]))


def test_runtime_env_forces_torch_for_texts(tmp_path, monkeypatch, onnx_text):
    from core.embeddings.lit import create_text_runner, text_tower
    monkeypatch.setenv("ATELIER_RUNTIME", "torch")
    cache = ArtefactCache(tmp_path / "cache")
    runner = create_text_runner(cache, text_tower())
    assert runner.runtime == "torch" and "ATELIER_RUNTIME" in runner.reason
    assert not (cache.root / "onnx").exists()  # nothing exported
    assert text_tower().runner().runtime == "torch"  # what text_tower()(texts) and queries go through
    np.testing.assert_allclose(text_tower()(SENTENCES), onnx_text(SENTENCES), rtol=0, atol=1e-4)


def test_missing_onnxruntime_falls_back_to_torch_for_texts(tmp_path, monkeypatch, caplog):
    import sys
    from core.embeddings.lit import create_text_runner, text_tower
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    cache = ArtefactCache(tmp_path / "cache")
    with caplog.at_level("WARNING", logger="core.embeddings.lit"):
        runner = create_text_runner(cache, text_tower())
    assert runner.runtime == "torch" and "onnxruntime" in runner.reason
    assert any("ONNX Runtime unavailable" in r.message and "encoding texts" in r.message for r in caplog.records)
    monkeypatch.setenv("ATELIER_RUNTIME", "onnxruntime")  # asked for by name: an error, not a fallback
    with pytest.raises(ImportError):
        create_text_runner(cache, text_tower())
