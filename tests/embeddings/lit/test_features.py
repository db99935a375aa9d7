"""offline-lit's catalogue features: photos in bulk, both stores in one pass, views, cached per photo."""
import dataclasses

import numpy as np
import pytest

from core.cache import ArtefactCache, RowStore
from core.embeddings.backbone import load_image
from core.embeddings.lit.descriptor import descriptor_dim, texture_cfg, texture_descriptor
from core.embeddings.lit.features import attribute_captions, catalog_features, catalog_texture_features, \
    image_features, photo_descriptors, photo_features
from core.embeddings.lit.towers import IMAGE_FEATURES, IMAGE_TOWER_CFG, TEXT_FEATURES, image_tower
from core.embeddings.quality import label_agreement_at_k


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


def test_attribute_captions_name_pattern_and_colour_of_the_garment(catalog):
    products = catalog.products.iloc[:3]
    pattern, colour = attribute_captions(products)
    kinds = [t.lower() for t in products["product_type"]]
    assert [c.endswith(k) for c, k in zip(pattern, kinds)] == [True] * 3
    assert colour == [f"a {c.lower()} {k}" for c, k in zip(products["colour"], kinds)]


def test_catalog_texture_features_fill_both_stores_in_one_pass(synthetic_catalog, tmp_path, counting, text_tower):
    cache = ArtefactCache(tmp_path / "cache")
    n = len(synthetic_catalog.products)
    texture, has_image = catalog_texture_features(synthetic_catalog, cache, runners=counting.runners)
    assert texture.shape == (n, descriptor_dim()) == (n, 40 + 820) and texture.dtype == np.float32
    assert has_image.all() and counting.photos == n  # each photo through the tower once
    assert len(RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG)) == n
    assert len(RowStore(cache, "lit-texture-features", texture_cfg())) == n
    paths = synthetic_catalog.products["image_path"].tolist()[:4]
    pooled, descriptors, _ = photo_features(paths, tower=counting.tower)
    np.testing.assert_allclose(texture[:4], texture_descriptor(descriptors), rtol=1e-6, atol=1e-6)

    again, _ = catalog_texture_features(synthetic_catalog, cache, runners=counting.runners)
    computed = {}
    image, _, has, errors = catalog_features(synthetic_catalog, cache, computed=computed, runners=counting.runners,
                                             text=text_tower)
    assert counting.photos == n and computed["images"] == 0  # nothing featurised a second time
    np.testing.assert_array_equal(again, texture)
    np.testing.assert_allclose(image[:4], pooled, rtol=1e-6, atol=1e-6)
    assert has.all() and not errors


def test_rows_cached_by_the_torch_path_stay_and_texture_is_added(synthetic_catalog, tmp_path, counting, text_tower):
    cache = ArtefactCache(tmp_path / "cache")
    paths = synthetic_catalog.products["image_path"].tolist()
    old = RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG)
    torch_rows, _ = image_features(image_tower(), paths[:10])  # what the earlier, torch-only build stored
    old.put(cache.file_digests(paths[:10]), torch_rows)
    computed = {}
    image, _, _, _ = catalog_features(synthetic_catalog, cache, computed=computed, runners=counting.runners,
                                      text=text_tower)
    assert computed["images"] == len(paths) == counting.photos  # every photo lacked its texture
    np.testing.assert_array_equal(image[:10], torch_rows)  # stored rows kept as they were
    assert len(old) == len(paths)  # the other photos added, none twice
    texture, has_image = catalog_texture_features(synthetic_catalog, cache, runners=counting.runners)
    assert has_image.all() and counting.photos == len(paths)


def test_unreadable_photo_gives_a_zero_row_and_an_error(synthetic_catalog, tmp_path, counting, text_tower):
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
    texture, has_image = catalog_texture_features(small, cache, runners=counting.runners)
    assert has_image.tolist() == [True, True, False, True, True, True] and not texture[2].any()
    _, _, has, errors = catalog_features(small, cache, runners=counting.runners, text=text_tower)
    assert not has[2] and list(errors) == [2]


def test_photo_descriptors_of_an_uploaded_photo_match_the_catalogue_pass(synthetic_catalog, counting):
    paths = synthetic_catalog.products["image_path"].tolist()[:3]
    one = photo_descriptors([load_image(p) for p in paths], counting)
    _, descriptors, _ = photo_features(paths, tower=counting.tower)
    np.testing.assert_allclose(one, texture_descriptor(descriptors), rtol=1e-5, atol=1e-5)
    assert photo_descriptors([], counting).shape == (0, descriptor_dim())


