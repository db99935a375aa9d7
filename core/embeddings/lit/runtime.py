"""Running offline-lit's towers: ONNX export, ONNX Runtime sessions, the PyTorch fallback, and the runner holders."""
from __future__ import annotations

import contextlib
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch

from core.cache import ArtefactCache, digest, file_digest, write_atomic
from core.embeddings.lit.descriptor import feature_names
from core.embeddings.lit.towers import IMAGE_TOWER_CFG, TEXT_FEATURES, TEXT_INPUTS, TEXT_TOWER_CFG, TEXTURE_BLOCKS, \
    FeatureTower, ImageTower, SentenceEncoder, garment_weights, image_tower, masked_moments
from core.embeddings.lit.views import CANVAS_MULTIPLE, GARMENT_THRESHOLD, IMAGE_SIZE

RUNTIME_ENV = "ATELIER_RUNTIME"  # "torch" or "onnxruntime" forces that runtime; unset: ONNX Runtime, else torch
ONNX_OPSET = 18
# Sentences per pass in bulk; each pass is padded to its own longest sentence. 4,096 H&M sentences (27 tokens on
# average), 2 cores, two rounds: 274-275 sentences/s in batches of 32 against 254-262 (64) and 233-234 (128);
# two one-thread sessions on half batches each gave no more (278-282).
TEXT_BATCH = 32
log = logging.getLogger(__name__)


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
    (batch, 3, height, width) float32, sides multiples of 32 (see LitImagePreprocess), outputs
    :func:`feature_names`, any batch size and sides. Returns the exporter used."""
    names = feature_names(blocks)
    # Not a batch of 1, nor equal sides: torch.export would fix an axis of size 1, or tie the two sides.
    x = torch.zeros(2, 3, IMAGE_SIZE, IMAGE_SIZE - CANVAS_MULTIPLE * 2)
    return export_onnx(FeatureTower(tower, blocks).eval(), (x,), path, ["x"], names,
                       {"x": {0: "batch", 2: "height", 3: "width"}, **{n: {0: "batch"} for n in names}},
                       {"blocks": list(blocks), "config": IMAGE_TOWER_CFG})


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

    A batch of several photos is cut into ``threads`` parts run at once, each on one thread (a second session
    of the same model, of one intra-op thread): EfficientNet's small depthwise convolutions split poorly across
    threads. On 2 shared cores, 512 H&M photos through :func:`~core.embeddings.lit.features.photo_features`:
    19-28 photos/s this way against 13-18 with one two-thread call per batch (three rounds, same conditions).
    One photo (a query) runs on every thread.

    call: (b, 3, H, W) float32 (numpy or torch) -> tuple of numpy float32 arrays, as FeatureTower's
    outputs: pooled (b, 1280), then per block mean (b, c) and gram (b, c (c+1)/2).
    """
    runtime = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None):
        self.session = onnx_session(model, threads)
        self.parts = threads or _cores()
        self._single = onnx_session(model, 1) if self.parts > 1 else self.session
        self._pool = ThreadPoolExecutor(self.parts, thread_name_prefix="onnx-part") if self.parts > 1 else None
        self.input = self.session.get_inputs()[0].name
        self.names = [o.name for o in self.session.get_outputs()]
        self.widths = [int(o.shape[1]) for o in self.session.get_outputs()]
        self.reason = ""

    def _run(self, session, x: np.ndarray) -> list[np.ndarray]:
        return session.run(self.names, {self.input: x})

    def __call__(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, ...]:
        x = np.ascontiguousarray(x.numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
        if self._pool is None or len(x) < 2:
            return tuple(self._run(self.session, x))
        parts = [p for p in np.array_split(x, min(self.parts, len(x))) if len(p)]
        outs = list(self._pool.map(lambda p: self._run(self._single, p), parts))
        return tuple(np.concatenate(o) for o in zip(*outs))


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


def load_onnx_tower(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS,
                    threads: int | None = None) -> OnnxFeatureTower:
    """The ONNX Runtime tower from the cache's exported file (see :func:`load_or_export`), on ``threads`` threads
    (default: one per core)."""
    def load(path: Path) -> OnnxFeatureTower:
        tower = OnnxFeatureTower(path, threads)
        if tower.names != feature_names(blocks):
            raise ValueError(f"outputs {tower.names}, expected {feature_names(blocks)}")
        return tower

    return load_or_export(cache, onnx_path(cache, blocks),
                          lambda path: export_feature_tower(image_tower(), blocks, path), load)


def export_onnx_tower(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS) -> Path:
    """The tower's ONNX file in the cache, exported now when missing or corrupt (see :func:`load_or_export`), no
    session loaded: for processes elsewhere (a cluster's workers) to load."""
    return load_or_export(cache, onnx_path(cache, blocks),
                          lambda path: export_feature_tower(image_tower(), blocks, path), lambda path: path)


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


def create_feature_tower(cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS,
                         threads: int | None = None) -> FeatureRunner:
    """ONNX Runtime's tower if it can be had (see :func:`load_onnx_tower`; ``threads``: its threads, default one
    per core), else PyTorch's with a warning; ``ATELIER_RUNTIME`` forces one (see :func:`onnx_or_torch`). The
    result's ``runtime`` says which: "onnxruntime" or "torch"."""
    return onnx_or_torch("featurising photos", "about 3x slower", lambda: load_onnx_tower(cache, blocks, threads),
                         lambda reason: TorchFeatureTower(image_tower(), blocks, reason=reason))


class FeatureRunners:
    """Holds the loaded photo feature runner (an ONNX Runtime session or the PyTorch tower), one model at a time.

    :meth:`get` makes it on first use (:func:`create_feature_tower`, exporting into that cache when it lacks the
    file) and keeps it for the model and the runtime choice: later calls, with this cache or another, share the
    loaded session. Whoever holds this object holds the model in memory: offline-lit's model, a build.
    ``runner``: one already loaded (e.g. a test's), kept for the default blocks and the current runtime choice.
    """

    def __init__(self, runner: FeatureRunner | None = None):
        self._held: dict[tuple, FeatureRunner] = {}
        self._lock = threading.Lock()  # queries arrive on several threads: one export, one session
        if runner is not None:
            self._held[(onnx_key(TEXTURE_BLOCKS), runtime_choice())] = runner

    @property
    def loaded(self) -> bool:
        """Whether a runner is held (a model in memory)."""
        return bool(self._held)

    def get(self, cache: ArtefactCache, blocks: Sequence[int] = TEXTURE_BLOCKS) -> FeatureRunner:
        key = (onnx_key(blocks), runtime_choice())
        with self._lock:
            if key not in self._held:
                self._held.clear()  # one model in memory at a time
                self._held[key] = create_feature_tower(cache, blocks)
            return self._held[key]


# ---------------------------------------------------------------- the text tower's runners

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


def by_length(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Positions of texts of these token ``lengths`` in batches of ``batch_size``, longest first, so each batch,
    padded to its own longest text, pads little. On the H&M sentences, sorting by tokens rather than characters
    padded 1.8% instead of 27% in batches of 128."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class OnnxTextTower:
    """An exported :class:`SentenceEncoder` run by ONNX Runtime on the CPU, one thread per core, on the tokens of
    the model's own tokenizer (truncated to ``max_length`` as SentenceTransformer does, padded per batch).

    call: n strings -> (n, 384) float32, rows L2-normalised, in the order given; ``progress(done, n)`` after
    each batch
    """
    runtime = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, tokenizer: Callable, max_length: int,
                 threads: int | None = None):
        self.session = onnx_session(model, threads)
        self.tokenizer, self.max_length = tokenizer, max_length
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.widths = [o.shape[1] for o in self.session.get_outputs()]
        self.reason = ""

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), TEXT_FEATURES), dtype=np.float32)
        if not texts:
            return out
        # Tokenised once, unpadded; each batch is padded here as the tokenizer pads (right, pad id, mask 0).
        tokens = self.tokenizer(texts, truncation="longest_first", max_length=self.max_length,
                                return_attention_mask=True, return_token_type_ids=True)
        pads = {"input_ids": self.tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
        lengths = [len(ids) for ids in tokens["input_ids"]]
        done = 0
        for rows in by_length(lengths, batch_size):
            width = lengths[rows[0]]
            feed = {}
            for name in self.inputs:
                batch = np.full((len(rows), width), pads[name], dtype=np.int64)
                for j, i in enumerate(rows):
                    batch[j, :lengths[i]] = tokens[name][i]
                feed[name] = batch
            out[rows] = self.session.run(None, feed)[0]
            done += len(rows)
            if progress:
                progress(done, len(texts))
        return out


class TorchTextTower:
    """``SentenceTransformer.encode`` in PyTorch, with :class:`OnnxTextTower`'s call shape. ``reason``: why not ONNX."""
    runtime = "torch"

    def __init__(self, model, reason: str = ""):
        self.model, self.reason = model, reason

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, TEXT_FEATURES), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                show_progress_bar=False).astype(np.float32)
        if progress:
            progress(len(texts), len(texts))
        return out


