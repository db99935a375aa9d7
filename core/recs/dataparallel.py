"""Data-parallel training, inside a training loop: the same code in this process (rank 0 of 1, where each of these
does nothing) and on a cluster's workers joined in a ``torch.distributed`` process group
(:meth:`core.executor.Executor.train`)."""
from __future__ import annotations

from typing import Callable


def worker() -> tuple[int, int]:
    """(rank, world size) of this process in a data-parallel fit (:meth:`core.executor.Executor.train`); (0, 1)
    outside one."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def data_parallel(module, loss: Callable, find_unused_parameters: bool = False) -> Callable:
    """``loss`` (args -> scalar tensor, computed with ``module``'s parameters) as one step of data-parallel training:
    in a process group, through ``DistributedDataParallel``, which broadcasts rank 0's parameters now and averages
    every rank's gradients at each backward; outside one, ``loss`` itself. ``find_unused_parameters``: some steps
    leave parameters out of the loss (DDP waits for their gradients otherwise)."""
    if worker()[1] == 1:
        return loss
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):
            return loss(*args, **kwargs)

    return DistributedDataParallel(Step(), find_unused_parameters=find_unused_parameters)


def rank_zero_says(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (``flag`` itself outside a process group): a decision such as early stopping
    that every rank must take at the same step, or the next gradient average waits for a rank that left."""
    if worker()[1] == 1:
        return flag
    import torch
    import torch.distributed as dist
    said = torch.tensor([int(flag)])
    dist.broadcast(said, src=0)
    return bool(said.item())


def mean_over_workers(value: float) -> float:
    """The mean of ``value`` over the ranks (``value`` outside a process group): an epoch's loss over every shard."""
    if worker()[1] == 1:
        return value
    import torch
    import torch.distributed as dist
    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total.item()) / worker()[1]
