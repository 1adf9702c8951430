"""Load a config: evaluate jsonnet, apply overrides, validate strictly into typed job configs.

Every problem found is reported at once, one line each, naming the file, the dotted key, what was given
and what is allowed (with a did-you-mean), as a `ConfigError`: the CLI prints it and exits with code 2
before any work. The order of operations:

1. jsonnet evaluation with external variables (the environment, then `--ext-var k=v`, which wins);
2. overrides (`--override a.b=v`, `--a.b=v`) on the evaluated JSON, values parsed as JSON when they parse;
3. the shape: a job `{"job": ...}` or a pipeline `{"jobs": [...]}`;
4. each job against its registered config type; components (`Registered` fields) against theirs;
5. upstream references (`Upstream` fields): an earlier job of the pipeline or a finished artifact in the
   base directory, of an accepted stage, that the job agrees with (`JobConfig.check_upstream_jobs`).
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _jsonnet
from pydantic import BaseModel, ValidationError

from attexp import registry
from attexp.config.schema import JobConfig, Registered, Upstream, UpstreamJob
from attexp.errors import ConfigError, did_you_mean
from attexp.io.artifacts import CONFIG, cache_dir_of, find_artifact

_REGISTRIES = {
    "explainer": registry.EXPLAINERS,
    "metric": registry.METRICS,
    "data source": registry.SOURCES,
    "model source": registry.MODELS,
}


@dataclass
class Plan:
    """What a config asks for: jobs in order, each validated, plus where each upstream name comes from."""

    source: str
    jobs: list[JobConfig]
    raw: dict[str, Any]
    # job name -> {upstream name: "pipeline" | path of the finished artifact}
    upstream: dict[str, dict[str, str]] = field(default_factory=dict)


def evaluate_jsonnet(path: Path, ext_vars: Mapping[str, str] | None = None) -> dict:
    """Evaluate a jsonnet (or JSON) file to a dict.

    External variables: every environment variable, `wandb_run_id` (the sweep run's id, empty outside a wandb
    sweep, so a sweep config can give each run its own job name), `standin` (empty unless set: the paper
    reproductions of configs/papers/ run on their offline stand-in with `--ext-var standin=tiny|minilm`), then
    `ext_vars`, which win.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found. Pass a path to a .jsonnet file (see configs/).")
    variables = {"wandb_run_id": os.environ.get("WANDB_RUN_ID", ""), "standin": "", **os.environ}
    variables.update(ext_vars or {})
    try:
        text = _jsonnet.evaluate_file(str(path), ext_vars=variables)
    except RuntimeError as e:
        raise ConfigError(f"{path}: jsonnet evaluation failed:\n{str(e).strip()}") from None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must evaluate to an object, got {type(data).__name__}.")
    return data


