"""Where batch work runs: in this process, unless an upper layer installs a cluster's executor (``--ray``).

The stages that split into independent batches (featurising photos and sentences, the neighbour table's queries,
scoring customers) ask :func:`current` and, when it names an executor, hand it their batches instead of running
them in a loop of their own. The work they hand over is a picklable callable: it carries what it needs (a model's
path, a broadcast index) rather than reaching for this process's state.
"""
from __future__ import annotations

from typing import Callable, Iterator, Protocol

import numpy as np

from core.progress import Ticks

BatchWork = Callable[[np.ndarray], dict[str, np.ndarray]]  # items (b,) -> arrays of b rows each


class Executor(Protocol):
    """Runs ``work`` over batches of ``items`` somewhere else (a cluster's workers)."""

    name: str

    def map(self, work: BatchWork, items: np.ndarray, batch_size: int, progress: Ticks | None = None,
            cpus: float = 1.0) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """``work(items[positions])`` for consecutive batches of ``batch_size`` items, yielding each batch's
        (positions (b,) int64, outputs) as it finishes, in any order; ``progress(done, len(items))`` after each.
        ``work`` is built once per worker and kept for its batches (a model loaded once); ``cpus`` per worker."""
        ...


_current: Executor | None = None


def current() -> Executor | None:
    """The installed executor, or None: run in this process."""
    return _current


def use(executor: Executor | None) -> Executor | None:
    """Install ``executor`` (None: back to in-process) and return the one it replaces."""
    global _current
    previous, _current = _current, executor
    return previous
