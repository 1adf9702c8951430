"""What a stage is to the runner: a `Job` (its folder, schema, code version and how its work splits over processes)
and the `JobContext` it runs in (its folder, upstream artifacts, manifest, device, and its share of the instances
with the shard files that hold it).
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from attexp import distributed as dist
from attexp.config.schema import ComponentConfig, JobConfig
from attexp.errors import AttexpError
from attexp.io.artifacts import Artifact, cache_dir_of, shard_file, shard_files
from attexp.io.files import ResumableJsonlWriter, merge_partials
from attexp.io.manifests import Manifest
from attexp.io.records import RecordSchema
from attexp.models.loading import load_classifier, resolve_device
from attexp.registry import MODELS
from attexp.tracking import Tracker

log = logging.getLogger("attexp")
T = TypeVar("T")


class Splits(enum.Enum):
    """How a job's work splits over processes: the one declaration (`Job.splits`) from which the runner decides
    where `run` is called, the manifest records how the work was split, and `--dry-run` says so.

    INSTANCES: each process a fixed share of the instances (`JobContext.share`), written to its own shard file and
      merged by idx when every share is done. Runs on every torchrun rank and as the tasks of a job array
      (`--shard I/N`), since the shares need no process group.
    RANKS: every torchrun rank takes part and the ranks talk while they work (DDP's all-reduce of the gradients of
      every batch; counts summed over ranks). A job array cannot run it: its tasks have no process group.
    NONE: rank 0 alone; under torchrun the others wait.
    """

    INSTANCES = "instances"
    RANKS = "ranks"
    NONE = "none"


class Job:
    """A stage. Subclasses declare the schema of what they write (`attexp.io.records`), the folder of the base
    directory it goes to (`folder`: data, models, explanations, logs or visualizations) and implement `run`.

    `splits` says how the work splits over processes (`Splits`), and `splits_because` why a job that does not split
    its instances cannot (shown by `--dry-run`). `run` is called on every process that takes part (all of them for
    INSTANCES and RANKS, rank 0 for NONE); `finish` runs once, after every share is done (rank 0 under torchrun, the
    task that records the last share of a job array), e.g. to merge the shard files (`JobContext.merge_shards`).

    `version` is the version of the job's code (as in tango's steps): bump it when a change to the code changes
    what the job writes for the same config, and its hash changes with it, so artifacts of the older code are not
    reused (`attexp.config.hashing`). A new config key whose default keeps old results valid is not a new version:
    mark it `NeutralDefault` on the config type that owns it.
    """

    schema: ClassVar[RecordSchema]
    folder: ClassVar[str]
    version: ClassVar[int] = 1
    splits: ClassVar[Splits] = Splits.NONE
    splits_because: ClassVar[str] = ""  # why a job that is not INSTANCES cannot split its instances
    resumable: ClassVar[bool] = True  # False: a partial run holds nothing worth keeping (see `decide`)
    architectures: ClassVar[frozenset[str] | None] = None  # model_types of the classifier it reads (None: any)
    architecture_note: ClassVar[str] = ""  # why the architectures left out are refused

    def run(self, config: Any, ctx: JobContext) -> None:
        raise NotImplementedError

    @classmethod
    def finish(cls, config: Any, ctx: JobContext) -> None:
        """Runs on rank 0 after every rank's `run` returned. Default: nothing."""


@dataclass
class JobContext:
    """What a running job may touch: its folder, its upstream artifacts, its typed manifest (the stage's own
    fields are set on it while the job runs; the runner writes it when the job finishes), the tracker."""

    base_dir: Path
    out_dir: Path
    config: JobConfig
    upstream_artifacts: dict[str, Artifact]
    tracker: Tracker
    manifest: Manifest = field(default_factory=Manifest)
    resuming: bool = False
    rank: int = 0
    world_size: int = 1
    counts: dict[str, int] = field(default_factory=dict)
    array: bool = False  # a job-array task: rank/world_size are its index/count, and no process group is there

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    @property
    def cache_dir(self) -> Path:
        """Downloaded archives and extracted weights shared by all jobs (`cache_dir_of`)."""
        return cache_dir_of(self.base_dir)

    def alone(self) -> JobContext:
        """This context as one process would have it (rank 0 of 1): for the part of a job that a job array runs once,
        in the task that finishes the job, over every task's share (see `attexp.analyze.model_analysis`)."""
        return dataclasses.replace(self, rank=0, world_size=1, array=False)

    @property
    def device(self) -> torch.device:
        """Where this process runs the model: the config's `device` (`auto`: CUDA when there), under torchrun on
        GPUs this rank's own GPU."""
        return dist.rank_device(resolve_device(self.config.device))

    def upstream(self, name: str) -> Artifact:
        try:
            return self.upstream_artifacts[name]
        except KeyError:
            raise AttexpError(f"job {self.config.name!r} asked for {name!r}, which its config does not name.") from None

    def path(self, relative: str) -> Path:
        return self.out_dir / relative

    # Shares: how a data-parallel job splits its instances, writes its part and joins the parts. One rule, one file
    # name, one merge for every stage, whether this process is a torchrun rank or an array task.

    def share(self, rows: Sequence[T], key: Callable[[T], Any] | None = None) -> list[T]:
        """This process's share of `rows` (`attexp.distributed.share_of`; all of them for one process): fixed by
        rank or array task, in the order of `key` when given (e.g. length, so every share gets a similar mix)."""
        return dist.share_of(rows, self.rank, self.world_size, key)

    def shard_path(self, name: str) -> Path:
        """This share's part of the job file `name` (`<name>.rank<r>.partial`, `attexp.io.artifacts.shard_file`)."""
        return shard_file(self.out_dir, name, self.rank)

    def shard_paths(self, name: str) -> list[Path]:
        """Every share's part of `name` on disk (this run's and an interrupted earlier run's)."""
        return shard_files(self.out_dir, name)

    def shard_writer(self, name: str) -> ResumableJsonlWriter:
        """A resumable writer of this share's records of `name` (a killed run's complete lines are kept)."""
        return ResumableJsonlWriter(self.path(name), partial=self.shard_path(name))

    def merge_shards(self, name: str, required: Sequence[str] = ()) -> int:
        """Once every share is written: join them into `name`, sorted by idx, and remove them; the record count. An
        idx in two shares is refused (`attexp.io.files.read_shards`)."""
        return merge_partials(self.path(name), self.shard_paths(name), required)

    def classifier(
        self,
        ref: str | ComponentConfig,
        *,
        eager_attention: bool = False,
        device: torch.device | str | None = None,
        label_names: list[str] | None = None,
    ) -> tuple[Any, Any]:
        """The classifier and tokenizer a `ClassifierRef` field names, in eval mode: an upstream train job's
        `models/<job>/model/` (float32), or a model source (a local folder, a hub model, the packaged MiniLM) in the
        `dtype` it names (a `peft` adapter over its base, merged; a causal LM read through its `head`'s label words,
        the classes in `label_names`' order, the dataset's, where given)."""
        if isinstance(ref, str):
            return load_classifier(self.upstream(ref).dir / "model", eager_attention, device, label_names=label_names)
        where, kwargs = MODELS.get(ref.type).cls(ref).pretrained(self.cache_dir, root=self.base_dir)
        dtype, head = getattr(ref, "dtype", "float32"), getattr(ref, "head", None)
        names = label_names
        return load_classifier(where, eager_attention, device, dtype=dtype, head=head, label_names=names, **kwargs)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        log.info("%s: %s", self.config.name, shown)
        self.tracker.log(metrics, step=step)
