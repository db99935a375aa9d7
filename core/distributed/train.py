"""Data-parallel training on Ray Train: :meth:`core.executor.Executor.train` as a ``TorchTrainer`` (DDP over gloo)."""
from __future__ import annotations

import shutil
import uuid
from typing import Any

from core.config import cache_root
from core.executor import TrainLoop

RUNS_DIR = "ray-train"  # under the artefact cache, which every node sees (connect checks it)


# Workers a fit takes by default, at most. Each takes its shard of every batch and a row's in-batch negatives are its
# shard's products: at two-tower's batch of 512, 8 workers leave 64 each. Two workers were measured (tests/distributed
# /test_train.py); more, on a cluster that has them, is RayData(train_workers=N).
MAX_TRAIN_WORKERS = 8


def cluster_workers(cpus_per_worker: float = 1.0) -> int:
    """Training workers the connected cluster holds at ``cpus_per_worker`` each, at least 1 and at most
    MAX_TRAIN_WORKERS."""
    import ray
    return max(1, min(MAX_TRAIN_WORKERS, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker)))


def _per_worker(config: dict) -> Any:
    """A Ray Train worker: the loop on this worker's process group, its result kept on rank 0 only (Ray Train
    returns rank 0's; the others' would only be pickled for nothing)."""
    import torch.distributed as dist
    out = config["loop"](config["config"])
    return out if dist.get_rank() == 0 else None


def train(loop: TrainLoop, config: dict, workers: int) -> Any:
    """``loop(config)`` on ``workers`` Ray Train workers of one CPU each, joined in a gloo process group
    (``torch.distributed``), and what rank 0's loop returns. The run's folder (Ray Train's bookkeeping: no
    checkpoints, the result comes back as rank 0's return value) lies under the artefact cache while it runs and is
    removed after."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    storage = cache_root().absolute() / RUNS_DIR
    name = uuid.uuid4().hex
    trainer = TorchTrainer(
        _per_worker, train_loop_config={"loop": loop, "config": config},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=name, storage_path=str(storage)))
    try:
        return trainer.fit().return_value
    finally:
        shutil.rmtree(storage / name, ignore_errors=True)
