"""Batch work on Ray Data: :class:`core.executor.Executor` as ``map_batches`` over a pool of actors, each of which
builds the work once (a model loaded once per actor) and runs it on batch after batch."""
from __future__ import annotations

import logging
from typing import Iterator

import numpy as np
import pandas as pd

from core.distributed import train as ray_train
from core.executor import BatchWork, TrainLoop
from core.progress import Ticks


class _Actor:
    """One worker of the pool: the work (``held``: [its object ref], sent once to the object store and fetched by
    each actor; nested in a list, so Ray passes the ref rather than the object) kept for the actor's life, batches
    of {"position", "item"} through it."""

    def __init__(self, held: list):
        import ray
        self.work = ray.get(held[0])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"position": batch["position"], **self.work(batch["item"])}


class RayData:
    """Runs batch work on the connected Ray cluster's CPUs, ``workers`` actors at most (default: as many as its CPUs
    hold at ``work.threads`` each). An actor that dies (its process killed, its node lost) is restarted and its
    batches in flight run again; batches already returned are not (Ray Data's actor pools retry by default).
    Training runs on Ray Train (:mod:`core.distributed.train`) on ``train_workers`` workers (default: one per CPU,
    at most :data:`~core.distributed.train.MAX_TRAIN_WORKERS`)."""
    name = "ray"

    def __init__(self, workers: int | None = None, train_workers: int | None = None):
        self.workers, self._train_workers = workers, train_workers

    def map(self, work: BatchWork, items: np.ndarray, batch_size: int, progress: Ticks | None = None
            ) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
        import ray
        import ray.data
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is reported as it is locally, through ``progress``
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # one INFO line per dataset otherwise
        n = len(items)
        if n == 0:
            return
        cpus = work.threads
        workers = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        batch_size = max(1, min(batch_size, -(-n // workers)))  # a small job still spreads over the workers
        workers = min(workers, -(-n // batch_size))
        frames = [pd.DataFrame({"position": np.arange(start, min(start + batch_size, n), dtype=np.int64),
                                "item": items[start:start + batch_size]}) for start in range(0, n, batch_size)]
        held = ray.put(work)  # referenced here until the last batch: a restarted actor fetches it again
        data = ray.data.from_pandas(frames).map_batches(
            _Actor, fn_constructor_kwargs={"held": [held]}, batch_size=batch_size, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=workers), num_cpus=cpus)
        done = 0
        if progress:
            progress(0, n)
        for batch in data.iter_batches(batch_size=None, batch_format="numpy"):
            positions = np.asarray(batch.pop("position"), dtype=np.int64)
            yield positions, batch
            done += len(positions)
            if progress:
                progress(done, n)

    def train_workers(self) -> int:
        return self._train_workers or ray_train.cluster_workers()

    def train(self, loop: TrainLoop, config: dict):
        return ray_train.train(loop, config, self.train_workers())
