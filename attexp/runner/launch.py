"""A job's life, one story for every way a command is launched: claim, seed, context, run, finish, merge.

The launch mode is data (`Launch`), read once from the command line and the environment:

- `process`: one process runs the plan;
- `ranks`: torchrun started N processes with a process group (`attexp.distributed`);
- `shard`: task I of a job array (`--shard I/N`, or a SLURM array task), a separate command with no rendezvous;
- `merge`: `--merge`, which finishes the jobs whose array tasks are all done.

For every job of the plan, in order:

1. claim (`_claimed`). Under the job's lock (`attexp.io.artifacts.lock_path`), decide again from the folder as it
   is now (another run may have finished or started the job since `prepare`), clear it for a rerun, write
   `config.json` and a "running" manifest (`start_manifest`), or join the job an earlier task started. A run of one
   process or of torchrun ranks holds the lock for the whole job (rank 0 holds it and tells the other ranks what it
   decided); an array task holds it only to start or join, and holds its share's lock
   (`attexp.io.artifacts.shard_lock_path`) while it works, so tasks of one array run side by side.
2. seed: the job's seed plus the process's index (rank or task), once (`attexp.utils.seed_everything`).
3. context: a `JobContext` with the process's index and count, so `ctx.share(rows)` is the same share for rank I
   of N and for array task I/N.
4. run: `Job.run` on every process that takes part (`Job.splits`).
5. finish (`_finish`): once every share is done, the job's `finish` (e.g. merging the shard files), its pages, and
   the manifest marked finished (`complete`): on rank 0 after a barrier; in an array, by the task that records
   the last share (under the job's lock), or by `--merge`.

Locks follow one policy (`hold`): a lock that guards a whole piece of work (a job, an array task's share) is tried
once, since a holder means another run is doing that work; a lock taken for a brief update of the manifest
(starting or joining an array, recording a share, merging) waits up to `LOCK_WAIT_SECONDS` for its holder to let go.

The base directory must be a filesystem that every process shares with working `flock` locks and atomic `rename`
(a local disk, NFSv4 with locking, Lustre or GPFS mounted with flock); see the README.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import filelock

from attexp import distributed as dist
from attexp.config.loader import Plan
from attexp.config.schema import WandbConfig
from attexp.errors import AttexpError, ConfigError
from attexp.io.artifacts import CONFIG, MANIFEST, finish_manifest, lock_path, new_manifest, shard_lock_path
from attexp.io.files import read_json, write_json
from attexp.io.manifests import Manifest
from attexp.registry import JOBS, RENDERERS
from attexp.runner.job import Job, JobContext, Splits
from attexp.runner.plan import Prepared, decide, job_hash, model_fingerprints, prepare, upstream_artifacts
from attexp.tracking import Tracker
from attexp.utils import seed_everything

log = logging.getLogger("attexp")
LOCK_WAIT_SECONDS = 120.0  # the longest a brief holder (an array task starting a job or recording a share) needs


@dataclass(frozen=True)
class Launch:
    """How this command runs its jobs: the mode, and this process's index of count (rank of world size under
    torchrun, task of tasks in a job array; 0 of 1 otherwise)."""

    mode: Literal["process", "ranks", "shard", "merge"] = "process"
    index: int = 0
    count: int = 1

    @classmethod
    def of(cls, shard: dist.Shard | None = None, merge: bool = False) -> Launch:
        """The launch of this process: `--merge`, an array task (`shard`), torchrun ranks, or one process."""
        if merge:
            return cls("merge")
        if shard is not None:
            return cls("shard", shard.index, shard.count)
        if dist.world_size() > 1:
            return cls("ranks", dist.rank(), dist.world_size())
        return cls()

    @property
    def array(self) -> bool:
        """A task of a job array, or its merge: each command on its own, no process group."""
        return self.mode in ("shard", "merge")

    @property
    def main(self) -> bool:
        """The process that claims the job and writes its manifest (rank 0; every array task for its own share)."""
        return self.array or self.index == 0

    def works(self, job_cls: type[Job]) -> bool:
        """Whether this process runs `job_cls.run` (every rank of a job that splits, rank 0 of one that does not)."""
        return self.mode != "merge" and (job_cls.splits is not Splits.NONE or self.index == 0)

    def workers(self, job_cls: type[Job]) -> int:
        """How many processes did the job's work (the manifest's `world_size`)."""
        return self.count if job_cls.splits is not Splits.NONE else 1

    def __str__(self) -> str:
        return {"process": "one process", "ranks": f"rank {self.index} of {self.count}", "merge": "merge"}.get(
            self.mode, f"array task {self.index}/{self.count}"
        )


def run_plan(plan: Plan, base_dir: Path, launch: Launch | None = None, force: bool = False) -> list[Path]:
    """Run every job of the plan in order, as `launch` says (default: this process, one process or a torchrun rank);
    returns their output folders. Under torchrun every rank calls this after validating the same plan."""
    base_dir = Path(base_dir)
    launch = launch or Launch.of()
    if launch.array and force:
        raise ConfigError("--force cannot be combined with --shard or --merge: array tasks share the job's folder.")
    prepared = prepare(plan, base_dir, force, array=launch.mode == "shard")
    dist.barrier()  # every rank has decided from the same state of the base directory before anyone writes
    for item in prepared:
        if item.action == "skip":
            if launch.main:
                log.info("%s: finished already with this config (%s).", item.config.name, item.out_dir)
        elif launch.mode == "merge":
            _merge(item, base_dir)
        else:
            _run_job(item, base_dir, launch)
    return [item.out_dir for item in prepared]


def _run_job(item: Prepared, base_dir: Path, launch: Launch) -> None:
    cfg = item.config
    job_cls = JOBS.get(cfg.job).cls
    with _claimed(item, base_dir, launch) as manifest:
        if manifest is None:
            return
        upstream = upstream_artifacts(cfg, base_dir)
        tracked = launch.mode in ("process", "ranks") and launch.main  # one wandb run per job
        tracker = Tracker(
            cfg.wandb if tracked else WandbConfig(),
            job=cfg.job,
            name=cfg.name,
            config=cfg.model_dump(mode="json") if tracked else {},
            base_dir=base_dir,
        )
        ctx = JobContext(
            base_dir,
            item.out_dir,
            cfg,
            upstream,
            tracker,
            manifest,
            resuming=item.action == "resume",
            rank=launch.index,
            world_size=launch.count,
            array=launch.array,
        )
        handler = _log_to(item.out_dir / _log_name(launch))
        exit_code = 1
        try:
            if launch.main:
                log.info("%s %s (%s): %s -> %s", item.action, cfg.job, launch, cfg.name, item.out_dir)
            started = time.perf_counter()
            if launch.works(job_cls):
                seed_everything(cfg.seed + launch.index)  # per-process seeds derived from the job's seed
                job_cls().run(cfg, ctx)
            dist.barrier()  # every rank's share is on disk
            _finish(item, base_dir, launch, ctx, time.perf_counter() - started)
            exit_code = 0
        finally:
            tracker.finish(exit_code)
            logging.getLogger().removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def _claimed(item: Prepared, base_dir: Path, launch: Launch) -> Iterator[Manifest | None]:
    """Claim the job for this process (module docstring, step 1) and hold what guards its work until the end; the
    manifest this process works with, or None when there is nothing left to do."""
    cfg = item.config
    job_cls = JOBS.get(cfg.job).cls
    if launch.mode == "shard":
        with hold(*_job_lock(item, base_dir), brief=True):
            manifest = _join(item, base_dir, launch)
        if manifest is None or launch.index in manifest.shards_done:
            log.info("%s: %s finished already.", cfg.name, "the job" if manifest is None else f"shard {launch}")
            yield None
            return
        path = shard_lock_path(base_dir, job_cls.folder, cfg.name, launch.index)
        with hold(path, f"another task is running {launch} of job {cfg.name!r}", brief=False):
            yield job_cls.schema.manifest()  # this task's own fields and counts, recorded by `_finish`
        return
    lock, verdict = _claim(item, base_dir) if launch.main else (None, "")
    try:
        verdict = dist.share(verdict)  # every rank follows the decision rank 0 made under the lock
        if verdict.startswith("refuse:"):
            raise ConfigError(verdict.removeprefix("refuse:"))
        if verdict == "skip":
            if launch.main:
                log.info("%s: another run finished it with this config meanwhile (%s).", cfg.name, item.out_dir)
            yield None
            return
        item.action = verdict
        # the other ranks' view: the stage's fields they set are not written (rank 0 writes the manifest)
        manifest = start_manifest(item, job_cls, base_dir) if launch.main else job_cls.schema.manifest()
        dist.barrier()  # the folder exists and is claimed
        yield manifest
    finally:
        if lock is not None:
            lock.release()


def _claim(item: Prepared, base_dir: Path) -> tuple[filelock.FileLock, str]:
    """Take the job's lock for the whole job (or fail at once), decide again from the folder as it is now, and clear
    it for a rerun. Returns the held lock and the decision: an action, or "refuse:<why>"."""
    lock = hold(*_job_lock(item, base_dir), brief=False)
    try:
        action, problem = decide(item.config, item.out_dir, item.force, base_dir)
        if problem:
            return lock, f"refuse:{problem}"
        if action != "skip":
            _clear(item, action)
    except BaseException:
        lock.release()
        raise
    return lock, action


def _join(item: Prepared, base_dir: Path, launch: Launch) -> Manifest | None:
    """An array task, under the job's lock: decide again, then start the job or join the one an earlier task
    started (same config, same task count); its manifest, or None when the job is finished."""
    cfg = item.config
    action, problem = decide(cfg, item.out_dir, False, base_dir)
    if problem:
        raise ConfigError(problem)
    if action == "skip":
        return None
    item.action = action
    item.out_dir.mkdir(parents=True, exist_ok=True)  # nothing is cleared: other tasks may be writing their shares
    if action == "resume":
        manifest = _read(item)
        if manifest.shards not in (None, launch.count):
            raise ConfigError(
                f"{item.out_dir}: job {cfg.name!r} runs as {manifest.shards} shards; this task is {launch}. "
                f"Launch every task with the same N, or pass --force once without --shard to start over."
            )
        if manifest.shards is not None:
            return manifest
        # a single process was cut off: its records count as done, and the job goes on as an array
    else:
        manifest = start_manifest(item, JOBS.get(cfg.job).cls, base_dir)
    manifest.shards = launch.count
    write_json(item.out_dir / MANIFEST, manifest.to_json())
    return manifest


def _finish(item: Prepared, base_dir: Path, launch: Launch, ctx: JobContext, seconds: float) -> None:
    """After this process's work (module docstring, step 5): rank 0 completes the job; an array task records its
    share and, if it is the last, completes the job."""
    job_cls = JOBS.get(item.config.job).cls
    if launch.mode != "shard":
        if launch.main:
            complete(job_cls, ctx, seconds, launch.workers(job_cls))
            log.info("%s: finished in %.1f s", item.config.name, seconds)
        return
    with hold(*_job_lock(item, base_dir), brief=True):
        manifest = _read(item)
        for key in ctx.manifest.model_fields_set - {"counts"}:  # the stage's own fields, as the share set them
            setattr(manifest, key, getattr(ctx.manifest, key))
        for key, value in ctx.counts.items():  # the shares' counts add up
            manifest.counts = {**manifest.counts, key: manifest.counts.get(key, 0) + value}
        manifest.shards_done = sorted(set(manifest.shards_done) | {launch.index})
        manifest.seconds = round((manifest.seconds or 0) + seconds, 3)
        write_json(item.out_dir / MANIFEST, manifest.to_json())
        log.info("%s: %s done (%d of %d)", item.config.name, launch, len(manifest.shards_done), launch.count)
        if len(manifest.shards_done) == launch.count:
            _complete_array(item, base_dir, manifest)


def _merge(item: Prepared, base_dir: Path) -> None:
    """`--merge`: complete a job whose array tasks have all recorded their share."""
    cfg = item.config
    if not (item.out_dir / MANIFEST).exists():
        raise AttexpError(f"{cfg.name}: not started; run its array tasks (--shard I/N) first.")
    with hold(*_job_lock(item, base_dir), brief=True):
        manifest = _read(item)
        missing = sorted(set(range(manifest.shards or 0)) - set(manifest.shards_done))
        if manifest.shards is None or missing:
            raise AttexpError(
                f"{cfg.name}: shards {missing or '?'} of {manifest.shards or '?'} have not finished; "
                f"rerun those array tasks (--shard I/{manifest.shards or 'N'}), then --merge."
            )
        _complete_array(item, base_dir, manifest)


def _complete_array(item: Prepared, base_dir: Path, manifest: Manifest) -> None:
    """Under the job's lock, every share recorded: the job's `finish` as one process of `shards` would run it."""
    cfg = item.config
    job_cls = JOBS.get(cfg.job).cls
    tracker = Tracker(WandbConfig(), job=cfg.job, name=cfg.name, config={}, base_dir=base_dir)
    upstream = upstream_artifacts(cfg, base_dir)
    ctx = JobContext(
        base_dir, item.out_dir, cfg, upstream, tracker, manifest, rank=0, world_size=manifest.shards, array=True
    )
    complete(job_cls, ctx, 0.0, manifest.shards or 1)
    tracker.finish(0)
    log.info("%s: all %d shards done; merged and finished (%s)", cfg.name, manifest.shards, item.out_dir)


def complete(job_cls: type[Job], ctx: JobContext, seconds: float, workers: int) -> None:
    """Once every process's share is done: the job's `finish` (e.g. merging shard files), the pages of a job that
    writes records (registered by the visualize stage), then the manifest marked finished."""
    job_cls.finish(ctx.config, ctx)
    render = RENDERERS.get(ctx.config.job)
    if render is not None:
        render(ctx.config, ctx)
    ctx.manifest.counts = {**ctx.manifest.counts, **ctx.counts}
    finish_manifest(ctx.manifest, ctx.out_dir, job_cls.schema.files, seconds, workers)
    write_json(ctx.out_dir / MANIFEST, ctx.manifest.to_json())


def start_manifest(item: Prepared, job_cls: type[Job], base_dir: Path) -> Manifest:
    """config.json and a "running" manifest (a resumed job keeps its manifest and counts the resume), with the
    fingerprints of the model sources it reads (a resumed run keeps what it started with, checked by `decide`)."""
    resolved = item.config.model_dump(mode="json")
    if item.action == "resume":
        manifest = _read(item)
    else:
        manifest = new_manifest(
            schema=job_cls.schema,
            stage=item.config.job,
            config=resolved,
            config_hash=job_hash(item.config),
            upstream=upstream_artifacts(item.config, base_dir),
            code_version=job_cls.version,
        )
    manifest.resumed = manifest.resumed + int(item.action == "resume")
    recorded = dict(manifest.models)
    for key, entry in model_fingerprints(item.config, base_dir).items():
        if key not in recorded or not recorded[key].sha256:
            recorded[key] = entry
    manifest.models = recorded
    write_json(item.out_dir / CONFIG, resolved)
    write_json(item.out_dir / MANIFEST, manifest.to_json())
    return manifest


# ------------------------------------------------------------------------------------------------------------ locks


def hold(path: Path, held: str, *, brief: bool) -> filelock.FileLock:
    """The lock at `path`, held (use it as a context manager, or release it): the one way the runner locks.

    `brief`: the holder lets go in moments (an array task starting a job or recording its share), so wait up to
    `LOCK_WAIT_SECONDS`; otherwise the lock guards a whole piece of work and is tried once. Either way a lock that
    cannot be had is an AttexpError that says what holds it (`held`) and what to do.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    try:
        lock.acquire(timeout=LOCK_WAIT_SECONDS if brief else 0)
    except filelock.Timeout:
        waited = f" for {LOCK_WAIT_SECONDS:.0f} s" if brief else ""
        raise AttexpError(f"{held} (lock {path} held{waited}). Wait for it to finish.") from None
    return lock


