"""Which architectures the inside-the-model explainers and analyses read, checked before anything runs.

An explainer or a job that reads the inside of a model declares the `model_type`s it supports (`architectures`);
this plan check (registered with `attexp.registry.checks_plans`, run by the config loader with its own checks)
reads the `model_type` of every classifier a job names, from a `config.json` without loading or fetching anything,
and refuses the config (exit 2, nothing written) where a job or explainer would not support it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from attexp.config.build import join
from attexp.config.schema import JobConfig, Registered, marker
from attexp.io.artifacts import cache_dir_of, find_artifact
from attexp.models.inputs import max_length_problem
from attexp.models.layouts import LAYOUTS, layout_of_type
from attexp.models.sources import read_model_config
from attexp.registry import EXPLAINERS, JOBS, MODELS, checks_plans


@checks_plans
def check_architectures(plan: Any, built: list[tuple[str, JobConfig | None, Any]], base_dir: Path) -> list[str]:
    """Every classifier a job reads, before anything runs: a model source must be usable as far as can be seen
    (a local folder with a config.json), and its architecture (`model_type`) must be one that each explainer and
    analysis of the job supports, and the job's `max_length` must fit its `max_position_embeddings`. Both are read
    from a config.json without loading or fetching
    anything: a local folder, the hub cache, an upstream train job's model source or finished artifact; where
    none can be read (a hub model never downloaded) the check is left to the job."""
    errors: list[str] = []
    cache = cache_dir_of(base_dir)
    trained: dict[str, Any] = {}  # train jobs of this pipeline -> their model source
    for loc, job, _ in built:
        if job is None:
            continue
        if job.job == "train":
            trained[job.name] = getattr(job, "model", None)
        users = _architecture_users(job, loc)
        for name, info in type(job).model_fields.items():
            registered = marker(info.metadata, Registered)
            ref = getattr(job, name)
            if registered is None or registered.kind != "model source" or ref is None or job.job == "train":
                continue
            where = join(loc, name)
            if isinstance(ref, BaseModel):
                source = MODELS.get(ref.type).cls(ref)
                problem = source.problem(root=base_dir)
                if problem:
                    errors.append(f"{where}: {problem}")
                    continue
                config, what = source.model_config(cache, root=base_dir), f"the {ref.type} model"
            elif ref in trained:
                source = trained[ref]
                config = MODELS.get(source.type).cls(source).model_config(cache, root=base_dir)
                what = f"train job {ref!r}'s model ({source.type})"
            else:
                artifact = find_artifact(base_dir, ref)
                config = read_model_config(artifact.dir / "model") if artifact is not None else None
                what = f"train job {ref!r}'s model"
            config = config or {}
            problem = max_length_problem(getattr(job, "max_length", None), config, f"{what} ({where})")
            if problem:
                errors.append(f"{join(loc, 'max_length')}: {problem}.")
            model_type = config.get("model_type")
            if not model_type:
                continue
            for user_loc, user, cls in users:
                if model_type not in cls.architectures:
                    errors.append(_unsupported(user_loc, user, model_type, what, where, cls))
    return errors


def _architecture_users(job: BaseModel, loc: str) -> list[tuple[str, str, Any]]:
    """(location, description, class) of the job itself and of its explainers, where their architectures are
    limited."""
    users = []
    job_cls = JOBS.get(job.job).cls
    if getattr(job_cls, "architectures", None) is not None:
        users.append((loc or "(top level)", f"job {job.job!r}", job_cls))
    for name, info in type(job).model_fields.items():
        registered = marker(info.metadata, Registered)
        value = getattr(job, name)
        if registered is None or registered.kind != "explainer" or value is None:
            continue
        for i, component in enumerate(value if isinstance(value, list) else [value]):
            cls = EXPLAINERS.get(component.type).cls
            here = join(loc, name) if not isinstance(value, list) else join(join(loc, name), i)
            if getattr(cls, "architectures", None) is not None:
                users.append((here, f"explainer {component.type!r}", cls))
    return users


def _unsupported(loc: str, user: str, model_type: str, what: str, where: str, cls: Any) -> str:
    working = [
        name
        for name in EXPLAINERS.names()
        if (limited := getattr(EXPLAINERS.get(name).cls, "architectures", None)) is None or model_type in limited
    ]
    layout = layout_of_type(model_type)
    known = f"the {layout.name} layout" if layout is not None else "no layout attexp reads inside"
    why = f" ({cls.architecture_note})" if getattr(cls, "architecture_note", "") and layout is not None else ""
    return (
        f"{loc}: {user} does not support {what} ({where}), a {model_type!r} model ({known}){why}: it supports "
        f"model_type {', '.join(sorted(cls.architectures))}. Explainers that work on {model_type!r}: "
        f"{', '.join(working)}. Use one of them, or a model of a supported architecture."
    )


def architecture_table() -> str:
    """The README's architecture table, from the registries: per layout of `attexp.models.layouts.LAYOUTS`, which
    explainers and jobs that read the inside of a model run on it (the others run on any classifier), and why the
    refused ones are refused (their `architecture_note`). tests/test_readme.py keeps the README equal to it."""
    users = [(f"`{name}`", EXPLAINERS.get(name).cls) for name in EXPLAINERS.names()]
    users += [(f"`{name}` job", JOBS.get(name).cls) for name in JOBS.names()]
    users = [(label, cls) for label, cls in users if getattr(cls, "architectures", None) is not None]
    notes: list[str] = []
    lines = [
        "| layout (`model_type`) | " + " | ".join(label for label, _ in users) + " |",
        "|---|" + "---|" * len(users),
    ]
    for layout in LAYOUTS:
        cells = []
        for _, cls in users:
            if layout.model_types <= cls.architectures:
                cells.append("✔")
                continue
            note = cls.architecture_note or "not supported"
            if note not in notes:
                notes.append(note)
            cells.append(f"refused ({notes.index(note) + 1})")
        types = ", ".join(sorted(layout.model_types))
        lines.append(f"| {layout.name} ({types}) | " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"({i}) {note}." for i, note in enumerate(notes, start=1))
    return "\n".join(lines)