TextRunner = OnnxTextTower | TorchTextTower


def load_onnx_text_tower(cache: ArtefactCache, tower) -> OnnxTextTower:
    """The ONNX Runtime encoder of ``tower``'s model (a :class:`core.embeddings.lit.text.TextTower`) from the
    cache's exported file (see :func:`load_or_export`)."""
    def load(path: Path) -> OnnxTextTower:
        runner = OnnxTextTower(path, tower.model.tokenizer, tower.model.max_seq_length, tower.threads)
        if runner.inputs != list(TEXT_INPUTS) or runner.widths != [TEXT_FEATURES]:
            raise ValueError(f"inputs {runner.inputs} and output widths {runner.widths}, "
                             f"expected {list(TEXT_INPUTS)} and [{TEXT_FEATURES}]")
        return runner

    return load_or_export(cache, text_onnx_path(cache, tower.model_dir),
                          lambda path: export_sentence_encoder(tower.model, path), load)


def export_onnx_text_tower(cache: ArtefactCache, tower) -> Path:
    """``tower``'s encoder as an ONNX file in the cache, exported now when missing or corrupt (the model loaded only
    then), no session loaded: for processes elsewhere (a cluster's workers) to load."""
    return load_or_export(cache, text_onnx_path(cache, tower.model_dir),
                          lambda path: export_sentence_encoder(tower.model, path), lambda path: path)


def create_text_runner(cache: ArtefactCache, tower) -> TextRunner:
    """ONNX Runtime's encoder of ``tower``'s model if it can be had (see :func:`load_onnx_text_tower`), else
    PyTorch's with a warning; ``ATELIER_RUNTIME`` forces one (see :func:`onnx_or_torch`)."""
    return onnx_or_torch("encoding texts", "3-4x slower per query", lambda: load_onnx_text_tower(cache, tower),
                         lambda reason: TorchTextTower(tower.model, reason))
