"""Featurisation on the simulated cluster: the same features as in this process, into the same content-keyed cache,
and what a killed worker or an interrupted run costs."""
from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.cache import ArtefactCache, RowStore, _read_npz
from core.embeddings.lit import features
from core.embeddings.lit.features import PhotoBatch, catalog_features, catalog_texture_features
from core.embeddings.lit.towers import IMAGE_TOWER_CFG
from core.executor import use

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """48 synthetic products; one photo missing, one not an image."""
    from core.data.synthetic import make_catalog
    catalog = make_catalog(48, seed=5, image_dir=tmp_path_factory.mktemp("ray-photos"))
    paths = catalog.products["image_path"]
    Path(paths.iloc[3]).write_bytes(b"<html>not a photo</html>")
    catalog.products.loc[catalog.products.index[7], "image_path"] = ""
    return catalog


@pytest.fixture(scope="module")
def local(catalog, tmp_path_factory):
    """catalog_features in this process, into a cache of its own."""
    use(None)
    return catalog_features(catalog, ArtefactCache(tmp_path_factory.mktemp("local-cache")))


def test_cluster_features_equal_local_and_land_in_the_same_cache(catalog, local, on_cluster, isolated_env):
    cache = ArtefactCache(isolated_env)
    seen = []
    image, text, has_image, errors = catalog_features(catalog, cache, lambda stage, d, n: seen.append((stage, d, n)))
    np.testing.assert_allclose(image, local[0], atol=1e-5)
    np.testing.assert_allclose(text, local[1], atol=1e-5)
    assert (has_image == local[2]).all() and not has_image[[3, 7]].any() and has_image.sum() == 46
    assert set(errors) == set(local[3]) == {3}
    assert ("image features", 47, 47) in seen and ("text features", 48, 48) in seen  # progress as locally
    use(None)  # the same cache, in this process: a hit for every photo and sentence
    computed = {}
    again = catalog_features(catalog, cache, computed=computed)
    assert computed == {"images": 0, "texts": 0}
    np.testing.assert_array_equal(again[0], image)


def test_local_cache_is_a_hit_on_the_cluster(catalog, on_cluster, isolated_env, tmp_path):
    cache = ArtefactCache(isolated_env)
    use(None)
    catalog_features(catalog, cache)
    from core.distributed.batches import RayData
    use(RayData())
    computed = {}
    catalog_features(catalog, cache, computed=computed)
    assert computed == {"images": 0, "texts": 0}


def test_other_texture_view_on_the_cluster_equals_local(catalog, on_cluster, isolated_env, tmp_path):
    remote, _ = catalog_texture_features(catalog, ArtefactCache(isolated_env), views=("photo", "gray"))
    use(None)
    here, _ = catalog_texture_features(catalog, ArtefactCache(tmp_path / "here"), views=("photo", "gray"))
    np.testing.assert_allclose(remote, here, atol=1e-5)


@dataclass
class KillingPhotoBatch(PhotoBatch):
    """PhotoBatch that notes every batch it starts in ``log`` and, on the third batch started anywhere, kills its
    own process (SIGKILL) halfway through, once."""
    log: str = ""

    def __call__(self, paths):
        log = Path(self.log)
        (log / f"start-{os.getpid()}-{os.urandom(4).hex()}").write_text(str(paths[0]))
        if len(list(log.glob("start-*"))) >= 3 and not (log / "killed").exists():
            super().__call__(paths[: len(paths) // 2])
            (log / "killed").write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(paths)


def test_worker_killed_mid_featurisation(catalog, local, on_cluster, isolated_env, tmp_path, monkeypatch):
    import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    log = tmp_path / "log"
    log.mkdir()
    monkeypatch.setattr(features, "PHOTO_CHUNK", 8)  # 47 photos: 6 batches
    monkeypatch.setattr(features, "PhotoBatch", lambda root: KillingPhotoBatch(root, log=str(log)))
    cache = ArtefactCache(isolated_env)
    image, _, has_image, errors = catalog_features(catalog, cache)
    assert (log / "killed").exists()  # a worker died mid-batch, and the job finished
    np.testing.assert_allclose(image, local[0], atol=1e-5)
    assert (has_image == local[2]).all() and set(errors) == {3}
    starts = Counter(p.read_text() for p in log.glob("start-*"))
    assert len(starts) == 6  # every batch ran
    assert sorted(starts.values()) == [1, 1, 1, 1, 1, 2]  # only the batch in flight ran twice
    store = RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG)  # no partial or duplicate rows
    shards = sorted(store.dir.glob("shard-*.npz"))
    keys = np.concatenate([_read_npz(p)["keys"] for p in shards])
    assert len(keys) == len(set(keys)) == 46 and not list(store.dir.glob("*.tmp*"))


def test_interrupted_run_resumes_where_it_stopped(catalog, local, on_cluster, isolated_env, monkeypatch):
    monkeypatch.setattr(features, "PHOTO_CHUNK", 8)
    cache = ArtefactCache(isolated_env)

    def stop_after_two(stage, done, total):
        if stage == "image features" and done >= 16:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalog_features(catalog, cache, stop_after_two)
    kept = len(RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG))
    assert 15 <= kept < 46  # the two batches it got (one photo of them is not an image) were saved
    computed = {}
    image, _, _, _ = catalog_features(catalog, cache, computed=computed)
    assert computed["images"] == 46 - kept
    np.testing.assert_allclose(image, local[0], atol=1e-5)

