"""Job arrays: the instance-parallel jobs of a plan run as N separate commands, with no rendezvous.

`run_job.py CONFIG --shard I/N` (or a SLURM array task: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`) runs every
job of the plan that is `shardable` (explain, evaluate) on shard I of its instances, as rank I of N would under
torchrun, writing its own shard file. The tasks start in any order, on any machines that share the base directory,
and each can be killed and rerun:

- the job's folder lock is held only briefly, to start the job (config.json, a "running" manifest with `shards: N`)
  and to record a finished shard (`shards_done`, with the stage's manifest fields); each shard has its own lock
  (`.<job>.shard<I>.lock`), so two tasks never run one shard;
- a task of another config (another config hash) or another shard count is refused, like a changed config (exit 2);
- the task that records the last shard merges the shard files and marks the job finished, under the job's lock;
  `run_job.py CONFIG --merge` does the same by hand (e.g. after a task was rerun on its own);
- jobs that are not shardable (download, train, ...) must be finished before the array starts: a task refuses
  them with the command to run first. Records are those of one process (the shards are fixed by instance, not by
  who is running).

The base directory must be a filesystem that all tasks share with working `flock` locks and atomic `rename`
(a local disk, NFSv4 with locking, Lustre or GPFS mounted with flock); see the README.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import filelock

from attexp.config.loader import Plan
from attexp.config.schema import WandbConfig
from attexp.distributed import Shard
from attexp.errors import AttexpError, ConfigError
from attexp.io.artifacts import MANIFEST, lock_path
from attexp.io.files import read_json, write_json
from attexp.registry import JOBS
from attexp.runner import JobContext, Prepared, complete, decide, prepare, start_manifest, upstream_artifacts
from attexp.tracking import Tracker
from attexp.utils import seed_everything

log = logging.getLogger("attexp")
LOCK_WAIT_SECONDS = 120.0  # another task holds a job's lock only to start it or to record a shard


def prepare_array(plan: Plan, base_dir: Path) -> list[Prepared]:
    """`prepare` for a task of a job array: every job not finished yet must be shardable (a ConfigError, exit 2,
    naming the jobs to run first otherwise). Writes nothing."""
    prepared = prepare(plan, base_dir, force=False)
    blocking = [p.config.name for p in prepared if p.action != "skip" and not JOBS.get(p.config.job).cls.shardable]
    if blocking:
        raise ConfigError(
            f"{plan.source}: a job array runs only instance-parallel jobs (explain, evaluate), but "
            f"{', '.join(map(repr, blocking))} has not finished and cannot run as shards. Run those jobs first "
            f"without --shard (or put them in their own config), then launch the array."
        )
    return prepared


def run_shard(plan: Plan, base_dir: Path, shard: Shard) -> list[Path]:
    """Run shard `shard` of every unfinished job of the plan (see the module docstring)."""
    base_dir = Path(base_dir)
    prepared = prepare_array(plan, base_dir)
    for item in prepared:
        if item.action == "skip":
            log.info("%s: finished already with this config (%s).", item.config.name, item.out_dir)
            continue
        _run_one_shard(item, base_dir, shard)
    return [item.out_dir for item in prepared]


def merge(plan: Plan, base_dir: Path) -> list[Path]:
    """Finish every job of the plan whose array tasks have all recorded their shard (`--merge`)."""
    base_dir = Path(base_dir)
    prepared = prepare(plan, base_dir, force=False)
    for item in prepared:
        if item.action == "skip":
            continue
        if not (item.out_dir / MANIFEST).exists():
            raise AttexpError(f"{item.config.name}: not started; run its array tasks (--shard I/N) first.")
        with _job_lock(item, base_dir):
            manifest = _manifest(item)
            missing = sorted(set(range(manifest.shards or 0)) - set(manifest.shards_done))
            if manifest.shards is None or missing:
                raise AttexpError(
                    f"{item.config.name}: shards {missing or '?'} of {manifest.shards or '?'} have not finished; "
                    f"rerun those array tasks (--shard I/{manifest.shards or 'N'}), then --merge."
                )
            _complete(item, base_dir, manifest)
    return [item.out_dir for item in prepared]


def _job_lock(item: Prepared, base_dir: Path) -> filelock.FileLock:
    path = lock_path(base_dir, JOBS.get(item.config.job).cls.folder, item.config.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path), timeout=LOCK_WAIT_SECONDS)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise AttexpError(
            f"{item.out_dir}: the lock {path} has been held for {LOCK_WAIT_SECONDS:.0f} s; a run without --shard may "
            f"be writing job {item.config.name!r}. Wait for it to finish."
        ) from None
    return lock


def _manifest(item: Prepared):
    return JOBS.get(item.config.job).cls.schema.read_manifest(read_json(item.out_dir / MANIFEST))


def _start(item: Prepared, base_dir: Path, shard: Shard):
    """Under the job's lock: decide again, start the job or join it; returns its manifest (None: finished)."""
    cfg = item.config
    with _job_lock(item, base_dir):
        action, problem = decide(cfg, item.out_dir, False, base_dir)
        if problem:
            raise ConfigError(problem)
        if action == "skip":
            return None
        item.action = action
        item.out_dir.mkdir(parents=True, exist_ok=True)
        job_cls = JOBS.get(cfg.job).cls
        upstream = upstream_artifacts(cfg, base_dir)
        if action == "resume":
            manifest = _manifest(item)
            if manifest.shards not in (None, shard.count):
                raise ConfigError(
                    f"{item.out_dir}: job {cfg.name!r} runs as {manifest.shards} shards; this task says {shard}. "
                    f"Launch every task with the same N, or pass --force once without --shard to start over."
                )
            if manifest.shards is None:  # a single process was cut off: its records count as done
                manifest.shards = shard.count
                write_json(item.out_dir / MANIFEST, manifest.to_json())
            return manifest
        manifest = start_manifest(item, job_cls, cfg.model_dump(mode="json"), upstream, base_dir)
        manifest.shards = shard.count
        write_json(item.out_dir / MANIFEST, manifest.to_json())
        return manifest


