"""torch.distributed for training, evaluation and extraction under ``torchrun``: the process group from
torchrun's environment (NCCL on CUDA, gloo on CPU), sharding and the few collectives cozoo needs.

Outside torchrun (no ``WORLD_SIZE`` > 1 in the environment) everything here is a single-process no-op, so the
same code runs in both.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import distributed as dist
from torch.utils.data import Sampler

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0


def from_env() -> Context:
    """The job as torchrun describes it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); one process otherwise."""
    def read(name: str, default: int) -> int:
        value = os.environ.get(name, "")
        try:
            return int(value) if value else default
        except ValueError:
            raise ValueError(f"environment variable {name}={value!r} is not an integer") from None

    context = Context(read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0))
    if not 0 <= context.rank < context.world_size:
        raise ValueError(f"RANK={context.rank} is outside WORLD_SIZE={context.world_size}")
    return context


def current() -> Context:
    """The job of the initialised process group (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), from_env().local_rank)
    return Context()


def device_for(name: str | torch.device, context: Context) -> torch.device:
    """``name`` ("auto", "cpu", "cuda", "cuda:1"), with each process of a job on its own GPU
    (``cuda:LOCAL_RANK``) when CUDA is asked for; raises when CUDA is asked for but absent."""
    if str(name) == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(name)!r} asked for but CUDA is not available")
        if context.enabled:
            if context.local_rank >= torch.cuda.device_count():
                count = torch.cuda.device_count()
                raise ValueError(f"LOCAL_RANK {context.local_rank} but only {count} GPUs: start at most one "
                                 "process per GPU (--nproc_per_node)")
            device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    return device


@contextmanager
def session(device: torch.device) -> Iterator[Context]:
    """Join the job torchrun started (backend NCCL for a CUDA device, gloo otherwise) for the enclosed work;
    a single process outside torchrun. The process group is created once and kept until the process exits:
    a later call (e.g. ``finetune`` then ``evaluate`` in one script) reuses it, as creating a group again
    under the same rendezvous can meet the old group's addresses."""
    context = from_env()
    if context.enabled and not dist.is_initialized():
        kwargs: dict[str, Any] = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **kwargs)
        atexit.register(_leave)
    yield current() if context.enabled else context


def _leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or ``"max"``) ``tensor`` over the job, in place; returned for chaining. A CPU tensor goes
    through the GPU under NCCL (which reduces GPU tensors only)."""
    if not current().enabled:
        return tensor
    reduce_op = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
    if dist.get_backend() == "nccl" and not tensor.is_cuda:
        staged = tensor.cuda()
        dist.all_reduce(staged, op=reduce_op)
        tensor.copy_(staged.cpu())
    else:
        dist.all_reduce(tensor, op=reduce_op)
    return tensor


def gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    context = current()
    if not context.enabled:
        return [obj]
    out: list[Any] = [None] * context.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(items: Sequence[T], context: Context | None = None) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th, starting at ``rank``."""
    context = context or current()
    return list(items[context.rank::context.world_size])


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of a dataset of ``size`` items (no padding, no repeats, so
    gathered results count every item once)."""

    def __init__(self, size: int, context: Context | None = None) -> None:
        self.size, self.context = size, context or current()

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.context.rank, self.size, self.context.world_size))

    def __len__(self) -> int:
        return len(range(self.context.rank, self.size, self.context.world_size))
