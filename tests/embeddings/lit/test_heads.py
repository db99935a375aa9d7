"""offline-lit's heads: they learn the pairing, round-trip through arrays, and one fit serves build and held-out."""
import numpy as np
import pytest
import torch

from core.cache import ArtefactCache
import dataclasses

from core.embeddings.lit.heads import LitConfig, LitHeads, TrainingFeatures, choose_epochs, fit_heads, fit_heads_on, \
    random_heads_like, training_features, training_pairs, validation_recall
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
    pairs = training_pairs(image, text, captions, rows)
    assert len(pairs) == 6
    photos, texts = pairs.batch(np.arange(6))
    np.testing.assert_array_equal(photos[:, 0], [0, 2, 0, 2, 0, 2])
    np.testing.assert_array_equal(texts[:, 0], [0, -2, 100, 98, 200, 198])
    photos, texts = pairs.batch(np.array([5, 0, 3]))  # any pairs, in the order asked
    np.testing.assert_array_equal(photos[:, 0], [2, 0, 2])
    np.testing.assert_array_equal(texts[:, 0], [198, 0, 98])


def test_fit_heads_on_selected_rows_is_fit_heads_on_their_pairs(features, catalog, tmp_path, onnx_tower, text_tower):
    cfg = LitConfig(epochs=3, batch_size=64, patience=0)  # patience 0: always cfg.epochs
    got = training_features(catalog, ArtefactCache(tmp_path / "cache"), cfg, runners=FeatureRunners(onnx_tower),
                            text=text_tower)
    image, text, has_image, _ = features
    assert isinstance(got, TrainingFeatures) and len(got.captions) == 2  # pattern and colour captions
    np.testing.assert_allclose(got.image, image, rtol=0, atol=1e-6)
    rows = has_image & (np.arange(len(image)) % 3 > 0)  # e.g. the training products of a held-out split
    heads, history = fit_heads_on(got, rows, cfg)
    # every pair copied out, as the fit once took them: gathered a batch at a time instead, the same fit
    photos = np.concatenate([got.image[rows]] * (1 + len(got.captions)))
    texts = np.concatenate([got.text[rows]] + [c[rows] for c in got.captions])
    want, want_history = fit_heads(photos, texts, cfg)
    assert history == want_history  # same pairs, same seed: the same fit
    for name, value in heads.state_arrays().items():
        np.testing.assert_array_equal(value, want.state_arrays()[name])
    no_captions = training_features(catalog, ArtefactCache(tmp_path / "cache"), LitConfig(captions=False),
                                    runners=FeatureRunners(onnx_tower), text=text_tower)
    assert no_captions.captions == []