def parse_value(text: str) -> Any:
    """An override value: JSON when it parses (`3`, `true`, `[1,2]`, `"x"`), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict, overrides: Sequence[str], source: str) -> dict:
    """Apply `a.b.c=value` overrides; list elements are addressed by index (`jobs.1.epochs=2`)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} is not of the form key.path=value.")
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                node = node[_index(part, node, where, source)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(f"{source}: override {key!r}: {where} is a {type(node).__name__}, not an object.")
        last = parts[-1]
        if isinstance(node, list):
            node[_index(last, node, key, source)] = parse_value(value)
        elif isinstance(node, dict):
            node[last] = parse_value(value)
        else:
            raise ConfigError(f"{source}: override {key!r}: the parent is a {type(node).__name__}, not an object.")
    return data


def _index(part: str, node: list, where: str, source: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{source}: override at {where!r}: index {part!r} given; allowed: 0..{len(node) - 1}.")
    return int(part)


def load_config(
    path: Path | str,
    *,
    base_dir: Path,
    ext_vars: Mapping[str, str] | None = None,
    overrides: Sequence[str] = (),
    check_upstream: bool = True,
) -> Plan:
    """Evaluate, override and validate a config file. Raises ConfigError listing every problem."""
    registry.load_all()
    source = str(path)
    raw = apply_overrides(evaluate_jsonnet(Path(path), ext_vars), overrides, source)
    return validate(raw, source=source, base_dir=base_dir, check_upstream=check_upstream)


def validate(raw: dict, *, source: str, base_dir: Path, check_upstream: bool = True) -> Plan:
    registry.load_all()
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
        built.append((loc, _build_job(item, loc, errors), item))
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
        _check_upstream(plan, built, base_dir, errors)
        _check_models(plan, built, base_dir, errors)
    if errors:
        raise ConfigError(f"{source}: {len(errors)} problem(s):\n" + "\n".join(f"  {e}" for e in errors))
    return plan


def validate_object(cls: type[BaseModel], data: dict, source: str) -> Any:
    """`data` validated into `cls` as the loader validates a job (registered components built, every problem
    listed with its key, what was given, what is allowed and a did-you-mean); raises ConfigError. For Python
    callers (`attexp.api`), who get the same messages as a config file's author."""
    registry.load_all()
    errors: list[str] = []
    built = _build(cls, data, "", errors)
    if errors or built is None:
        raise ConfigError(f"{source}: {len(errors)} problem(s):\n" + "\n".join(f"  {e}" for e in errors))
    return built


def _join(loc: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{loc}[{key}]"
    return f"{loc}.{key}" if loc else str(key)


def _build_job(item: Any, loc: str, errors: list[str]) -> JobConfig | None:
    where = loc or "(top level)"
    if not isinstance(item, dict):
        errors.append(f"{where}: expected a job object, got {item!r}.")
        return None
    if "job" not in item:
        errors.append(f"{_join(loc, 'job')}: missing key 'job'. Allowed: {', '.join(registry.JOBS.names())}.")
        return None
    try:
        entry = registry.JOBS.get(item["job"], where=_join(loc, "job"))
    except ConfigError as e:
        errors.append(str(e))
        return None
    return _build(entry.config_type, item, loc, errors)


def _build(cls: type[BaseModel], data: Any, loc: str, errors: list[str]) -> Any:
    """Validate `data` against `cls`, building `Registered` components first. Appends errors, returns None."""
    if not isinstance(data, dict):
        errors.append(f"{loc or '(top level)'}: expected an object, got {data!r}.")
        return None
    data = dict(data)
    failed: list[str] = []  # fields whose component did not validate
    for name, info in cls.model_fields.items():
        marker = _marker(info.metadata, Registered)
        if marker is None or name not in data or data[name] is None:
            continue
        reg = _REGISTRIES[marker.kind]
        value = data[name]
        if isinstance(value, str) and _marker(info.metadata, Upstream) is not None:
            continue  # the field takes an upstream job's name or a component; this is a name
        before = len(errors)
        if isinstance(value, list):
            data[name] = [
                _build_component(reg, v, _join(_join(loc, name), i), errors, marker.only) for i, v in enumerate(value)
            ]
        else:
            data[name] = _build_component(reg, value, _join(loc, name), errors, marker.only)
        if len(errors) > before:
            failed.append(name)
    if failed:  # still report the problems of the other fields, in the same run
        rest = {k: v for k, v in data.items() if k not in failed}
        try:
            cls.model_validate(rest)
        except ValidationError as e:
            errors.extend(line for line in _describe(e, cls, loc) if not _about(line, loc, failed))
        except ConfigError:
            pass  # a cross-field check that needs the failed component; reported once that is fixed
        return None
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        errors.extend(_describe(e, cls, loc))
        return None
    except ConfigError as e:  # a validator's check that Python callers get as a ConfigError too
        errors.append(f"{loc or '(top level)'}: {e}")
        return None


def _about(line: str, loc: str, fields: list[str]) -> bool:
    """Whether an error line is about one of `fields` of the object at `loc` (left out above, so 'missing')."""
    return any(line.startswith(_join(loc, name) + ":") or line.startswith(_join(loc, name) + ".") for name in fields)


def _build_component(reg: registry.Registry, value: Any, loc: str, errors: list[str], only: Sequence[str] = ()) -> Any:
    if isinstance(value, BaseModel):
        return value
    allowed = list(only) or reg.names()
    if not isinstance(value, dict) or "type" not in value:
        name_too = " (or the name of an upstream train job)" if only else ""
        errors.append(
            f"{loc}: expected an object with a 'type' key{name_too}, given {value!r}. Allowed types: "
            f"{', '.join(allowed)}."
        )
        return None
    try:
        entry = reg.get(value["type"], where=_join(loc, "type"))
    except ConfigError as e:
        errors.append(str(e))
        return None
    if only and value["type"] not in only:
        errors.append(
            f"{_join(loc, 'type')}: {value['type']!r} given; allowed here: {', '.join(only)}. A "
            f"{value['type']!r} model is not trained: train it in a train job and name that job here."
        )
        return None
    return _build(entry.config_type, value, loc, errors)


def _marker(metadata: list, kind: type) -> Any:
    return next((m for m in metadata if isinstance(m, kind)), None)


def _model_at(cls: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model class whose field the last element of `path` names (for listing allowed keys)."""
    current: Any = cls
    for part in path:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap_model(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _unwrap_model(arg)
        if found is not None:
            return found
    return None


def _describe(error: ValidationError, cls: type[BaseModel], loc: str) -> list[str]:
    lines = []
    for e in error.errors():
        path = tuple(e["loc"])
        dotted = loc
        for part in path:
            dotted = _join(dotted, part)
        model = _model_at(cls, path[:-1])
        allowed = sorted(model.model_fields) if model else []
        key = path[-1] if path else ""
        if e["type"] == "extra_forbidden":
            lines.append(
                f"{dotted}: unknown key {key!r} (given: {e['input']!r}). Allowed keys: {', '.join(allowed)}."
                f"{did_you_mean(str(key), allowed)}"
            )
        elif e["type"] == "missing":
            lines.append(f"{dotted}: missing key {key!r} (required). Allowed keys: {', '.join(allowed)}.")
        elif e["type"] == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip()]
            lines.append(
                f"{dotted}: {e['input']!r} given; allowed: {expected}.{did_you_mean(str(e['input']), choices)}"
            )
        elif e["type"] == "value_error":  # a validator's own message; a whole object given is not repeated
            message = e["msg"].rstrip(".")
            given = "" if isinstance(e["input"], dict) else f" (given: {e['input']!r})"
            lines.append(f"{dotted or '(top level)'}: {message}{given}.")
        else:
            lines.append(f"{dotted}: {e['msg']} (given: {e['input']!r}).")
    return lines


def upstream_refs(obj: BaseModel, loc: str = "") -> list[tuple[str, str, tuple[str, ...]]]:
    """Every (dotted location, job name, accepted stages) an object names through `Upstream` fields."""
    refs = []
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        here = _join(loc, name)
        marker = _marker(info.metadata, Upstream)
        if marker is not None and value is not None and not isinstance(value, BaseModel):
            if isinstance(value, str):
                refs.append((here, value, marker.stages))
            elif isinstance(value, Mapping):
                refs += [(_join(here, k), v, marker.stages) for k, v in value.items()]
            else:
                refs += [(_join(here, i), v, marker.stages) for i, v in enumerate(value)]
        elif isinstance(value, BaseModel):
            refs += upstream_refs(value, here)
        elif isinstance(value, list | tuple):
            refs += [
                r for i, v in enumerate(value) if isinstance(v, BaseModel) for r in upstream_refs(v, _join(here, i))
            ]
    return refs


def classifier_sources(obj: BaseModel) -> list[tuple[str, BaseModel]]:
    """Every (field name, model source config) a job config reads a classifier from directly (a `ClassifierRef`
    field given a model source rather than a train job's name)."""
    found = []
    for name, info in type(obj).model_fields.items():
        value = getattr(obj, name)
        if isinstance(value, BaseModel) and _marker(info.metadata, Upstream) is not None:
            found.append((name, value))
    return found


def _raw_name(item: Any) -> tuple[str | None, str | None]:
    """(name, stage) of a job object that did not validate, as far as it says."""
    if not isinstance(item, dict):
        return None, None
    name, stage = item.get("name"), item.get("job")
    return (name if isinstance(name, str) else None), (stage if isinstance(stage, str) else None)


def _check_upstream(
    plan: Plan, built: list[tuple[str, JobConfig | None, Any]], base_dir: Path, errors: list[str]
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
                    known = list(earlier) + _names_on_disk(base_dir)
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
                seen[name] = UpstreamJob(_config_of(artifact.dir), artifact.dir)
            if stage not in stages:
                errors.append(f"{where}: {name!r} is a {stage} job; allowed here: a {' or '.join(stages)} job.")
                seen.pop(name, None)
                continue
            sources[name] = origin
        errors += [f"{loc or '(top level)'}: {problem}" for problem in job.check_upstream_jobs(seen)]
        plan.upstream[job.name] = sources
        earlier[job.name] = job.job
        configs[job.name] = job.model_dump(mode="json")


def _config_of(folder: Path) -> dict:
    """A finished artifact's resolved config (`config.json`); {} where it has none that reads (made by hand)."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _check_models(
    plan: Plan, built: list[tuple[str, JobConfig | None, Any]], base_dir: Path, errors: list[str]
) -> None:
    """Every classifier a job reads, before anything runs: a model source must be usable as far as can be seen
    (a local folder with a config.json), and its architecture (`model_type`) must be one that each explainer and
    analysis of the job supports. The architecture is read from a config.json without loading or fetching
    anything: a local folder, the hub cache, an upstream train job's model source or finished artifact; where
    none can be read (a hub model never downloaded) the check is left to the job."""
    cache = cache_dir_of(base_dir)
    trained: dict[str, Any] = {}  # train jobs of this pipeline -> their model source
    for loc, job, _ in built:
        if job is None:
            continue
        if job.job == "train":
            trained[job.name] = getattr(job, "model", None)
        users = _architecture_users(job, loc)
        for name, info in type(job).model_fields.items():
            marker = _marker(info.metadata, Registered)
            ref = getattr(job, name)
            if marker is None or marker.kind != "model source" or ref is None or job.job == "train":
                continue
            where = _join(loc, name)
            if isinstance(ref, BaseModel):
                source = registry.MODELS.get(ref.type).cls(ref)
                problem = source.problem(root=base_dir)
                if problem:
                    errors.append(f"{where}: {problem}")
                    continue
                model_type, what = source.model_type(cache, root=base_dir), f"the {ref.type} model"
            elif ref in trained:
                source = trained[ref]
                model_type = registry.MODELS.get(source.type).cls(source).model_type(cache, root=base_dir)
                what = f"train job {ref!r}'s model ({source.type})"
            else:
                artifact = find_artifact(base_dir, ref)
                model_type = _model_type_in(artifact.dir / "model") if artifact is not None else None
                what = f"train job {ref!r}'s model"
            if model_type is None:
                continue
            for user_loc, user, supported in users:
                if model_type not in supported:
                    errors.append(_unsupported(user_loc, user, model_type, what, where, supported))


def _architecture_users(job: BaseModel, loc: str) -> list[tuple[str, str, frozenset[str]]]:
    """(location, description, supported model_types) of the job itself and of its explainers, where limited."""
    users = []
    job_cls = registry.JOBS.get(job.job).cls
    if getattr(job_cls, "architectures", None) is not None:
        users.append((loc or "(top level)", f"job {job.job!r}", job_cls.architectures))
    for name, info in type(job).model_fields.items():
        marker = _marker(info.metadata, Registered)
        value = getattr(job, name)
        if marker is None or marker.kind != "explainer" or value is None:
            continue
        for i, component in enumerate(value if isinstance(value, list) else [value]):
            limited = getattr(registry.EXPLAINERS.get(component.type).cls, "architectures", None)
            here = _join(loc, name) if not isinstance(value, list) else _join(_join(loc, name), i)
            if limited is not None:
                users.append((here, f"explainer {component.type!r}", limited))
    return users


def _unsupported(loc: str, user: str, model_type: str, what: str, where: str, supported: frozenset[str]) -> str:
    working = [
        name
        for name in registry.EXPLAINERS.names()
        if (limited := getattr(registry.EXPLAINERS.get(name).cls, "architectures", None)) is None
        or model_type in limited
    ]
    return (
        f"{loc}: {user} does not support {what} ({where}), a {model_type!r} model: it reads the inside of the "
        f"BERT-family layout, model_type {', '.join(sorted(supported))}. Explainers that work on {model_type!r}: "
        f"{', '.join(working)}. Use one of them, or a model of a supported architecture."
    )


def _model_type_in(folder: Path) -> str | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data["model_type"]) if isinstance(data, dict) and data.get("model_type") else None


def _names_on_disk(base_dir: Path) -> list[str]:
    from attexp.io.artifacts import MANIFEST, stage_folders

    names = []
    for folder in sorted(set(stage_folders().values())):
        root = Path(base_dir) / folder
        if root.is_dir():
            names += sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))
    return names
