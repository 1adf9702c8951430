"""Upstream references: the jobs a job names (`Upstream` fields), checked against the pipeline and the disk.

Each name must be a job earlier in the same pipeline or a finished artifact in the base directory, of a stage the
field accepts; the job is then asked whether it agrees with them (`JobConfig.check_upstream_jobs`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from attexp.config.build import join
from attexp.config.schema import JobConfig, Upstream, UpstreamJob, marker
from attexp.errors import did_you_mean
from attexp.io.artifacts import CONFIG, find_artifact, names_on_disk


def upstream_refs(obj: BaseModel, loc: str = "") -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (dotted location, job name, accepted stages) an object names through `Upstream` fields."""
    refs = []
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        here = join(loc, name)
        upstream = marker(info.metadata, Upstream)
        if upstream is not None and value is not None and not isinstance(value, BaseModel):
            if isinstance(value, str):
                refs.append((here, value, upstream.stages))
            elif isinstance(value, Mapping):
                refs += [(join(here, k), v, upstream.stages) for k, v in value.items()]
            else:
                refs += [(join(here, i), v, upstream.stages) for i, v in enumerate(value)]
        elif isinstance(value, BaseModel):
            refs += upstream_refs(value, here)
        elif isinstance(value, list | tuple):
            refs += [
                r for i, v in enumerate(value) if isinstance(v, BaseModel) for r in upstream_refs(v, join(here, i))
            ]
    return refs


def classifier_sources(obj: BaseModel) -> list[tuple[str, BaseModel]]:
    """Every (field name, model source config) a job config reads a classifier from directly (a `ClassifierRef`
    field given a model source rather than a train job's name)."""
    found = []
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        if isinstance(value, BaseModel) and marker(info.metadata, Upstream) is not None:
            found.append((name, value))
    return found


def _raw_name(item: Any) -> tuple[str | None, str | None]:
    """(name, stage) of a job object that did not validate, as far as it says."""
    if not isinstance(item, dict):
        return None, None
    name, stage = item.get("name"), item.get("job")
    return (name if isinstance(name, str) else None), (stage if isinstance(stage, str) else None)


def check_upstream_refs(
    plan: Any, built: list[tuple[str, JobConfig | None, Any]], base_dir: Path, errors: list[str]
) -> None:
    earlier: dict[str, str] = {}  # name -> stage, of jobs before the current one
    configs: dict[str, dict] = {}  # name -> resolved config, of jobs before the current one that validated
    broken: set[str] = set()  # earlier jobs that did not validate: their own errors are reported already
    all_names = {(job.name if job else _raw_name(item)[0]) for _, job, item in built} - {None}
    for loc, job, item in built:
        if job is None:
            name, stage = _raw_name(item)
            if name is not None:
                broken.add(name)
                earlier[name] = stage or "?"
            continue
        sources: dict[str, str] = {}
        seen: dict[str, UpstreamJob] = {}
        for where, name, stages in upstream_refs(job, loc):
            where = where or "(top level)"
            if name in broken:
                continue
            if name == job.name:
                errors.append(
                    f"{where}: {name!r} is this job itself; name another job (a job cannot read its own output)."
                )
                continue
            if name in earlier:
                stage, origin = earlier[name], "pipeline"
                if name in configs:
                    seen[name] = UpstreamJob(configs[name])
            elif name in all_names:
                errors.append(f"{where}: {name!r} given, but that job runs later in this pipeline; move it earlier.")
                continue
            else:
                artifact = find_artifact(base_dir, name)
                if artifact is None:
                    known = list(earlier) + names_on_disk(base_dir)
                    errors.append(
                        f"{where}: unknown upstream job {name!r}: no earlier job in this config and no artifact in "
                        f"{base_dir}. Known: {', '.join(known) or 'none'}.{did_you_mean(name, known)} "
                        f"Run that job first or put it earlier in a pipeline."
                    )
                    continue
                if not artifact.finished:
                    errors.append(f"{where}: upstream job {name!r} at {artifact.dir} has not finished; rerun it first.")
                    continue
                stage, origin = artifact.stage, str(artifact.dir)
                seen[name] = UpstreamJob(config_of(artifact.dir), artifact.dir)
            if stage not in stages:
                errors.append(f"{where}: {name!r} is a {stage} job; allowed here: a {' or '.join(stages)} job.")
                seen.pop(name, None)
                continue
            sources[name] = origin
        errors += [f"{loc or '(top level)'}: {problem}" for problem in job.check_upstream_jobs(seen)]
        plan.upstream[job.name] = sources
        earlier[job.name] = job.job
        configs[job.name] = job.model_dump(mode="json")


def config_of(folder: Path) -> dict:
    """A finished artifact's resolved config (`config.json`); {} where it has none that reads (made by hand)."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}