def test_a_batch_of_several_photo_shapes_gives_what_each_photo_gives_alone(tmp_path, onnx_tower):
    """Portrait, landscape and square photos in one batch (canvases 160 x 224, 224 x 160, 224 x 224): one tower
    call per shape, each row what the photo gives on its own, in the order given; the same for query photos."""
    from tests.embeddings.lit.helpers import draw_photo
    paths = []
    for i, (kind, size) in enumerate([("checks", (160, 240)), ("hstripes", (240, 160)), ("solid", (200, 200)),
                                      ("vstripes", (160, 240)), ("checks", (240, 160))]):
        paths.append(str(tmp_path / f"{i}.png"))
        draw_photo(kind, size=size).save(paths[-1])
    shapes = []

    def recording(x):  # the tower, noting the shapes of each call
        shapes.append({tuple(p.shape) for p in x})
        return onnx_tower(x)
    recording.names, recording.widths = onnx_tower.names, onnx_tower.widths
    pooled, descriptors, errors = photo_features(paths, recording, batch_size=2)
    assert not errors
    # sorted by canvas before batching: 2 + 2 portrait and landscape photos, 1 square one, never mixed in a call
    assert all(len(s) == 1 for s in shapes) and len(shapes) == 3
    for i, path in enumerate(paths):
        alone, alone_descriptors, _ = photo_features([path], onnx_tower)
        np.testing.assert_allclose(pooled[i], alone[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(texture_descriptor(descriptors)[i], texture_descriptor(alone_descriptors)[0],
                                   rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(photo_descriptors([load_image(p) for p in paths], onnx_tower),
                               texture_descriptor(descriptors), rtol=1e-4, atol=1e-5)


@pytest.mark.integration
def test_onnx_pooled_features_of_hm_photos_are_the_torch_towers(hm_dir, onnx_tower):
    paths = [str(p) for p in sorted((hm_dir / "images").glob("*/*.jpg"))[:8]]
    pooled, _, errors = photo_features(paths, tower=onnx_tower)
    want, _ = image_features(image_tower(), paths)  # what the torch path stored in lit-image-features
    assert not errors
    np.testing.assert_allclose(pooled, want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_texture_views_are_extra_passes_side_by_side(synthetic_catalog, tmp_path, counting):
    cache = ArtefactCache(tmp_path / "cache")
    n, d = len(synthetic_catalog.products), descriptor_dim()
    photo, _ = catalog_texture_features(synthetic_catalog, cache, runners=counting.runners)
    assert counting.photos == n
    views, has_image = catalog_texture_features(synthetic_catalog, cache, views=("photo", "gray", "centre"),
                                                runners=counting.runners)
    assert views.shape == (n, 3 * d) and has_image.all()
    assert counting.photos == 3 * n  # one pass per new view; the photo view came from the store
    np.testing.assert_array_equal(views[:, :d], photo)
    assert not np.allclose(views[:, d:2 * d], photo)  # coloured garments: grey is another view
    assert not np.allclose(views[:, 2 * d:], photo)
    again, _ = catalog_texture_features(synthetic_catalog, cache, views=("gray", "centre"), runners=counting.runners)
    assert counting.photos == 3 * n
    np.testing.assert_array_equal(again, views[:, d:])
    # an uploaded photo gets the same descriptor as the catalogue pass
    path = synthetic_catalog.products["image_path"].iloc[0]
    np.testing.assert_allclose(photo_descriptors([load_image(path)], counting, views=("photo", "gray", "centre"))[0],
                               views[0], rtol=1e-5, atol=1e-4)
    # the centre crop zooms into the garment: (almost) no white background is left in it
    from core.embeddings.lit.views import CentrePreprocess, GrayPreprocess, LitImagePreprocess
    crop, full = CentrePreprocess()(load_image(path)), LitImagePreprocess()(load_image(path))
    white = [float((x.amin(dim=0) >= 0.9).float().mean()) for x in (crop, full)]
    assert crop.shape == (3, 224, 224) and white[0] < 0.1 < white[1], white
    grey = GrayPreprocess()(load_image(path))
    assert np.allclose(grey[0], grey[1]) and np.allclose(grey[1], grey[2])
    with pytest.raises(ValueError, match="unknown texture view"):
        catalog_texture_features(synthetic_catalog, cache, views=("photo", "sepia"), runners=counting.runners)
