"""Tests of text-tower fine-tuning: the CLIP loss's exact values, what is trained and what stays frozen,
that training learns the catalogue's pairs, and the saved state's round trip."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from core.cache import ArtefactCache
from core.embeddings.backbone import Backbone, encode_texts
from core.embeddings.registry import create_backbone
from core.embeddings.finetune import (FinetuneConfig, TextTowerFinetuner, clip_loss, finetuned_state, image_embeddings,
                           load_finetuned_state, trainable_parameter_names)

TINY = "random:atelier-tiny"  # 2 text blocks: train_last_layers=1 leaves block 0 frozen
N_PRODUCTS = 48
# Big steps and many epochs: random weights are far from good, unlike the pretrained ones the defaults are for.
LEARN = FinetuneConfig(epochs=100, batch_size=16, lr=3e-3, train_last_layers=1, seed=0)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The model's ops are tiny: with 2 threads on a machine busy with other work, thread hand-offs
    make them 10-50x slower, with the same results."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> tuple[np.ndarray, list[str]]:
    """48 synthetic products: (48, 64) photo embeddings from the tiny model's image tower, and sentences."""
    from core.data.synthetic import make_catalog
    catalog = make_catalog(N_PRODUCTS, seed=0, image_dir=tmp_path_factory.mktemp("finetune-48"))
    emb, ok = image_embeddings(create_backbone(TINY), catalog.products["image_path"].tolist())
    assert ok.all()
    return emb, catalog.products["sentence"].tolist()


def snapshot(backbone: Backbone) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in backbone.model.named_parameters()}


def recall_at_1(text: np.ndarray, image: np.ndarray) -> float:
    """Share of sentences whose nearest photo (cosine) is their own."""
    return float(((text @ image.T).argmax(axis=1) == np.arange(len(text))).mean())


@dataclass
class Fitted:
    backbone: Backbone
    before: dict[str, torch.Tensor]
    finetuner: TextTowerFinetuner
    recall_before: float
    progress: list[tuple[int, int]]


@pytest.fixture(scope="module")
def fitted(pairs) -> Fitted:
    """A fresh tiny backbone fine-tuned once with LEARN; tests only read it."""
    image, sentences = pairs
    backbone = create_backbone(TINY)
    before = snapshot(backbone)
    recall_before = recall_at_1(encode_texts(backbone, sentences), image)
    calls: list[tuple[int, int]] = []
    finetuner = TextTowerFinetuner(LEARN).fit(backbone, image, sentences, progress=lambda d, t: calls.append((d, t)))
    return Fitted(backbone, before, finetuner, recall_before, calls)


# ---------------------------------------------------------------- clip_loss

def test_clip_loss_is_log_b_when_the_logits_carry_no_information():
    b, d = 6, 8
    same = torch.nn.functional.normalize(torch.ones(b, d), dim=1)  # every logit equal, whatever the scale
    assert clip_loss(same, same, torch.tensor(math.log(10.0))).item() == pytest.approx(math.log(b), abs=1e-6)
    rand = torch.nn.functional.normalize(torch.randn(b, d, generator=torch.Generator().manual_seed(0)), dim=1)
    cold = torch.tensor(-30.0)  # exp(-30) * cosine ~ 0 for every pair
    assert clip_loss(rand, rand.flip(0), cold).item() == pytest.approx(math.log(b), abs=1e-6)


def test_clip_loss_exact_value_for_orthogonal_pairs():
    # image = text = identity: logits are s on the diagonal and 0 elsewhere, so each row's
    # cross-entropy is log(1 + (b - 1) exp(-s)), in both directions.
    b = 4
    eye = torch.eye(b)
    for log_scale in (0.0, math.log(100.0)):
        s = math.exp(log_scale)
        expected = math.log(1 + (b - 1) * math.exp(-s))
        assert clip_loss(eye, eye, torch.tensor(log_scale)).item() == pytest.approx(expected, rel=1e-5, abs=1e-12)
    assert clip_loss(eye, eye, torch.tensor(math.log(100.0))).item() < 1e-30
    # Every sentence paired with the wrong photo: the loss is about s = 100.
    assert clip_loss(eye, eye.roll(1, dims=0), torch.tensor(math.log(100.0))).item() == pytest.approx(100.0, rel=1e-4)


