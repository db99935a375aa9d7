"""Running offline-lit's towers: ONNX export and sessions, the PyTorch fallback, the runner holder."""
import sys

import numpy as np
import pytest
import torch

from core.cache import ArtefactCache
from core.embeddings.lit import runtime
from core.embeddings.lit.descriptor import feature_names
from core.embeddings.lit.runtime import FeatureRunners, TorchFeatureTower, TorchTextTower, create_feature_tower, \
    create_text_runner, load_onnx_text_tower
from core.embeddings.lit.towers import IMAGE_FEATURES, TEXT_FEATURES, FeatureTower, image_tower
from core.embeddings.lit.views import LitImagePreprocess
from tests.embeddings.lit.helpers import assert_same_outputs, draw_photo


def test_onnx_and_torch_towers_give_the_same_features(onnx_tower, photo_batch):
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


@pytest.mark.parametrize("size", [(240, 160), (200, 200), (90, 300)])
def test_onnx_tower_takes_every_canvas_the_preprocessing_gives(onnx_tower, size):
    """Landscape, square and narrow photos: the exported height and width are free, the outputs PyTorch's."""
    x = torch.stack([LitImagePreprocess()(draw_photo(k, size=size)) for k in ("checks", "solid")])
    assert x.shape[2] != x.shape[3] or size[0] == size[1]
    with torch.inference_mode():
        want = [t.numpy() for t in FeatureTower(image_tower())(x)]
    assert_same_outputs(onnx_tower(x), want)


def test_export_is_cached_and_a_corrupt_file_is_replaced(tmp_path, monkeypatch, photo_batch, onnx_tower):
    exports = []
    real_export = runtime.export_feature_tower
    monkeypatch.setattr(runtime, "export_feature_tower", lambda *a: exports.append(a) or real_export(*a))
    cache = ArtefactCache(tmp_path / "cache")
    path = runtime.onnx_path(cache)
    runtime.load_onnx_tower(cache)
    assert len(exports) == 1 and path.is_file() and path.with_suffix(".json").is_file()
    mtime = path.stat().st_mtime_ns
    again = runtime.load_onnx_tower(cache)
    assert len(exports) == 1 and path.stat().st_mtime_ns == mtime  # reused, not exported again
    assert_same_outputs(again(photo_batch), onnx_tower(photo_batch), rel=1e-6)

    path.write_bytes(b"not an onnx model")  # unreadable
    assert_same_outputs(runtime.load_onnx_tower(cache)(photo_batch), onnx_tower(photo_batch), rel=1e-6)
    assert len(exports) == 2
    data = bytearray(path.read_bytes())  # readable, but one weight byte changed: the recorded digest catches it
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_same_outputs(runtime.load_onnx_tower(cache)(photo_batch), onnx_tower(photo_batch), rel=1e-6)
    assert len(exports) == 3
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")) == \
        sorted([path.name, path.with_suffix(".json").name])  # no temporary files left behind


def test_runtime_env_forces_torch_with_the_same_outputs(tmp_path, monkeypatch, photo_batch, onnx_tower):
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
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    cache = ArtefactCache(tmp_path / "cache")
    with caplog.at_level("WARNING", logger="core.embeddings.lit.runtime"):
        tower = create_feature_tower(cache)
    assert tower.runtime == "torch" and "onnxruntime" in tower.reason
    assert any("ONNX Runtime unavailable" in r.message for r in caplog.records)
    assert_same_outputs(tower(photo_batch), onnx_tower(photo_batch))
    monkeypatch.setenv("ATELIER_RUNTIME", "onnxruntime")  # asked for by name: an error, not a fallback
    with pytest.raises(ImportError):
        create_feature_tower(cache)


def test_feature_runners_keep_one_runner_per_runtime_choice(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(runtime, "create_feature_tower", lambda cache, blocks: made.append(cache) or object())
    runners, first, second = FeatureRunners(), ArtefactCache(tmp_path / "a"), ArtefactCache(tmp_path / "b")
    assert made == [] and not runners.loaded  # nothing loaded until asked
    one = runners.get(first)
    assert runners.loaded
    assert runners.get(second) is one and made == [first]  # later calls share it, whatever their cache
    assert FeatureRunners().get(second) is not one and made == [first, second]  # another holder, its own
    monkeypatch.setenv("ATELIER_RUNTIME", "torch")
    torch_runner = runners.get(first)
    assert torch_runner is not one and runners.get(first) is torch_runner and len(made) == 3
    monkeypatch.delenv("ATELIER_RUNTIME")
    assert runners.get(first) is not one and len(made) == 4  # one model in memory at a time: made again
    held = object()
    assert FeatureRunners(held).get(first) is held and len(made) == 4  # a runner given is the one used


# ---------------------------------------------------------------- text encoding (ONNX Runtime)

LONG = " ".join(["pattern"] * 300)  # 300 words: more tokens than max_seq_length (256), so truncated
SENTENCES = ["a red striped dress", "", "Slim-fit jeans in washed stretch denim with a regular waist and zip fly.",
             LONG, "top", "Soft jersey T-shirt with a round neck"]


@pytest.fixture(scope="module")
def onnx_text(onnx_text_cache, text_tower):
    return load_onnx_text_tower(onnx_text_cache, text_tower)


class RecordingSession:
    """An ONNX Runtime session that records the (batch, tokens) shape of each call."""

    def __init__(self, session):
        self.session, self.shapes = session, []

    def run(self, names, feed):
        self.shapes.append(feed["input_ids"].shape)
        return self.session.run(names, feed)


def test_onnx_text_features_are_the_sentence_transformers_ones(onnx_text, text_tower):
    model = text_tower.model
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


def test_export_of_the_text_encoder_is_reused(onnx_text_cache, onnx_text, text_tower, monkeypatch):
    exports = []
    monkeypatch.setattr(runtime, "export_sentence_encoder", lambda *a: exports.append(a))
    again = load_onnx_text_tower(onnx_text_cache, text_tower)
    assert not exports and runtime.text_onnx_path(onnx_text_cache, text_tower.model_dir).is_file()
    np.testing.assert_array_equal(again(SENTENCES[:3]), onnx_text(SENTENCES[:3]))


def test_runtime_env_forces_torch_for_texts(tmp_path, monkeypatch, onnx_text, text_tower):
    monkeypatch.setenv("ATELIER_RUNTIME", "torch")
    cache = ArtefactCache(tmp_path / "cache")
    runner = create_text_runner(cache, text_tower)
    assert runner.runtime == "torch" and "ATELIER_RUNTIME" in runner.reason
    assert not (cache.root / "onnx").exists()  # nothing exported
    assert text_tower.runner().runtime == "torch"  # what text_tower(texts) and queries go through
    np.testing.assert_allclose(text_tower(SENTENCES), onnx_text(SENTENCES), rtol=0, atol=1e-4)


def test_missing_onnxruntime_falls_back_to_torch_for_texts(tmp_path, monkeypatch, caplog, text_tower):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    cache = ArtefactCache(tmp_path / "cache")
    with caplog.at_level("WARNING", logger="core.embeddings.lit.runtime"):
        runner = create_text_runner(cache, text_tower)
    assert runner.runtime == "torch" and "onnxruntime" in runner.reason
    assert any("ONNX Runtime unavailable" in r.message and "encoding texts" in r.message for r in caplog.records)
    monkeypatch.setenv("ATELIER_RUNTIME", "onnxruntime")  # asked for by name: an error, not a fallback
    with pytest.raises(ImportError):
        create_text_runner(cache, text_tower)