def _job_lock(item: Prepared, base_dir: Path) -> tuple[Path, str]:
    """The job's lock and what a holder of it is doing."""
    path = lock_path(base_dir, JOBS.get(item.config.job).cls.folder, item.config.name)
    return path, f"{item.out_dir}: another run is writing job {item.config.name!r}"


# ----------------------------------------------------------------------------------------------------------- helpers


def _clear(item: Prepared, action: str) -> None:
    """The job's folder ready for `action` (under the lock held for the whole job): removed for a rerun, created, and
    rid of the temporary files of a write that was cut off. A job that keeps nothing of a partial run
    (`Job.resumable` False) also loses its shard files: they may come from another number of processes, whose
    shares overlap this run's."""
    if action == "rerun" and item.out_dir.exists():
        shutil.rmtree(item.out_dir)
    item.out_dir.mkdir(parents=True, exist_ok=True)
    strays = list(item.out_dir.rglob(".*.tmp"))
    if not JOBS.get(item.config.job).cls.resumable:
        strays += item.out_dir.glob("*.partial")
    for stray in strays:
        stray.unlink(missing_ok=True)


def _read(item: Prepared) -> Manifest:
    return JOBS.get(item.config.job).cls.schema.read_manifest(read_json(item.out_dir / MANIFEST))


def _log_name(launch: Launch) -> str:
    if launch.mode == "shard":
        return f"job.shard{launch.index}.log"
    return "job.log" if launch.index == 0 else f"job.rank{launch.index}.log"


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
