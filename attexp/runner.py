"""Run a validated plan: for each job, claim its folder, record provenance, run the stage, mark it finished.

A stage is a `Job` subclass registered in `JOBS` with its config type. Its `run(config, ctx)` reads
upstream artifacts and writes its files through the `JobContext`; the runner owns everything around it:

- before any work, for every job of the plan: a finished folder with the same config hash is reused
  (skipped); a finished one with a different config, or a partial one from a different config, is refused
  unless `--force` (ConfigError, exit 2);
- a file lock (`<stage folder>/.<name>.lock`) so two runs never write one folder; once it holds the lock, the
  runner decides again from the folder as it is then (another run may have finished or started the job since
  the first decision), so a run never overwrites or resumes what a run with another config wrote;
- `config.json` and a `manifest.json` with status "running" at the start; a rerun of a partial job of the
  same config resumes (the explain stage streams records to partial files and skips finished idx);
- at the end the manifest gets the counts, timing, the stage's own fields and status "finished" (atomic write).

The manifest is typed (`attexp.io.manifests`, one model per stage, named by the stage's record schema): a job
sets its own fields on `ctx.manifest` while it runs, and a downstream job reads them from `Artifact.manifest`.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import filelock
import torch

from attexp import distributed as dist
from attexp.config.hashing import hash_config
from attexp.config.loader import Plan
from attexp.config.schema import ComponentConfig, JobConfig, WandbConfig
from attexp.config.upstream import classifier_sources, upstream_refs
from attexp.distributed import Shard
from attexp.errors import AttexpError, ConfigError
from attexp.io.artifacts import (
    CONFIG,
    MANIFEST,
    Artifact,
    cache_dir_of,
    find_artifact,
    finish_manifest,
    job_dir,
    lock_path,
    new_manifest,
    read_manifest,
    shard_file,
    shard_files,
)
from attexp.io.files import ResumableJsonlWriter, merge_partials, read_json, write_json
from attexp.io.manifests import Manifest, ModelFingerprint
from attexp.io.records import RecordSchema
from attexp.models.loading import load_classifier
from attexp.registry import JOBS, MODELS, RENDERERS
from attexp.tracking import Tracker
from attexp.utils import seed_everything

log = logging.getLogger("attexp")
T = TypeVar("T")


class Job:
    """A stage. Subclasses declare the schema of what they write (`attexp.io.records`), the folder of the base
    directory it goes to (`folder`: data, models, explanations, logs or visualizations) and implement `run`.

    `distributed = True` means `run` is called on every rank under torchrun (each does its share, see
    attexp.distributed); `finish` then runs on rank 0 once every rank is done (e.g. to merge shards).
    `shardable = True` means `run` does shard `ctx.rank` of `ctx.world_size` of the instances without needing a
    process group (its barriers are no-ops there), so a job array runs it as separate commands (`--shard I/N`,
    `attexp.job_arrays`); its `finish` then runs in the task that completes the last shard.

    `version` is the version of the job's code (as in tango's steps): bump it when a change to the code changes
    what the job writes for the same config, and its hash changes with it, so artifacts of the older code are not
    reused (`attexp.config.hashing`). A new config key whose default keeps old results valid is not a new version:
    mark it `NeutralDefault` on the config type that owns it.
    """

    schema: ClassVar[RecordSchema]
    folder: ClassVar[str]
    version: ClassVar[int] = 1
    distributed: ClassVar[bool] = False
    shardable: ClassVar[bool] = False
    rank_zero_because: ClassVar[str | None] = None  # why a job that is not `distributed` runs on rank 0 alone
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
    shard: Shard | None = None  # the job-array task this process is (then rank/world_size are its index/count)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    @property
    def cache_dir(self) -> Path:
        """Downloaded archives and extracted weights shared by all jobs (`cache_dir_of`)."""
        return cache_dir_of(self.base_dir)

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
        self, ref: str | ComponentConfig, *, eager_attention: bool = False, device: torch.device | str | None = None
    ) -> tuple[Any, Any]:
        """The classifier and tokenizer a `ClassifierRef` field names, in eval mode: an upstream train job's
        `models/<job>/model/`, or a model source (a local folder, a hub model, the packaged MiniLM)."""
        if isinstance(ref, str):
            return load_classifier(self.upstream(ref).dir / "model", eager_attention, device)
        where, kwargs = MODELS.get(ref.type).cls(ref).pretrained(self.cache_dir, root=self.base_dir)
        return load_classifier(where, eager_attention, device, **kwargs)

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        log.info("%s: %s", self.config.name, shown)
        self.tracker.log(metrics, step=step)


@dataclass
class Prepared:
    config: JobConfig
    stage: str
    out_dir: Path
    action: str  # "run" | "resume" | "skip" | "rerun"
    force: bool = False


def job_hash(job: JobConfig) -> str:
    """The config hash of `job` with its job's code version (`attexp.config.hashing`)."""
    return hash_config(type(job), job.model_dump(mode="json"), JOBS.get(job.job).cls.version)