def test_clip_loss_is_symmetric_and_checks_shapes():
    g = torch.Generator().manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=1)
    t = torch.nn.functional.normalize(torch.randn(5, 3, generator=g), dim=1)
    scale = torch.tensor(2.0)
    assert clip_loss(a, t, scale).item() == pytest.approx(clip_loss(t, a, scale).item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"\(b, d\)"):
        clip_loss(a, t[:4], scale)


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("bad", [dict(epochs=0), dict(batch_size=1), dict(lr=0.0), dict(weight_decay=-1.0),
                                 dict(train_last_layers=-2)])
def test_config_rejects_impossible_values(bad):
    with pytest.raises(ValueError):
        FinetuneConfig(**bad)


def test_trainable_parameter_names_follow_train_last_layers():
    model = create_backbone(TINY).model
    text_tower = {n for n, _ in model.named_parameters() if not n.startswith("visual.")}
    always = {"ln_final.weight", "ln_final.bias", "text_projection", "logit_scale"}
    assert set(trainable_parameter_names(model, 0)) == always
    last = set(trainable_parameter_names(model, 1))
    assert last - always == {n for n in text_tower if n.startswith("transformer.resblocks.1.")}
    assert set(trainable_parameter_names(model, -1)) == text_tower
    assert "token_embedding.weight" in text_tower and "positional_embedding" in text_tower
    with pytest.raises(ValueError, match="has 2 blocks"):
        trainable_parameter_names(model, 3)


# ---------------------------------------------------------------- fitting

def test_fit_leaves_the_image_tower_bit_identical(fitted):
    visual = [n for n in fitted.before if n.startswith("visual.")]
    assert len(visual) > 10
    params = dict(fitted.backbone.model.named_parameters())
    for n in visual:
        assert torch.equal(params[n], fitted.before[n]), n


def test_fit_trains_the_last_layers_only(fitted):
    params = dict(fitted.backbone.model.named_parameters())
    trained = set(fitted.finetuner.trained_parameters_)
    assert trained == set(trainable_parameter_names(fitted.backbone.model, 1))
    for n, p in params.items():
        if n in trained:
            assert not torch.equal(p, fitted.before[n]), f"{n} was to be trained but did not change"
        else:
            assert torch.equal(p, fitted.before[n]), f"{n} was to stay frozen but changed"
    assert any(n.startswith("transformer.resblocks.0.") for n in params)  # the frozen early block exists


def test_training_loss_decreases(fitted):
    history = fitted.finetuner.history_
    assert len(history) == LEARN.epochs
    assert all(np.isfinite(history))
    assert history[-1] < 0.8 * history[0]


def test_fine_tuning_improves_text_to_image_recall(fitted, pairs):
    image, sentences = pairs
    recall_after = recall_at_1(encode_texts(fitted.backbone, sentences), image)
    assert fitted.recall_before <= 0.1  # random text tower: about 1 in 48 by chance
    assert recall_after >= 0.4
    assert recall_after >= fitted.recall_before + 0.3


def test_fit_leaves_the_model_in_eval_mode_without_grads(fitted):
    model = fitted.backbone.model
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert 0.0 <= model.logit_scale.item() <= math.log(100) + 1e-6


def test_progress_counts_every_batch(fitted):
    steps = LEARN.epochs * math.ceil(N_PRODUCTS / LEARN.batch_size)
    assert fitted.progress == [(i, steps) for i in range(1, steps + 1)]


def test_fit_restores_global_grad_mode_and_the_model_after_an_error(pairs):
    image, sentences = pairs
    backbone = create_backbone(TINY)
    grad_mode = torch.is_grad_enabled()
    assert not any(p.requires_grad for p in backbone.model.parameters())  # frozen until fine-tuned

    def fail(done: int, total: int) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        TextTowerFinetuner(FinetuneConfig(epochs=1, batch_size=16)).fit(backbone, image, sentences, progress=fail)
    assert torch.is_grad_enabled() == grad_mode  # the process's grad mode is left as it was
    assert not backbone.model.training
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_fit_rejects_mismatched_inputs(pairs):
    image, sentences = pairs
    backbone = create_backbone(TINY)
    with pytest.raises(ValueError, match="n sentences"):
        TextTowerFinetuner().fit(backbone, image, sentences[:-1])
    with pytest.raises(ValueError, match="2 blocks"):
        TextTowerFinetuner(FinetuneConfig(train_last_layers=5)).fit(backbone, image, sentences)