def paired_features(n: int, seed: int = 0) -> TrainingFeatures:
    """(n, 1280) photo and (n, 384) sentence features where the sentence is a fixed linear map of the photo plus
    noise: a pairing heads learn in a few epochs. Each product its own group."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, 1280)).astype(np.float32)
    text = (image @ rng.standard_normal((1280, 384)) / 36 + 0.5 * rng.standard_normal((n, 384))).astype(np.float32)
    return TrainingFeatures(image, text, np.ones(n, dtype=bool), [], {}, np.array([f"g{i}" for i in range(n)]))


@pytest.fixture
def one_torch_thread():
    """Small matmuls on one thread: on a machine busy with other work, torch's default threads wait on each
    other at every step (this test took 20-60 s instead of 0.5 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_choose_epochs_stops_once_validation_recall_stops_rising(one_torch_thread):
    features = paired_features(200)
    cfg = LitConfig(epochs=40, batch_size=64, lr=1e-2, patience=3, validation=0.25)  # learnt in a few epochs
    rows = np.ones(len(features.image), dtype=bool)
    choice = choose_epochs(features, rows, cfg)
    assert 1 <= choice.epochs < cfg.epochs
    chosen = choice.scores[choice.epochs - 1]
    assert all(s < chosen + cfg.min_gain for s in choice.scores[choice.epochs:])  # none later beat it by min_gain
    assert len(choice.scores) == choice.epochs + cfg.patience  # stopped after `patience` epochs without a better one
    # a gain nothing reaches: the first epoch stays the best
    never = choose_epochs(features, rows, dataclasses.replace(cfg, min_gain=2.0))
    assert never.epochs == 1 and len(never.scores) == 1 + cfg.patience
    assert max(choice.scores) > 0.5  # it did learn the pairing on products it never trained on
    # the final fit: all the rows, the chosen epochs
    heads, history = fit_heads_on(features, rows, cfg)
    want, want_history = fit_heads(features.image, features.text, dataclasses.replace(cfg, epochs=choice.epochs))
    assert history == want_history and len(history) == choice.epochs
    for name, value in heads.state_arrays().items():
        np.testing.assert_array_equal(value, want.state_arrays()[name])


def test_choose_epochs_holds_out_at_most_validation_products_whole_groups(one_torch_thread, monkeypatch):
    from core.embeddings.lit import heads as lit_heads
    features = dataclasses.replace(paired_features(200), groups=np.repeat([f"g{i}" for i in range(50)], 4))
    rows = np.ones(200, dtype=bool)
    seen, trained = [], []
    recall, pairs = lit_heads.validation_recall, lit_heads.training_pairs
    monkeypatch.setattr(lit_heads, "validation_recall", lambda h, i, t: seen.append(len(i)) or recall(h, i, t))
    monkeypatch.setattr(lit_heads, "training_pairs", lambda i, t, c, r: trained.append(r.copy()) or pairs(i, t, c, r))
    cfg = LitConfig(epochs=2, batch_size=64, patience=3, validation=0.5)
    choose_epochs(features, rows, cfg)
    assert seen[0] > 60  # about half of 200
    seen.clear(), trained.clear()
    choose_epochs(features, rows, dataclasses.replace(cfg, validation_products=30))
    assert 0 < seen[0] <= 30 and trained[0].sum() == 200 - seen[0]  # the rest of the held-out share trains
    held = ~trained[0]
    groups = np.asarray(features.groups)
    assert not set(groups[held]) & set(groups[~held])  # whole groups on each side


def test_choose_epochs_keeps_the_configured_epochs_without_groups_or_patience():
    features = paired_features(60)
    rows = np.ones(60, dtype=bool)
    assert choose_epochs(dataclasses.replace(features, groups=None), rows, LitConfig(epochs=7)).epochs == 7
    assert choose_epochs(features, rows, LitConfig(epochs=7, patience=0)).epochs == 7
    assert choose_epochs(features, np.arange(60) < 1, LitConfig(epochs=7)).epochs == 7  # too few to hold any out


def test_validation_recall_is_the_mean_of_both_directions():
    heads = LitHeads(dim=8)
    features = paired_features(50)
    with torch.inference_mode():
        img = heads.embed_image(torch.from_numpy(features.image)).numpy()
        txt = heads.embed_text(torch.from_numpy(features.text)).numpy()
    want = (retrieval_recall(txt, img)[10] + retrieval_recall(img, txt)[10]) / 2
    assert abs(validation_recall(heads, features.image, features.text) - want) < 1e-6


def test_validation_recall_in_blocks_is_that_of_the_whole_matrix(monkeypatch):
    """Memory grows as n (VALIDATION_ROWS sentences against every photo at a time), and the blocks give what the whole
    similarity matrix gives, duplicates included (a twin's pair ties with a product's own, it never beats it)."""
    from core.embeddings.lit import heads as lit_heads
    heads = LitHeads(dim=8)
    features = paired_features(50)
    image, text = features.image.copy(), features.text.copy()
    image[10:20], text[10:20] = image[:10], text[:10]  # ten products twice over
    with torch.inference_mode():
        sims = heads.embed_text(torch.from_numpy(text)) @ heads.embed_image(torch.from_numpy(image)).T
    true = sims.diagonal()[:, None]
    k = 3
    want = float((((sims > true).sum(1) < k).float().mean() + ((sims.T > true).sum(1) < k).float().mean()) / 2)
    for rows in (1, 7, 49, 1024):
        monkeypatch.setattr(lit_heads, "VALIDATION_ROWS", rows)
        assert validation_recall(heads, image, text, k=k) == pytest.approx(want, abs=1e-9)


def test_choose_epochs_holds_out_among_the_rows_given(one_torch_thread):
    """The held-out evaluation trains on the rows outside split_by_group's tenth: the validation share is drawn
    from those rows' groups, not from all groups (where the same seed would pick exactly the excluded tenth)."""
    from core.embeddings.quality import split_by_group
    features = paired_features(200)
    rows = ~split_by_group(features.groups, 0.1, seed=0)
    cfg = LitConfig(epochs=2, batch_size=64, patience=1, validation=0.1, seed=0)
    assert len(choose_epochs(features, rows, cfg).scores) >= 1  # validation products were found among the rows