def model_fingerprints(job: JobConfig, base_dir: Path) -> dict[str, ModelFingerprint]:
    """Per field that reads a classifier from a model source: the source and a sha256 of its files as they are
    now (None where they are not on this machine). Recorded in the manifest; see `decide`."""
    return {
        name: ModelFingerprint(
            source=source.model_dump(mode="json"),
            sha256=MODELS.get(source.type).cls(source).fingerprint(cache_dir_of(base_dir), root=Path(base_dir)),
        )
        for name, source in classifier_sources(job)
    }


def _changed_model(job: JobConfig, manifest: Manifest, base_dir: Path | None) -> str | None:
    """Which model source's files changed since the manifest was written (None: none did, or unknown)."""
    recorded = manifest.models
    if base_dir is None or not recorded:
        return None
    for name, now_ in model_fingerprints(job, base_dir).items():
        before = recorded[name].sha256 if name in recorded else None
        if before and now_.sha256 and before != now_.sha256:
            return f"{name} ({now_.source}: sha256 {before[:12]} then, {now_.sha256[:12]} now)"
    return None


def decide(job: JobConfig, out: Path, force: bool, base_dir: Path | None = None) -> tuple[str, str | None]:
    """What to do with job `job` whose folder is `out`, from the folder as it is now: (action, problem).

    action is "run", "resume", "skip" or "rerun"; problem (a refusal, with the fix) is None when it may go ahead.
    A model source whose files changed since the job ran (`models` in the manifest) counts as a changed config.
    """
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = read_manifest(manifest_path)
        same = manifest.config_hash == job_hash(job)
        if force:
            return "rerun", None
        changed = _changed_model(job, manifest, base_dir) if same else None
        if changed:
            return "run", (
                f"{out}: the model that job {job.name!r} read changed since it ran: {changed}; its results describe "
                f"the old weights. Pass --force to rerun it on the new ones, or give the job a new name."
            )
        if manifest.is_finished:
            if same:
                return "skip", None
            return "run", (
                f"{out}: job {job.name!r} already finished with a different config. "
                f"Pass --force to overwrite it, or give the job a new name."
            )
        if same:
            return "resume", None
        if not JOBS.get(job.job).cls.resumable:  # e.g. a download that failed: nothing would be lost
            log.warning("%s: replacing a partial run of %r made with another config (nothing to resume)", out, job.name)
            return "rerun", None
        return "run", (
            f"{out}: a partial run of {job.name!r} with a different config is there. "
            f"Pass --force to start over, or give the job a new name."
        )
    if out.exists() and any(out.iterdir()):
        if force:
            return "rerun", None
        return "run", f"{out}: folder exists without a manifest. Pass --force to replace it."
    return "run", None


