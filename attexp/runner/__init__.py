"""Run a validated plan: for each job, claim its folder, record provenance, run the stage, mark it finished.

A stage is a `Job` subclass registered in `JOBS` with its config type. Its `run(config, ctx)` reads upstream
artifacts and writes its files through the `JobContext`; the runner owns everything around it, one story for every
launch mode (one process, torchrun ranks, an array task, merge only; `launch.Launch`):

- `plan`: before any work, for every job of the plan: a finished folder with the same config hash is reused
  (skipped); a finished one with a different config, or a partial one from a different config, is refused unless
  `--force` (ConfigError, exit 2); a job array refuses jobs that do not split their instances;
- `launch`: a file lock so two runs never write one folder; under it the runner decides again from the folder as it
  is then (another run may have finished or started the job since), so a run never overwrites or resumes what a run
  with another config wrote; `config.json` and a "running" manifest at the start (a rerun of a partial job of the
  same config resumes); the seed; the job's `run` on every process that takes part; its `finish` once every share
  is done; the manifest with counts, timing, the stage's own fields and status "finished" (atomic write);
- `job`: what a stage declares (`Job`: folder, schema, code version, how it splits, `Splits`) and what it may touch
  (`JobContext`: its folder, upstream artifacts, manifest, device, its share of the instances and their shard files).

The manifest is typed (`attexp.io.manifests`, one model per stage, named by the stage's record schema): a job sets its
own fields on `ctx.manifest` while it runs, and a downstream job reads them from `Artifact.manifest`.
"""

from attexp.runner.job import Job, JobContext, Splits
from attexp.runner.launch import LOCK_WAIT_SECONDS, Launch, complete, hold, run_plan, start_manifest
from attexp.runner.plan import Prepared, decide, job_hash, model_fingerprints, prepare, upstream_artifacts

__all__ = [
    "LOCK_WAIT_SECONDS",
    "Job",
    "JobContext",
    "Launch",
    "Prepared",
    "Splits",
    "complete",
    "decide",
    "hold",
    "job_hash",
    "model_fingerprints",
    "prepare",
    "run_plan",
    "start_manifest",
    "upstream_artifacts",
]
