"""offline-lit's text tower: its runner is made from the cache it was given, and kept."""
import numpy as np

from core.cache import ArtefactCache
from core.embeddings.lit.runtime import text_onnx_path
from core.embeddings.lit.text import TextTower


def test_text_tower_reads_its_export_from_its_own_cache(onnx_text_cache, text_tower, isolated_env):
    other = TextTower(onnx_text_cache)  # the export is there already: loaded, not made again
    features = other(["a red striped dress", "jeans"])
    assert features.shape == (2, 384) and features.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1, atol=1e-5)
    assert other.runner() is other.runner() and other.runner().runtime == "onnxruntime"  # made once, kept
    assert text_onnx_path(onnx_text_cache, other.model_dir).is_file()
    assert not (ArtefactCache().root / "onnx").exists()  # nothing in the default cache ($ATELIER_CACHE)
    assert other.model is text_tower.model  # the read-only weights are loaded once per process