def prepare(plan: Plan, base_dir: Path, force: bool) -> list[Prepared]:
    """Decide for each job whether it runs, resumes or is skipped; refuse overwrites. Writes nothing.

    This is the early answer (for --dry-run, and to refuse before any job of a pipeline runs); each job is
    decided again under its lock (`_claim`), from its folder as it is then, since another run may have written
    it in between.
    """
    prepared, problems = [], []
    for job in plan.jobs:
        out = job_dir(base_dir, JOBS.get(job.job).cls.folder, job.name)
        action, problem = decide(job, out, force, base_dir)
        if problem:
            problems.append(problem)
        prepared.append(Prepared(job, job.job, out, action, force))
    if problems:
        raise ConfigError(f"{plan.source}:\n" + "\n".join(f"  {p}" for p in problems))
    return prepared


def run_plan(plan: Plan, base_dir: Path, force: bool = False) -> list[Path]:
    """Run every job of the plan in order; returns their output folders.

    Under torchrun every rank calls this after validating the same plan; see attexp.distributed.
    """
    base_dir = Path(base_dir)
    prepared = prepare(plan, base_dir, force)
    dist.barrier()  # every rank has decided from the same state of the base directory before anyone writes
    for item in prepared:
        if item.action == "skip":
            if dist.is_main():
                log.info(
                    "%s: finished already with this config (%s); --force reruns it.", item.config.name, item.out_dir
                )
        else:
            _run_one(item, base_dir)
    return [item.out_dir for item in prepared]


def _run_one(item: Prepared, base_dir: Path) -> None:
    cfg = item.config
    job_cls = JOBS.get(cfg.job).cls
    main = dist.is_main()
    lock, verdict = _claim(item, base_dir) if main else (None, "")
    verdict = dist.share(verdict)  # every rank follows the decision rank 0 made under the lock
    if verdict.startswith("refuse:"):
        if lock is not None:
            lock.release()
        raise ConfigError(verdict.removeprefix("refuse:"))
    if verdict == "skip":
        if lock is not None:
            lock.release()
        if main:
            log.info("%s: another run finished it with this config meanwhile (%s); skipped.", cfg.name, item.out_dir)
        return
    item.action = verdict
    try:
        upstream = upstream_artifacts(cfg, base_dir)
        resolved = cfg.model_dump(mode="json")
        resuming = item.action == "resume"
        if main:
            manifest = start_manifest(item, job_cls, resolved, upstream, base_dir)
        else:  # the other ranks' view: the stage's fields they set are not written (rank 0 writes the manifest)
            manifest = job_cls.schema.manifest()
        dist.barrier()  # the folder exists and is claimed

        handler = _log_to(item.out_dir / ("job.log" if main else f"job.rank{dist.rank()}.log"))
        tracker = Tracker(
            cfg.wandb if main else WandbConfig(), job=cfg.job, name=cfg.name, config=resolved, base_dir=base_dir
        )
        ctx = JobContext(
            base_dir,
            item.out_dir,
            cfg,
            upstream,
            tracker,
            manifest,
            resuming=resuming,
            rank=dist.rank(),
            world_size=dist.world_size(),
        )
        if main:
            log.info("%s %s: %s -> %s", "resuming" if resuming else "running", cfg.job, cfg.name, item.out_dir)
        started = time.perf_counter()
        exit_code = 1
        try:
            if job_cls.distributed or main:
                seed_everything(cfg.seed + dist.rank())  # per-rank seeds derived from the job's seed
                job_cls().run(cfg, ctx)
            dist.barrier()  # every rank's share is on disk
            if main:  # the job's `finish` still logs to its wandb run, which ends after it
                # world_size: the processes that did the work (a job that runs on rank 0 alone is 1 under torchrun)
                workers = dist.world_size() if job_cls.distributed else 1
                complete(job_cls, ctx, time.perf_counter() - started, workers)
                log.info("%s: finished in %.1f s", cfg.name, time.perf_counter() - started)
            exit_code = 0
        finally:
            tracker.finish(exit_code)
            logging.getLogger().removeHandler(handler)
            handler.close()
    finally:
        if lock is not None:
            lock.release()


