"""open_clip backbones: random weights, a local checkpoint, and failing fast offline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from core.embeddings.backbone import WeightsUnavailable
from core.embeddings.openclip import DEFAULT_BACKBONE
from core.embeddings.registry import create_backbone
from tests.embeddings.test_backbone import TINY, noise_image


def test_random_backbone_is_named_as_such(tiny_backbone):
    assert tiny_backbone.name == TINY
    assert tiny_backbone.weights == "random"
    assert "RANDOM" in tiny_backbone.warning
    assert tiny_backbone.dim == 64
    assert tiny_backbone.cache_config()["backbone"] == TINY


def test_default_backbone_offline_fails_fast_with_a_fix(no_cached_weights):
    with pytest.raises(WeightsUnavailable) as e:
        create_backbone(DEFAULT_BACKBONE)
    message = str(e.value)
    assert DEFAULT_BACKBONE in message
    assert "local cache" in message  # what was tried
    assert "ATELIER_OFFLINE" in message  # why no download
    assert "Fix:" in message and "checkpoint" in message
    assert no_cached_weights == []  # offline means no DNS look-up either


def _embeddings(backbone, image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return backbone.encode_image(image), backbone.encode_text(["a red striped dress", "black jacket"])


@pytest.fixture(scope="module")
def probe_image(tiny_backbone) -> torch.Tensor:
    return torch.stack([tiny_backbone.preprocess(noise_image(40, 60, seed=s)) for s in (1, 2)])


def test_local_checkpoint_gives_the_saved_model(tiny_backbone, probe_image, tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(tiny_backbone.model.state_dict(), path)
    loaded = create_backbone(f"openclip:atelier-tiny/{path}")
    assert loaded.weights == "pretrained" and loaded.warning is None
    assert any(str(path) in n for n in loaded.notes)
    other = create_backbone("random:atelier-tiny/1")  # another seed, other weights
    for got, saved, different in zip(_embeddings(loaded, probe_image), _embeddings(tiny_backbone, probe_image),
                                     _embeddings(other, probe_image)):
        np.testing.assert_allclose(got, saved, atol=1e-5)
        assert np.abs(got - different).max() > 1e-2


def test_local_checkpoint_weights_replace_the_initial_ones(tiny_backbone, probe_image, tmp_path):
    """Saved from seed 1 and loaded over a seed-0 start: the result must be the seed-1 model."""
    seed1 = create_backbone("random:atelier-tiny/1")
    path = tmp_path / "seed1.pt"
    torch.save(seed1.model.state_dict(), path)
    loaded = create_backbone(f"openclip:atelier-tiny/{path}")
    for got, saved, start in zip(_embeddings(loaded, probe_image), _embeddings(seed1, probe_image),
                                 _embeddings(tiny_backbone, probe_image)):
        np.testing.assert_allclose(got, saved, atol=1e-5)
        assert np.abs(got - start).max() > 1e-2


def test_missing_or_broken_checkpoint_raises(tmp_path):
    missing = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(WeightsUnavailable, match="not found"):
        create_backbone(f"openclip:atelier-tiny/{missing}")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailable, match="broken.pt"):
        create_backbone(f"openclip:atelier-tiny/{broken}")


def test_openclip_without_weights_named_raises():
    with pytest.raises(WeightsUnavailable, match="no weights named"):
        create_backbone("openclip:atelier-tiny")
