"""open_clip backbones: pretrained weights from the local caches, a download when the hub is reachable,
a local checkpoint file, or seeded random weights (for tests and plumbing)."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path
from typing import Iterator

import torch

from core.cache import file_digest
from core.embeddings.backbone import Backbone, PadThen, WeightsUnavailable

DEFAULT_BACKBONE = "openclip:ViT-B-32/laion2b_s34b_b79k"
OFFLINE_ENV = "ATELIER_OFFLINE"
HUB_HOST = "huggingface.co"
MODEL_CONFIGS = Path(__file__).parent / "model_configs"  # atelier-tiny: a small random model for tests


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Make huggingface_hub answer from its local cache only, failing fast instead of retrying."""
    from huggingface_hub import constants
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def network_reason() -> str | None:
    """Why downloads are skipped (offline by setting or no route to the hub), or None to try them."""
    for env in (OFFLINE_ENV, "HF_HUB_OFFLINE"):
        if os.environ.get(env, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{env} is set"
    result: list = []

    def lookup() -> None:
        try:
            result.append(socket.getaddrinfo(HUB_HOST, 443))
        except OSError as e:
            result.append(e)

    t = threading.Thread(target=lookup, daemon=True)
    t.start()
    t.join(3.0)
    if not result:
        return f"no answer from DNS for {HUB_HOST} within 3 s"
    if isinstance(result[0], OSError):
        return f"cannot resolve {HUB_HOST} ({result[0]})"
    return None


def _create_openclip(model_name: str, pretrained: str | None, seed: int = 0):
    import open_clip
    open_clip.add_model_config(MODEL_CONFIGS)
    torch.manual_seed(seed)  # random towers are reproducible; pretrained ones overwrite them
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
    tokenizer = open_clip.get_tokenizer(model_name)
    model.eval().requires_grad_(False)  # inference by default; core.embeddings.finetune unfreezes what it trains
    return model, PadThen(preprocess), tokenizer


def openclip_backbone(spec: str) -> Backbone:
    if spec.startswith(("hf-hub:", "local-dir:")):
        model_name, pretrained = spec, None
    else:
        model_name, _, pretrained = spec.partition("/")
        if not pretrained:
            raise WeightsUnavailable(f"openclip:{spec}: no weights named. Use openclip:<model>/<pretrained tag or "
                                     f"checkpoint path>, e.g. {DEFAULT_BACKBONE}, or random:{spec} for random weights.")
    name = f"openclip:{spec}"
    if pretrained and (os.sep in pretrained or pretrained.endswith((".pt", ".bin", ".pth", ".safetensors"))):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise WeightsUnavailable(f"{name}: checkpoint file {path} not found.")
        try:
            return Backbone(name, *_create_openclip(model_name, str(path)), "pretrained", [f"weights from {path}"],
                            checkpoint_digest=file_digest(path))
        except Exception as e:  # open_clip raises many kinds on a bad checkpoint
            raise WeightsUnavailable(f"{name}: could not load checkpoint {path}: {e}") from e
    tried = []
    try:
        with _hub_offline():
            return Backbone(name, *_create_openclip(model_name, pretrained), "pretrained",
                            ["weights from the local cache"])
    except Exception as e:
        tried.append(f"the local cache (~/.cache/huggingface, ~/.cache/clip): {str(e).splitlines()[0][:200]}")
    reason = network_reason()
    if reason is None:
        try:
            return Backbone(name, *_create_openclip(model_name, pretrained), "pretrained", ["weights downloaded"])
        except Exception as e:
            tried.append(f"a download: {str(e).splitlines()[0][:200]}")
        why = "the download failed"
    else:
        tried.append(f"no download: {reason}")
        why = reason if reason.endswith(" is set") else "no internet"  # downloads turned off, or no route
    raise WeightsUnavailable(
        f"{name}: pretrained weights could not be loaded. Tried " + "; ".join(tried) + ". "
        "Fix: run once with internet access so the weights are cached, or pass a local checkpoint "
        f"(openclip:{model_name}/path/to/open_clip_model.safetensors); random:{model_name} gives random weights "
        "for testing only.", why)


def random_backbone(spec: str) -> Backbone:
    model_name, _, seed = spec.partition("/")
    return Backbone(f"random:{spec}", *_create_openclip(model_name, None, int(seed or 0)), "random",
                    ["random weights, named as such"])
