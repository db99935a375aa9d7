"""offline-lit's heads: they learn the pairing, round-trip through arrays, and one fit serves build and held-out."""
import numpy as np
import torch

from core.cache import ArtefactCache
from core.embeddings.lit.heads import LitConfig, LitHeads, TrainingFeatures, fit_heads, fit_heads_on, \
    random_heads_like, training_features, training_pairs
from core.embeddings.lit.runtime import FeatureRunners
from core.embeddings.quality import retrieval_recall


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


def test_training_pairs_pair_each_selected_photo_with_its_sentence_and_captions():
    image = np.arange(4, dtype=np.float32)[:, None] * np.ones((1, 3), dtype=np.float32)
    text = -image[:, :2]
    captions = [100 + text, 200 + text]
    rows = np.array([True, False, True, False])
    photos, texts = training_pairs(image, text, captions, rows)
    np.testing.assert_array_equal(photos[:, 0], [0, 2, 0, 2, 0, 2])
    np.testing.assert_array_equal(texts[:, 0], [0, -2, 100, 98, 200, 198])


def test_fit_heads_on_selected_rows_is_fit_heads_on_their_pairs(features, catalog, tmp_path, onnx_tower, text_tower):
    cfg = LitConfig(epochs=3, batch_size=64)
    got = training_features(catalog, ArtefactCache(tmp_path / "cache"), cfg, runners=FeatureRunners(onnx_tower),
                            text=text_tower)
    image, text, has_image, _ = features
    assert isinstance(got, TrainingFeatures) and len(got.captions) == 2  # pattern and colour captions
    np.testing.assert_allclose(got.image, image, rtol=0, atol=1e-6)
    rows = has_image & (np.arange(len(image)) % 3 > 0)  # e.g. the training products of a held-out split
    heads, history = fit_heads_on(got, rows, cfg)
    want, want_history = fit_heads(*training_pairs(got.image, got.text, got.captions, rows), cfg)
    assert history == want_history  # same pairs, same seed: the same fit
    for name, value in heads.state_arrays().items():
        np.testing.assert_array_equal(value, want.state_arrays()[name])
    no_captions = training_features(catalog, ArtefactCache(tmp_path / "cache"), LitConfig(captions=False),
                                    runners=FeatureRunners(onnx_tower), text=text_tower)
    assert no_captions.captions == []
