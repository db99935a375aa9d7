"""Fixtures of the offline-lit tests: a 160-product catalogue, drawn photos, towers exported once per run."""
import pytest
import torch

from core.cache import ArtefactCache
from core.data.synthetic import make_catalog
from core.embeddings.lit.runtime import FeatureRunners
from core.embeddings.lit.views import LitImagePreprocess
from tests.embeddings.lit.helpers import PHOTO_KINDS, CountingTower, draw_photo


@pytest.fixture(scope="package")
def catalog(tmp_path_factory):
    return make_catalog(160, seed=3, image_dir=tmp_path_factory.mktemp("lit-photos"))


@pytest.fixture(scope="package")
def photo_batch() -> torch.Tensor:
    """(5, 3, 224, 160): the drawn photos (2:3), preprocessed."""
    pre = LitImagePreprocess()
    return torch.stack([pre(draw_photo(k)) for k in PHOTO_KINDS])


@pytest.fixture(scope="package")
def onnx_tower(tmp_path_factory):
    from core.embeddings.lit.runtime import load_onnx_tower
    return load_onnx_tower(ArtefactCache(tmp_path_factory.mktemp("onnx-cache")))


@pytest.fixture(scope="package")
def onnx_text_cache(tmp_path_factory):
    return ArtefactCache(tmp_path_factory.mktemp("onnx-text-cache"))


@pytest.fixture(scope="package")
def text_tower(onnx_text_cache):
    """The text tower, its export in ``onnx_text_cache``: shared, so the model is exported once per run."""
    from core.embeddings.lit.text import TextTower
    return TextTower(onnx_text_cache)


@pytest.fixture
def counting(onnx_tower) -> CountingTower:
    """The ONNX tower counting its photos; ``counting.runners`` holds it, to pass to the catalogue functions."""
    counter = CountingTower(onnx_tower)
    counter.runners = FeatureRunners(counter)
    return counter


@pytest.fixture(scope="package")
def features(catalog, tmp_path_factory, onnx_tower, text_tower):
    """catalog_features of ``catalog``: image (160, 1280), text (160, 384), has_image, errors."""
    from core.embeddings.lit.features import catalog_features
    return catalog_features(catalog, ArtefactCache(tmp_path_factory.mktemp("lit-cache")),
                            runners=FeatureRunners(onnx_tower), text=text_tower)
