"""Data-parallel training under torchrun (DDP), kept out of the training loop.

A single process is a world of one: every function here is then a no-op or the identity, so the loop reads
the same either way. torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; rank 0 alone writes the run's files.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # a process group a caller set up is the caller's to destroy

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def join(device: torch.device) -> tuple[World, torch.device]:
    """This process's place in the world, and its device (one GPU per process under CUDA)."""
    world = World(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                  int(os.environ.get("LOCAL_RANK", "0")))
    if world.size == 1:
        return world, device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        world.owns_group = True
    return world, device


def wrap(model: torch.nn.Module, device: torch.device, world: World) -> torch.nn.Module:
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def all_sum(t: torch.Tensor, world: World) -> torch.Tensor:
    """`t` summed over every process, in place."""
    if world.size > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def agreed(stop: Callable[[], bool], device: torch.device, world: World) -> Callable[[], bool]:
    """Under DDP a rank that sees the STOP file (or a signal) a step before the others would leave them waiting
    in the next gradient all-reduce: every rank stops when any rank asks."""
    if world.size == 1:
        return stop
    import torch.distributed as dist

    def any_rank() -> bool:
        flag = torch.tensor([1.0 if stop() else 0.0], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    return any_rank


def leave(world: World) -> None:
    """Every rank waits for rank 0's final evaluation, then leaves: exiting early aborted gloo."""
    if world.size == 1:
        return
    import torch.distributed as dist

    dist.barrier()
    if world.owns_group:
        dist.destroy_process_group()
