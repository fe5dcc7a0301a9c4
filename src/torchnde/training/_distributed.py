"""Data-parallel training over processes (``torch.distributed``).

Every process draws the same batch of window indices (the samplers share a seed), takes its own
contiguous shard of it, and evaluates the loss on that shard. The model is wrapped in
``DistributedDataParallel`` through a small module whose ``forward(shard)`` *is* the loss, so DDP
sees one forward per backward even though the loss holds whole ODE solves, and averages the
gradients during ``backward``. Each shard's loss is weighted by ``shard_size * world_size /
batch_size``, so the averaged gradient is the gradient of the mean loss over the whole batch,
exactly as in one process with the combined batch, also when the shards differ in size.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Replica", "is_main_process", "setup_replica"]

#: environment variables ``init_process_group(init_method="env://")`` reads
_ENV_KEYS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def is_main_process() -> bool:
    """True unless this is a ``torch.distributed`` process of rank other than 0 (the one that
    should write files and print)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class _LossModule(nn.Module):
    """``forward(shard, weight) = weight * loss_fn(model, shard)``: the loss as a module, for
    DDP."""

    def __init__(
        self, model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    ):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, shard: torch.Tensor, weight: float) -> torch.Tensor:
        return self.loss_fn(self.model, shard) * weight


class Replica:
    """This process's part in training: all of it (``world_size=1``), or one rank of a
    ``torch.distributed`` group.

    Args:
        rank: this process's rank.
        world_size: how many processes train together.
        device: where the model lives (collectives run on it).
        distributed: whether a process group is in use (wrap the model in DDP, reduce losses).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, device=None, distributed: bool = False):
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.distributed = distributed

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and shows progress."""
        return self.rank == 0

    def shard(self, batch: torch.Tensor | None) -> tuple[torch.Tensor | None, float]:
        """This process's part of ``batch`` and the weight of its loss."""
        if not self.distributed or batch is None:
            return batch, 1.0
        if len(batch) < self.world_size:
            # too few windows to share (e.g. one whole trajectory): every process evaluates the
            # whole batch; averaging identical gradients gives the single-process step
            return batch, 1.0
        shard = torch.tensor_split(batch, self.world_size)[self.rank]
        return shard, len(shard) * self.world_size / len(batch)

    def evaluator(
        self, model: nn.Module, loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
    ) -> Callable[[torch.Tensor | None, float], torch.Tensor]:
        """``evaluate(shard, weight)``: this process's weighted loss, whose backward leaves the
        gradient of the global mean loss in every process."""
        if not self.distributed:
            return lambda shard, weight: loss_fn(model, shard)
        wrapped = nn.parallel.DistributedDataParallel(_LossModule(model, loss_fn))
        return lambda shard, weight: wrapped(shard, weight)

    def global_loss(self, local: torch.Tensor) -> torch.Tensor:
        """The mean loss over the whole batch, from this process's weighted shard loss."""
        if not self.distributed:
            return local
        total = local.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true in any process."""
        if not self.distributed:
            return flag
        value = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def broadcast(self, value: float) -> float:
        """Rank 0's ``value`` in every process."""
        if not self.distributed:
            return value
        tensor = torch.tensor(value, dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def barrier(self) -> None:
        """Wait for all processes."""
        if self.distributed:
            dist.barrier()


def setup_replica(distributed: bool | None, device: torch.device) -> Replica:
    """This process's :class:`Replica`, joining (or starting) the process group if needed.

    Args:
        distributed: True: train data-parallel; False: alone; None: data-parallel when
            ``WORLD_SIZE`` > 1 in the environment (as under ``torchrun``) or a process group of
            more than one process is already initialised.
        device: the model's device: NCCL for CUDA, gloo otherwise.
    """
    if distributed is None:
        joined = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        distributed = joined or int(os.environ.get("WORLD_SIZE", "1")) > 1
    if not distributed:
        return Replica(device=device)
    if not dist.is_available():
        raise RuntimeError("distributed training needs torch.distributed, which this torch lacks")
    if not dist.is_initialized():
        _init_process_group(device)
    return Replica(dist.get_rank(), dist.get_world_size(), device, distributed=True)


def _init_process_group(device: torch.device) -> None:
    missing = [key for key in _ENV_KEYS if key not in os.environ]
    if missing:
        raise RuntimeError(
            f"distributed training needs the environment variables {', '.join(missing)}; launch "
            "with `torchrun --nproc-per-node N script.py` (or initialise "
            "torch.distributed yourself before fit)"
        )
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
