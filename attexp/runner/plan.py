"""Decide what a plan's jobs will do, from the base directory as it is: run, resume, skip, or rerun (`--force`); a
refusal (a finished or partial job of another config, a changed model) is a ConfigError before anything is written.

The runner decides once for the whole plan before any job runs (`prepare`, also what `--dry-run` prints), and again
for each job under its lock (`decide`), since another run may have written the folder in between.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from attexp.config.hashing import hash_config
from attexp.config.loader import Plan
from attexp.config.schema import JobConfig
from attexp.config.upstream import classifier_sources, upstream_refs
from attexp.errors import AttexpError, ConfigError
from attexp.io.artifacts import MANIFEST, Artifact, cache_dir_of, find_artifact, job_dir, read_manifest
from attexp.io.manifests import Manifest, ModelFingerprint
from attexp.registry import JOBS, MODELS
from attexp.runner.job import Splits

log = logging.getLogger("attexp")


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
            # a source read without a label-words head records none (as before heads existed)
            source=source.model_dump(mode="json", exclude={"head"} if getattr(source, "head", None) is None else None),
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


def prepare(plan: Plan, base_dir: Path, force: bool = False, array: bool = False) -> list[Prepared]:
    """Decide for each job whether it runs, resumes or is skipped; refuse overwrites. Writes nothing.

    This is the early answer (for --dry-run, and to refuse before any job of a pipeline runs); each job is
    decided again under its lock (`attexp.runner.launch`), from its folder as it is then, since another run may
    have written it in between. `array`: for a task of a job array, every job not finished yet must split its
    instances (`Splits.INSTANCES`); the others are refused with the reason each declares and the command to run
    first.
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
    if array:
        jobs = {p.config.name: (p.stage, JOBS.get(p.stage).cls) for p in prepared if p.action != "skip"}
        blocking = {name: (stage, cls) for name, (stage, cls) in jobs.items() if cls.splits is not Splits.INSTANCES}
        if blocking:
            why = "\n".join(f"  {name!r} ({stage}): {cls.splits_because}" for name, (stage, cls) in blocking.items())
            raise ConfigError(
                f"{plan.source}: a job array runs only jobs that split their instances, and these have not finished "
                f"and cannot run as shards:\n{why}\nRun those jobs first without --shard (or put them in their own "
                f"config), then launch the array."
            )
    return prepared


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


def _upstream_names(cfg: JobConfig) -> list[str]:
    return list(dict.fromkeys(name for _, name, _ in upstream_refs(cfg)))
