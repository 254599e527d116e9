"""Data-parallel training on PyTorch's own engine: ``torch.distributed`` + DDP, started by
``torchrun`` (never a launcher of ours).

Everything here is a no-op in a single process, so training code calls it unconditionally.
The one thing a plugin author needs is :func:`all_reduce_sum`: under DDP each process sees
only its shard of the global batch, so statistics that *decide* something (ADMM's template,
a quantizer's levels) must be summed over the processes before they are used, or each process
would decide from half the data (and DDP would then overwrite the others' buffers with rank
0's at the next forward).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import torch
import torch.distributed as dist

from codec_lab.corelib.errors import ConfigError

__all__ = [
    "DistInfo",
    "all_reduce_mean",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "check_batch_split",
    "gather_objects",
    "init_from_env",
    "is_main",
    "launched_by_torchrun",
    "rank",
    "shutdown",
    "world_size",
]

T = TypeVar("T", torch.Tensor, float, int)

# Collectives of a slow rank (a coder fit, an evaluation on rank 0) wait this long: longer than
# gloo's and NCCL's 10-30 minute defaults, which a large validation set can exceed.
TIMEOUT = _dt.timedelta(hours=2)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a distributed job (``world == 1``: not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = ""


def check_batch_split(batch_size: int, world: int) -> None:
    """Refuse a global batch that does not split evenly over ``world`` processes."""
    if world > 1 and batch_size % world:
        fit = world * max(1, batch_size // world)
        raise ConfigError(f"train.batch_size {batch_size} does not split over {world} processes "
                          "(it is the global batch)",
                          f"use a multiple of {world}, e.g. --set train.batch_size={fit}")


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher following its environment contract) started us."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group torchrun set up; a single process when not launched by it.

    gloo on CPU, NCCL on CUDA (each process on GPU ``LOCAL_RANK``). Idempotent.
    """
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistInfo()
    local = int(os.environ["LOCAL_RANK"])
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            if local >= torch.cuda.device_count():
                raise ConfigError(f"LOCAL_RANK {local} but this machine has "
                                  f"{torch.cuda.device_count()} GPU(s)",
                                  "start at most one process per GPU (--nproc-per-node)")  # fmt: skip
            torch.cuda.set_device(local)
        dist.init_process_group(backend, timeout=TIMEOUT)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())


def shutdown() -> None:
    """Leave the process group (after training: rank 0 goes on alone)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Processes in the job (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0)."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in one)."""
    if world_size() > 1:
        dist.barrier()


@overload
def all_reduce_sum(value: T, /) -> T: ...
@overload
def all_reduce_sum(*values: T) -> tuple[T, ...]: ...
def all_reduce_sum(*values: Any) -> Any:
    """Sum each value over all processes; the same result on every process.

    Tensors are summed in place-free copies (same dtype and device); Python numbers come back
    as numbers of their type. Every process must call it with the same shapes, in the same
    order (it is a collective). One value in, one value out; several in, a tuple out.

    Example (a rate plugin's running statistics, before they decide the template)::

        acc, count = all_reduce_sum(self._acc, self._count)
        mean = acc / count
    """
    if world_size() == 1:
        return values[0] if len(values) == 1 else values
    out: list[Any] = []
    for v in values:
        if isinstance(v, torch.Tensor):
            t = v.detach().clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            out.append(t)
        else:
            t = torch.tensor(float(v), dtype=torch.float64, device=_comm_device())
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            out.append(type(v)(t.item()) if isinstance(v, int) else t.item())
    return out[0] if len(out) == 1 else tuple(out)


def all_reduce_mean(values: Sequence[float]) -> list[float]:
    """The mean over processes of each number (one collective for the whole list)."""
    if world_size() == 1 or not values:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / world_size()).tolist()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (pickled: plain data only)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_comm_device())
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if world_size() == 1:
        return [obj]
    boxes: list[Any] = [None] * world_size()
    dist.all_gather_object(boxes, obj)
    return boxes


def _comm_device() -> torch.device:
    # NCCL only moves CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
