"""Load a config: evaluate jsonnet, apply overrides, validate strictly into typed job configs.

Every problem found is reported at once, one line each, naming the file, the dotted key, what was given
and what is allowed (with a did-you-mean), as a `ConfigError`: the CLI prints it and exits with code 2
before any work. The order of operations:

1. jsonnet evaluation with external variables (the environment, then `--ext-var k=v`, which wins);
2. overrides (`--override a.b=v`, `--a.b=v`) on the evaluated JSON, values parsed as JSON when they parse;
3. the shape: a job `{"job": ...}` or a pipeline `{"jobs": [...]}`;
4. each job against its registered config type; components (`Registered` fields) against theirs;
5. upstream references (`Upstream` fields): an earlier job of the pipeline or a finished artifact in the
   base directory, of an accepted stage, that the job agrees with (`JobConfig.check_upstream_jobs`);
6. the plan checks that packages above this layer register (`attexp.registry.PLAN_CHECKS`): the classifiers'
   architectures against the explainers and analyses that read them (`attexp.models.architectures`).

Steps 1-2 are `attexp.config.jsonnet`, 4 is `attexp.config.build`, 5 is `attexp.config.upstream`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attexp import registry
from attexp.config.build import build_job
from attexp.config.jsonnet import apply_overrides, evaluate_jsonnet
from attexp.config.schema import JobConfig
from attexp.config.upstream import check_upstream_refs
from attexp.errors import ConfigError


@dataclass
class Plan:
    """What a config asks for: jobs in order, each validated, plus where each upstream name comes from."""

    source: str
    jobs: list[JobConfig]
    raw: dict[str, Any]
    # job name -> {upstream name: "pipeline" | path of the finished artifact}
    upstream: dict[str, dict[str, str]] = field(default_factory=dict)


def load_config(
    path: Path | str,
    *,
    base_dir: Path,
    ext_vars: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    check_upstream: bool = True,
) -> Plan:
    """Evaluate, override and validate a config file. Raises ConfigError listing every problem."""
    source = str(path)
    raw = apply_overrides(evaluate_jsonnet(Path(path), ext_vars), overrides, source)
    return validate(raw, source=source, base_dir=base_dir, check_upstream=check_upstream)


def validate(raw: dict, *, source: str, base_dir: Path, check_upstream: bool = True) -> Plan:
    errors: list[str] = []
    if "jobs" in raw:
        extra = sorted(set(raw) - {"jobs"})
        if extra:
            errors.append(f"{extra[0]}: unknown key in a pipeline (given: {raw[extra[0]]!r}). Allowed keys: jobs.")
        items = raw["jobs"]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{source}:\n  jobs: expected a non-empty list of jobs, got {items!r}.")
        located = [(f"jobs[{i}]", item) for i, item in enumerate(items)]
    elif "job" in raw:
        located = [("", raw)]
    else:
        raise ConfigError(
            f"{source}:\n  (top level): missing key 'job' (a single job) or 'jobs' (a pipeline). "
            f"Given keys: {', '.join(sorted(raw)) or 'none'}. Allowed jobs: {', '.join(registry.JOBS.names())}."
        )

    # Every problem at once: jobs that failed to validate are left out of the later checks (which would only
    # repeat their errors), and the jobs that did validate are still checked against each other and the disk.
    built: list[tuple[str, JobConfig | None, Any]] = []
    for loc, item in located:
        built.append((loc, build_job(item, loc, errors), item))
    jobs = [job for _, job, _ in built if job is not None]
    plan = Plan(source=source, jobs=jobs, raw=raw)
    seen: dict[str, str] = {}
    for loc, job, _ in built:
        if job is None:
            continue
        if job.name in seen:
            errors.append(f"{loc}.name: duplicate job name {job.name!r} (also {seen[job.name]}).")
        seen.setdefault(job.name, loc or "(top level)")
    if check_upstream:
        check_upstream_refs(plan, built, base_dir, errors)
        for check in registry.plan_checks():  # e.g. architectures (attexp.models.architectures)
            errors += check(plan, built, base_dir)
    if errors:
        raise ConfigError(f"{source}: {len(errors)} problem(s):\n" + "\n".join(f"  {e}" for e in errors))
    return plan