def test_same_seed_same_training_other_seed_other_batches(pairs):
    image, sentences = pairs
    cfg = FinetuneConfig(epochs=2, batch_size=16, lr=3e-3, train_last_layers=1, seed=3)
    runs = [TextTowerFinetuner(c).fit(create_backbone(TINY), image, sentences).history_
            for c in (cfg, cfg, FinetuneConfig(**{**cfg.__dict__, "seed": 4}))]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_whole_text_tower_is_trained_with_minus_one(pairs):
    image, sentences = pairs
    backbone = create_backbone(TINY)
    before = snapshot(backbone)
    ft = TextTowerFinetuner(FinetuneConfig(epochs=2, batch_size=16, lr=1e-3, train_last_layers=-1)).fit(
        backbone, image, sentences)
    params = dict(backbone.model.named_parameters())
    text_tower = {n for n in params if not n.startswith("visual.")}
    assert set(ft.trained_parameters_) == text_tower
    for n, p in params.items():
        assert torch.equal(p, before[n]) == n.startswith("visual."), n
    # Only the token rows the sentences use move (no weight decay on embeddings).
    used = np.unique(backbone.tokenizer(sentences).numpy())
    moved = (params["token_embedding.weight"] != before["token_embedding.weight"]).any(dim=1).numpy()
    assert set(np.flatnonzero(moved)) <= set(used)


# ---------------------------------------------------------------- saved state

def test_state_round_trips_through_the_cache_onto_a_fresh_backbone(fitted, pairs):
    _, sentences = pairs
    state = finetuned_state(fitted.backbone)
    assert set(state) == set(fitted.finetuner.trained_parameters_)
    assert all(isinstance(a, np.ndarray) for a in state.values())

    cache = ArtefactCache()  # $ATELIER_CACHE of this test
    cache.save("finetune", "k", state)
    stored = cache.load("finetune", "k")

    fresh = create_backbone(TINY)
    want = encode_texts(fitted.backbone, sentences)
    assert not np.allclose(encode_texts(fresh, sentences), want, atol=1e-3)
    load_finetuned_state(fresh, stored)
    np.testing.assert_allclose(encode_texts(fresh, sentences), want, atol=1e-5)
    assert set(finetuned_state(fresh)) == set(state)


def test_state_errors_are_clear(fitted):
    fresh = create_backbone(TINY)
    with pytest.raises(ValueError, match="not been fine-tuned"):
        finetuned_state(fresh)
    state = finetuned_state(fitted.backbone)
    with pytest.raises(ValueError, match="no parameters named"):
        load_finetuned_state(fresh, {**state, "not.a.parameter": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="shapes differ"):
        load_finetuned_state(fresh, {**state, "text_projection": np.zeros((3, 3), np.float32)})


def test_image_embeddings_flags_missing_and_unreadable_photos(pairs, tmp_path):
    image, _ = pairs
    from core.data.synthetic import make_catalog
    catalog = make_catalog(3, seed=0, image_dir=tmp_path / "photos")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    paths = catalog.products["image_path"].tolist() + [str(corrupt), ""]
    emb, ok = image_embeddings(create_backbone(TINY), paths, batch_size=2)
    assert emb.shape == (5, image.shape[1]) and emb.dtype == np.float32
    assert ok.tolist() == [True, True, True, False, False]
    np.testing.assert_allclose(np.linalg.norm(emb[ok], axis=1), 1.0, atol=1e-5)
    assert not emb[~ok].any()


def test_fine_tuning_changes_the_cache_key_of_text_embeddings(tmp_path):
    """Embeddings cached before fine-tuning must never be served after it."""
    from core.embeddings.registry import create_backbone
    backbone = create_backbone("random:atelier-tiny")
    before = backbone.cache_config()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(8, backbone.dim)).astype(np.float32)
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    TextTowerFinetuner(FinetuneConfig(epochs=1, batch_size=4, lr=1e-2)).fit(
        backbone, image, [f"product {i}" for i in range(8)])
    assert backbone.cache_config() != before
    assert "finetuned" in backbone.cache_config()