def _run_one_shard(item: Prepared, base_dir: Path, shard: Shard) -> None:
    cfg = item.config
    job_cls = JOBS.get(cfg.job).cls
    manifest = _start(item, base_dir, shard)
    if manifest is None:
        log.info("%s: another task finished it meanwhile.", cfg.name)
        return
    if shard.index in manifest.shards_done:
        log.info("%s: shard %s finished already.", cfg.name, shard)
        return
    shard_lock = filelock.FileLock(str(item.out_dir.parent / f".{cfg.name}.shard{shard.index}.lock"))
    try:
        shard_lock.acquire(timeout=0)
    except filelock.Timeout:
        raise AttexpError(f"{item.out_dir}: another task is running shard {shard} of job {cfg.name!r}.") from None
    try:
        upstream = upstream_artifacts(cfg, base_dir)
        tracker = Tracker(WandbConfig(), job=cfg.job, name=cfg.name, config={}, base_dir=base_dir)
        ctx = JobContext(
            base_dir,
            item.out_dir,
            cfg,
            upstream,
            tracker,
            job_cls.schema.manifest(),
            resuming=True,
            rank=shard.index,
            world_size=shard.count,
            shard=shard,
        )
        log.info("running %s %s shard %s -> %s", cfg.job, cfg.name, shard, item.out_dir)
        started = time.perf_counter()
        seed_everything(cfg.seed + shard.index)  # per-shard seeds, as per-rank seeds under torchrun
        job_cls().run(cfg, ctx)
        seconds = time.perf_counter() - started
    finally:
        shard_lock.release()
    with _job_lock(item, base_dir):
        manifest = _manifest(item)
        for key in ctx.manifest.model_fields_set - {"counts"}:  # the stage's own fields, as the shard set them
            setattr(manifest, key, getattr(ctx.manifest, key))
        for key, value in ctx.counts.items():  # per-shard counts add up
            manifest.counts = {**manifest.counts, key: manifest.counts.get(key, 0) + value}
        manifest.shards_done = sorted(set(manifest.shards_done) | {shard.index})
        manifest.seconds = round((manifest.seconds or 0) + seconds, 3)
        write_json(item.out_dir / MANIFEST, manifest.to_json())
        log.info("%s: shard %s done (%d of %d)", cfg.name, shard, len(manifest.shards_done), shard.count)
        if len(manifest.shards_done) == shard.count:
            _complete(item, base_dir, manifest)


def _complete(item: Prepared, base_dir: Path, manifest) -> None:
    """Under the job's lock, every shard recorded: merge and mark finished (`attexp.runner.complete`)."""
    cfg = item.config
    job_cls = JOBS.get(cfg.job).cls
    tracker = Tracker(WandbConfig(), job=cfg.job, name=cfg.name, config={}, base_dir=base_dir)
    upstream = upstream_artifacts(cfg, base_dir)
    ctx = JobContext(base_dir, item.out_dir, cfg, upstream, tracker, manifest, rank=0, world_size=manifest.shards)
    complete(job_cls, ctx, 0.0, manifest.shards or 1)
    tracker.finish(0)
    log.info("%s: all %d shards done; merged and finished (%s)", cfg.name, manifest.shards, item.out_dir)
