"""Multi-process training with ``torchrun`` (DDP; gloo on CPU, NCCL on CUDA): where this process sits, and the
process group's set-up and tear-down.

``torchrun --nproc_per_node N -m medgan train ...``: with ``WORLD_SIZE`` > 1 the process group is initialised,
G and D are wrapped in ``DistributedDataParallel`` (:mod:`medgan.training.trainer`), every rank draws from its own
disjoint, class-stratified shard of the training set (:mod:`medgan.training.batches`) with its own seeded
generators, and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class DistInfo:
    """Where this process sits in a ``torchrun`` job (single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_pref: str = "auto") -> tuple[DistInfo, bool]:
    """Initialise ``torch.distributed`` from torchrun's environment when ``WORLD_SIZE`` > 1.

    Returns the rank info and whether this call created the process group (and so must destroy it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), False
    import torch.distributed as dist

    info = DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if dist.is_initialized():
        return info, False
    cuda = torch.cuda.is_available() and device_pref != "cpu"
    if cuda:
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return info, True


def close_distributed(owns_group: bool) -> None:
    """Tear down a process group this process created (after a barrier, so that rank 0 can finish writing)."""
    if not owns_group:
        return
    import torch.distributed as tdist

    # Rank 0 still writes curves and checkpoints after the loop: without a barrier the other ranks tear the gloo
    # group down under it (seen as 'terminate called without an active exception').
    try:
        tdist.barrier()
    finally:
        tdist.destroy_process_group()
