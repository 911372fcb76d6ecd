"""DistributedDataParallel plumbing for the training loop: one process per device under torchrun.

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them every helper here is a no-op for
a single process. NCCL on GPUs, gloo on CPUs. Every rank walks the same seeded permutation of the
training digits and takes its own slice of each global batch, so N processes with a global batch B
take the same steps as one process with batch B (up to floating-point reduction order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """Where this process sits: ``rank`` of ``world`` processes, ``local_rank`` on its host."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def master(self) -> bool:
        """Rank 0 logs, reports metrics and writes checkpoints."""
        return self.rank == 0


SINGLE = Dist()


def from_env() -> Dist:
    """The rank layout torchrun put in the environment (a single process without it)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    return Dist(rank=int(os.environ["RANK"]), world=world, local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join torchrun's process group (once per process); returns the layout and this rank's device."""
    ctx = from_env()
    if ctx.world == 1:
        return ctx, device
    if device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():  # gloo for CPU tensors always, so a CPU run also works under a GPU worker
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return ctx, device


SHUTDOWN_WAIT = 120.0  # seconds the ranks wait for each other before leaving the group


def shutdown(synchronise: bool = False) -> None:
    """Leave the process group if this process joined one. ``synchronise`` (after finished work) first waits for
    every rank: rank 0 still evaluates and writes while the others would tear the group down beside it (gloo then
    aborts the early rank: "terminate called without an active exception"). A rank that died meanwhile only costs the
    wait's timeout (gloo), never a hang."""
    if dist.is_available() and dist.is_initialized():
        if synchronise:
            try:
                if dist.get_backend() == "gloo":
                    dist.monitored_barrier(timeout=timedelta(seconds=SHUTDOWN_WAIT))
                else:
                    dist.barrier()
            except RuntimeError:
                pass  # a peer is gone: nothing left to wait for
        dist.destroy_process_group()


def num_steps(n: int, batch_size: int, world: int = 1) -> int:
    """Optimiser steps per epoch. Under DDP a last global batch too small to give every rank a digit is dropped."""
    steps = -(-n // batch_size)
    if world > 1 and n % batch_size and n % batch_size < world:
        steps -= 1
    return steps


def bounds(n: int, ctx: Dist) -> tuple[int, int]:
    """This rank's slice ``[lo, hi)`` of a global batch of ``n``: sizes differ by at most one."""
    base, extra = divmod(n, ctx.world)
    lo = ctx.rank * base + min(ctx.rank, extra)
    return lo, lo + base + (ctx.rank < extra)


def digits_seen(steps: int, n: int, batch_size: int, ctx: Dist) -> int:
    """How many of an epoch's ``n`` digits this rank has trained on after ``steps`` steps."""
    def share(size: int) -> int:
        lo, hi = bounds(size, ctx)
        return hi - lo

    full = min(steps, n // batch_size)
    return full * share(batch_size) + (share(n - full * batch_size) if steps > full else 0)


def shard(batch: torch.Tensor, ctx: Dist) -> torch.Tensor:
    """This rank's part of a global batch (the whole batch in a single process)."""
    if ctx.world == 1:
        return batch
    lo, hi = bounds(len(batch), ctx)
    return batch[lo:hi]


def all_sum(*tensors: torch.Tensor) -> None:
    """Sum tensors over ranks, in place."""
    if dist.is_available() and dist.is_initialized():
        for t in tensors:
            dist.all_reduce(t)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (a stop request seen by rank 0 reaches all)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (``[obj]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