def _claim(item: Prepared, base_dir: Path) -> tuple[filelock.FileLock, str]:
    """Take the job folder's lock (or fail at once), decide again from the folder as it is now that the lock is
    held, and clear the folder for a rerun. Returns the lock and the decision: an action, or "refuse:<why>"."""
    cfg = item.config
    path = lock_path(base_dir, JOBS.get(cfg.job).cls.folder, cfg.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise AttexpError(
            f"{item.out_dir}: another run is writing job {cfg.name!r} (lock {path} held). Wait for it to finish."
        ) from None
    try:
        action, problem = decide(cfg, item.out_dir, item.force, base_dir)
        if problem:
            return lock, f"refuse:{problem}"
        if action == "rerun" and item.out_dir.exists():
            shutil.rmtree(item.out_dir)
        if action != "skip":
            item.out_dir.mkdir(parents=True, exist_ok=True)
            for stray in item.out_dir.rglob(".*.tmp"):  # temporary files of a write that was cut off
                stray.unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    return lock, action


def upstream_artifacts(cfg: JobConfig, base_dir: Path) -> dict[str, Artifact]:
    """The finished artifacts of the upstream jobs `cfg` names; an error for one missing or unfinished. A manifest
    that declares no schema (made by hand or by another tool) is read as the typed manifest of the stage it names."""
    upstream = {}
    for name in _upstream_names(cfg):
        artifact = find_artifact(base_dir, name)
        if artifact is None:
            raise AttexpError(f"job {cfg.name!r}: upstream artifact {name!r} is missing from {base_dir}.")
        if type(artifact.manifest) is Manifest and artifact.stage in JOBS:
            typed = JOBS.get(artifact.stage).cls.schema.read_manifest(artifact.manifest.to_json())
            artifact = dataclasses.replace(artifact, manifest=typed)
        upstream[name] = artifact.require_finished()
    return upstream


def complete(job_cls: type[Job], ctx: JobContext, seconds: float, workers: int) -> None:
    """Rank 0, once every process's share is done: the job's `finish` (e.g. merging shard files), the pages of a
    job that writes records (registered by the visualize stage), then the manifest marked finished."""
    job_cls.finish(ctx.config, ctx)
    render = RENDERERS.get(ctx.config.job)
    if render is not None:
        render(ctx.config, ctx)
    ctx.manifest.counts = {**ctx.manifest.counts, **ctx.counts}
    finish_manifest(ctx.manifest, ctx.out_dir, job_cls.schema.files, seconds, workers)
    write_json(ctx.out_dir / MANIFEST, ctx.manifest.to_json())


def start_manifest(
    item: Prepared, job_cls: type[Job], resolved: dict, upstream: dict[str, Artifact], base_dir: Path
) -> Manifest:
    """config.json and a "running" manifest (a resumed job keeps its manifest and counts the resume), with the
    fingerprints of the model sources it reads."""
    manifest = _start_manifest(item, job_cls, resolved, upstream)
    models = model_fingerprints(item.config, base_dir)
    if models:  # a fresh run records them; a resumed run keeps what it started with (checked by `decide`)
        recorded = dict(manifest.models)
        for key, entry in models.items():
            if key not in recorded or not recorded[key].sha256:
                recorded[key] = entry
        manifest.models = recorded
        write_json(item.out_dir / MANIFEST, manifest.to_json())
    return manifest


def _start_manifest(item: Prepared, job_cls: type[Job], resolved: dict, upstream: dict[str, Artifact]) -> Manifest:
    """config.json and a "running" manifest (a resumed job keeps its manifest and counts the resume)."""
    if item.action == "resume":
        manifest = job_cls.schema.read_manifest(read_json(item.out_dir / MANIFEST))
    else:
        manifest = new_manifest(
            schema=job_cls.schema,
            stage=item.config.job,
            config=resolved,
            config_hash=job_hash(item.config),
            upstream=upstream,
            code_version=job_cls.version,
        )
    manifest.resumed = manifest.resumed + int(item.action == "resume")
    write_json(item.out_dir / CONFIG, resolved)
    write_json(item.out_dir / MANIFEST, manifest.to_json())
    return manifest


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def _upstream_names(cfg: JobConfig) -> list[str]:
    return list(dict.fromkeys(name for _, name, _ in upstream_refs(cfg)))
