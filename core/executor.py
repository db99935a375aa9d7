"""Where batch work and training run: in this process, unless an upper layer installs a cluster's executor (--ray).

The stages that split into independent batches (featurising photos and sentences, the neighbour table's queries,
scoring customers) ask :func:`current` and, when it names an executor, hand it their batches instead of running
them in a loop of their own. The work they hand over is a picklable callable: it carries what it needs (a model's
path, a broadcast index) rather than reaching for this process's state.

The learned recommenders hand over their training loop instead (:meth:`Executor.train`): it runs on several workers
at once, joined in one ``torch.distributed`` process group, each taking its shard of every batch. The loop itself
needs nothing from the cluster (:mod:`core.recs.dataparallel` reads the process group when there is one and does
nothing in this process), so one loop serves both.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

import numpy as np

from core.progress import Ticks

class BatchWork(Protocol):
    """One batch stage's work, picklable: what it needs (a model's path, an index's bytes) travels with it."""

    threads: int  # the CPUs (and threads) a worker running it takes

    def __call__(self, items: np.ndarray) -> dict[str, np.ndarray]:
        """items (b,) -> arrays of b rows each."""
        ...


TrainLoop = Callable[[dict], Any]  # config -> what this worker's training gives (rank 0's is kept); picklable


class Executor(Protocol):
    """Runs ``work`` over batches of ``items`` somewhere else (a cluster's workers)."""

    name: str

    def map(self, work: BatchWork, items: np.ndarray, batch_size: int, progress: Ticks | None = None
            ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        """``work(items[positions])`` for batches of at most ``batch_size`` items, yielding each batch's (positions
        (b,) int64, outputs) as it finishes, in any order; ``progress(done, len(items))`` after each. ``work`` is
        sent once to each worker and kept for its batches (a model loaded once), each worker ``work.threads``
        CPUs."""
        ...

    def train_workers(self) -> int:
        """How many workers :meth:`train` runs a loop on."""
        ...

    def train(self, loop: TrainLoop, config: dict) -> Any:
        """``loop(config)`` on :meth:`train_workers` workers at once (one CPU each), joined in a ``torch.distributed``
        process group (gloo), and what rank 0's returns. Each worker seeds itself from ``config`` as a local fit
        does, so all start from the same weights. A fit on several workers is another trajectory than the local
        one (a worker's shard of a batch gives its in-batch negatives), within the tolerance its tests state, as a
        fit on another machine is not bit-identical either: it is cached under the same key as the local fit, so
        the service, the app and a later run load the model the cluster trained rather than training again."""
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
