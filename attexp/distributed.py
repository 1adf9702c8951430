"""Data-parallel runs under `torchrun`, through `ignite.distributed`.

`torchrun --nproc_per_node=N run_job.py CONFIG` starts N processes with `WORLD_SIZE`/`RANK` set; the CLI then
initialises a process group (gloo on CPU, nccl when CUDA is there; `ATTEXP_DIST_BACKEND` overrides) and every
process validates the same config. Rank 0 owns the job folder (lock, config, manifest, tracking); jobs that
split their instances (explain, evaluate, attribution_tree, layer_flow, and the per-instance passes of
head_pruning and triggers) run on every rank over a share of them (`share_of`), each rank writing its own shard
file, and rank 0 merges them; jobs that split every training batch (train, distill) run as DDP on every rank; the
others run on rank 0 while the others wait. Each job declares which (`attexp.runner.Job.splits`). Outside
torchrun all of this collapses to rank 0 of 1, and no process group is created.

Job arrays need no rendezvous: `run_job.py CONFIG --shard I/N` (or a SLURM array task, `shard_from_environment`)
runs the jobs that split their instances on shard I of N as a separate command (`Shard`; see attexp.runner).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import ignite.distributed as idist
import torch

T = TypeVar("T")


def launched() -> bool:
    """True when started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend() -> str:
    return os.environ.get("ATTEXP_DIST_BACKEND") or ("nccl" if torch.cuda.is_available() else "gloo")


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Initialise (and finally tear down) the process group when launched with several processes."""
    if not launched():
        yield
        return
    idist.initialize(backend())
    try:
        yield
    finally:
        idist.finalize()


def rank() -> int:
    return idist.get_rank()


def world_size() -> int:
    return idist.get_world_size()


def is_main() -> bool:
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """The device of this process: under torchrun on GPUs, its own (`cuda:<local rank>`); else `device`."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", idist.get_local_rank())
    return device


def wrap_for_gradients(model: torch.nn.Module, **ddp: object) -> torch.nn.Module:
    """`model` wrapped for data-parallel training (`idist.auto_model`: DistributedDataParallel, which averages the
    gradients of every rank's share of the batch) when several processes run; `model` itself otherwise. Parameters
    that do not require gradients (a frozen classifier) are left out of the all-reduce by DDP."""
    if world_size() == 1:
        return model
    return idist.auto_model(model, sync_bn=False, **ddp)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def sum_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The sum of `value` (a count, without gradient) over the ranks; `value` for one process."""
    if world_size() == 1:
        return value
    return idist.all_reduce(value.detach().clone())


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of `value` (a tensor without gradient, e.g. a token count) over the ranks; `value` for one process."""
    if world_size() == 1:
        return value
    return idist.all_reduce(value.detach().clone()) / world_size()


def barrier() -> None:
    if world_size() > 1:
        idist.barrier()


def share(value: str) -> str:
    """Rank 0's `value` on every rank (a decision made on rank 0, e.g. under the job's lock)."""
    if world_size() > 1:
        return idist.broadcast(value if is_main() else None, src=0, safe_mode=True)
    return value


def share_of(items: Sequence[T], index: int, count: int, key: Callable[[T], Any] | None = None) -> list[T]:
    """Share `index` of `count` of `items`: the one rule by which attexp splits work over processes.

    Every `count`-th item from the `index`-th, in the order of `key` when given (e.g. a text's length, so that every
    share gets a similar mix of short and long inputs and the processes finish together). A share depends only on
    (`items`, `index`, `count`), never on who runs first or what is done already, so rank I of N under torchrun and
    array task I/N (`--shard I/N`) do the same work, and a killed share rerun finds its own rows again. The shares
    are disjoint and together hold every item once. Used for a job's instances (`JobContext.share`) and for each
    global training batch under DDP (`attexp.train.batches`).
    """
    if not 0 <= index < count:
        raise ValueError(f"share {index} of {count}: expected 0 <= index < count")
    ordered = list(items) if key is None else sorted(items, key=key)
    return ordered[index::count]


@dataclass(frozen=True)
class Shard:
    """Task `index` of `count` of a job array (`--shard I/N`, or a SLURM array): without a rendezvous, each task
    runs the instance-parallel jobs on its own fixed share of the instances and writes its own shard file; the task
    that finds every shard done merges them (`attexp.runner`)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` (0 <= I < N) as a Shard; a ValueError naming the form otherwise."""
    index, sep, count = text.partition("/")
    try:
        shard = Shard(int(index), int(count)) if sep else None
    except ValueError:
        shard = None
    if shard is None or not 0 <= shard.index < shard.count:
        raise ValueError(f"--shard {text!r}: expected I/N with 0 <= I < N (e.g. --shard 0/4, the first of four tasks)")
    return shard


def shard_from_environment(environ: Mapping[str, str] | None = None) -> Shard | None:
    """The Shard of a SLURM array task (`SLURM_ARRAY_TASK_ID` counted from `SLURM_ARRAY_TASK_MIN`, of
    `SLURM_ARRAY_TASK_COUNT`), or None outside an array."""
    env = os.environ if environ is None else environ
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    return parse_shard(f"{int(env['SLURM_ARRAY_TASK_ID']) - first}/{int(env['SLURM_ARRAY_TASK_COUNT'])}")
