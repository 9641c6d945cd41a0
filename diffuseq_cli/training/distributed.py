"""Process groups for training: spawn N local workers, or join a group started by ``torchrun``.

``--gpus N`` (or ``--nproc N`` on CPU) spawns N processes on this machine with a free
port; when the usual environment variables (RANK, WORLD_SIZE, MASTER_ADDR, ...) are
already set, as under ``torchrun --nnodes ...``, nothing is spawned.
A library error (``DiffuseqError``) raised in a spawned worker is raised again in the
parent, so the command line reports it as one line, as it would in one process.
Spawned workers end with the launching process, however it ends (a scheduler's SIGTERM,
a SIGKILL): on Linux through the kernel's parent-death signal.
"""

from __future__ import annotations

import os
import queue
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import DiffuseqError
from ..processes import die_with_parent
from ..threads import usable_cpus


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


def spawn(worker, nprocs: int, args: tuple):
    """Run ``worker(local_rank, *args)`` in ``nprocs`` processes joined by env:// rendezvous on localhost.

    Returns rank 0's return value. A ``DiffuseqError`` in any worker is raised here.
    """
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    outcomes = ctx.SimpleQueue()
    saved = {k: os.environ.get(k) for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE")}
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(free_port())
    os.environ["WORLD_SIZE"] = str(nprocs)
    try:
        try:
            mp.spawn(_entry, args=(worker, nprocs, args, outcomes, os.getpid()), nprocs=nprocs, join=True)
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            for _, kind, value in _drain(outcomes):
                if kind == "error":
                    raise value from None
            raise
        results = {rank: value for rank, kind, value in _drain(outcomes) if kind == "ok"}
        return results.get(0)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _drain(outcomes) -> list:
    items = []
    try:
        while not outcomes.empty():
            items.append(outcomes.get())
    except (EOFError, OSError, queue.Empty):
        pass
    return items


def _entry(local_rank: int, worker, nprocs: int, args: tuple, outcomes, parent: int) -> None:
    die_with_parent(parent)
    os.environ["RANK"] = str(local_rank)
    os.environ["LOCAL_RANK"] = str(local_rank)
    os.environ["LOCAL_WORLD_SIZE"] = str(nprocs)
    try:
        result = worker(local_rank, *args)
    except DiffuseqError as exc:
        outcomes.put((local_rank, "error", exc))
        raise SystemExit(1) from None
    outcomes.put((local_rank, "ok", result))


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
        if "OMP_NUM_THREADS" not in os.environ:
            # N processes on one machine share its cores instead of each taking all of them.
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            torch.set_num_threads(max(1, usable_cpus() // max(1, local_world)))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Placement(rank, world, dev)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_gather_cat(x: torch.Tensor, placement: Placement) -> torch.Tensor:
    """Concatenate every rank's ``x`` (on this rank's device) along dim 0, in rank order; the same on all ranks."""
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


def any_rank(flag: bool, placement: Placement) -> bool:
    """True on every rank when ``flag`` is true on at least one (keeps decisions like "stop now" in step)."""
    if not placement.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=placement.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj, placement: Placement):
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not placement.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj, placement: Placement) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not placement.distributed:
        return [obj]
    out = [None] * placement.world_size
    dist.all_gather_object(out, obj)
    return out
