"""Process groups for training: spawn N local workers, or join a group started by ``torchrun``.

``--gpus N`` (or ``--nproc N`` on CPU) spawns N processes on this machine with a free
port; when the usual environment variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) are
already set, as under ``torchrun --nnodes ...``, nothing is spawned.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Placement:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, nprocs: int, args: tuple) -> None:
    """Run ``worker(local_rank, *args)`` in ``nprocs`` processes joined by env:// rendezvous on localhost."""
    import torch.multiprocessing as mp

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    os.environ["WORLD_SIZE"] = str(nprocs)
    try:
        mp.spawn(_entry, args=(worker, nprocs, args), nprocs=nprocs, join=True)
    finally:
        for key in ("WORLD_SIZE", "MASTER_PORT"):
            os.environ.pop(key, None)


def _entry(local_rank: int, worker, nprocs: int, args: tuple) -> None:
    os.environ["RANK"] = str(local_rank)
    os.environ["LOCAL_RANK"] = str(local_rank)
    worker(local_rank, *args)


def init(device_kind: str, gpus: tuple[int, ...]) -> Placement:
    """Join the process group described by the environment, or run alone."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        if device_kind == "cuda":
            dev = torch.device("cuda", gpus[0] if gpus else 0)
            torch.cuda.set_device(dev)
            return Placement(0, 1, dev)
        return Placement(0, 1, torch.device("cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device_kind == "cuda":
        dev = torch.device("cuda", gpus[local] if gpus else local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev = torch.device("cpu")
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Placement(rank, world, dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_gather_cat(x: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Concatenate every rank's ``x`` along dim 0, in rank order (identical result on all ranks)."""
    if not placement.distributed:
        return x
    parts = [torch.empty_like(x) for _ in range(placement.world_size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_reduce_mean(x: torch.Tensor, placement: Placement) -> torch.Tensor:
    if placement.distributed:
        x = x.clone()
        dist.all_reduce(x)
        x /= placement.world_size
    return x
