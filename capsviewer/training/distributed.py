"""Data-parallel training over several processes (``torchrun``), one model replica each.

``torchrun --nproc_per_node=N -m capsviewer train …`` starts N processes and describes the job
in environment variables (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); each joins
the process group (NCCL on GPUs, gloo on CPUs) and drives GPU LOCAL_RANK. Every process draws
the same seeded order and shifts, takes its share of each global batch
(:func:`capsviewer.data.batches.shard`) and DistributedDataParallel averages the gradients,
so a step is the step a single process would take on the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Processes:
    """Where this process stands in the job; ``world_size`` 1 is plain single-process work."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints and reports."""
        return self.rank == 0


SINGLE = Processes()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join_from_environment(device: torch.device) -> Processes:
    """Join the process group torchrun describes (a no-op without one): NCCL when training on
    CUDA, gloo otherwise."""
    if not launched_by_torchrun():
        return current()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return current()


def current() -> Processes:
    """The job this process belongs to, from the initialised process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def leave(together: bool = False) -> None:
    """Destroy the process group; ``together`` first waits for every process (the normal end),
    so none tears its connections down while another still holds them. Not after an error:
    the others may never reach the barrier."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
        dist.destroy_process_group()


def process_device(device: torch.device, processes: Processes) -> torch.device:
    """Under torchrun, ``cuda`` means this process's GPU, cuda:LOCAL_RANK."""
    if processes.enabled and device.type == "cuda" and device.index is None:
        device = torch.device("cuda", processes.local_rank % torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def sum_over_processes(values: torch.Tensor, processes: Processes) -> torch.Tensor:
    """Element-wise sum of ``values`` over all processes (the tensor itself when single)."""
    if not processes.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values
