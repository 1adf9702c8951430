"""Typed manifests: what every job's `manifest.json` holds, one model per stage, beside the record schemas.

A manifest is the provenance and status of one artifact folder (see `attexp.io.artifacts`). The fields every
stage writes are on `Manifest`; each stage's own run-level results (label names, the explainer, cost totals, ...)
are on its subclass, which its record schema names (`RecordSchema.manifest`), so that a reader gets the typed model
of the artifact it asked for (`Artifact.manifest`) and writers and readers spell a key in one place.

Manifests written by older versions of attexp still read: every field has a default that stands for "not
recorded", and keys this code does not know are kept as they are (`extra="allow"`), so a resumed job that
rewrites an older manifest loses nothing. Unknown keys are never read by attexp itself.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

COST_FIELDS = ("seconds", "forward_passes", "backward_passes")
"""The cost of one explanation record (`seconds` of wall time, model `forward_passes` and `backward_passes`), the
fields every explanation record carries; run-level totals and means are `ExplanationCost`."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", validate_assignment=True, protected_namespaces=())

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to disk (fields that were never set stay out, as older writers left them)."""
        return self.model_dump(mode="json", exclude_unset=True)


class SchemaRef(_Model):
    name: str
    version: int


class UpstreamRef(_Model):
    """An upstream artifact a job read: its stage, folder and config hash at the time."""

    job: str | None = None
    path: str | None = None
    config_hash: str | None = None


class FileEntry(_Model):
    """What a finished job's manifest says of one of its files: sha256 and, for JSON lines, the record count."""

    sha256: str
    records: int | None = None


class ModelFingerprint(_Model):
    """A classifier read from a model source: the source config and a sha256 of its files (None: not on disk)."""

    source: dict[str, Any] = Field(default_factory=dict)
    sha256: str | None = None


class Manifest(_Model):
    """Provenance and status of one job's folder: written "running" when the job starts, "finished" at its end.

    world_size: the number of processes that did the job's work (1 for a job that ran on rank 0 alone; a job
    array's task count for one run as an array, whose `shards` says so too).
    code_version: the job's `Job.version` (its code's version, which enters the config hash); None before it
    was recorded, which reads as version 1.
    """

    schema_: SchemaRef | None = Field(None, alias="schema")
    job: str | None = None
    name: str | None = None
    status: Literal["running", "finished"] | None = None
    config_hash: str | None = None
    code_version: int | None = None
    seed: int | None = None
    upstream: dict[str, UpstreamRef] = Field(default_factory=dict)
    versions: dict[str, str | None] = Field(default_factory=dict)
    git_revision: str | None = None
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None
    counts: dict[str, int] = Field(default_factory=dict)
    resumed: int = 0
    world_size: int | None = None
    shards: int | None = None  # a job array's task count (`--shard I/N`); None: not run as an array
    shards_done: list[int] = Field(default_factory=list)  # the array tasks that finished their shard
    models: dict[str, ModelFingerprint] = Field(default_factory=dict)
    files: dict[str, FileEntry] | None = None  # None: written before the content record (read as it is)
    plots: list[str] = Field(default_factory=list)  # PNGs of the folder, relative to it

    model_config = ConfigDict(populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)

    def __getitem__(self, key: str) -> Any:
        """The manifest as its JSON reads (`manifest["counts"]`), for code written against manifest.json; attexp's
        own code reads the typed fields (tests/test_layers.py checks it)."""
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)

    @property
    def is_finished(self) -> bool:
        return self.status == "finished"

    def file_entry(self, name: str) -> dict[str, Any] | None:
        """`files[name]` as written (None where the manifest does not list it)."""
        entry = (self.files or {}).get(name)
        return entry.model_dump(exclude_none=True) if entry is not None else None

    def upstream_of_stage(self, stage: str) -> list[str]:
        """Names of the upstream jobs of `stage` this job read, sorted."""
        return sorted(name for name, ref in self.upstream.items() if ref.job == stage)


class ExplanationCost(_Model):
    """An explain job's cost: per record field (`COST_FIELDS`) the total and the mean per instance."""

    instances: int = 0
    total_seconds: float | None = None
    seconds_per_instance: float | None = None
    total_forward_passes: float | None = None
    forward_passes_per_instance: float | None = None
    total_backward_passes: float | None = None
    backward_passes_per_instance: float | None = None

    @classmethod
    def of(cls, records: list[dict[str, Any]]) -> ExplanationCost:
        """Totals and per-instance means over explanation records (a record without a field counts 0)."""
        n = max(len(records), 1)
        values: dict[str, Any] = {"instances": len(records)}
        for key in COST_FIELDS:
            total = float(sum(r.get(key) or 0 for r in records))
            values[f"total_{key}"] = round(total, 4)
            values[f"{key}_per_instance"] = round(total / n, 6)
        return cls(**values)

    def per_instance(self) -> dict[str, float]:
        """{cost field: mean per instance}, for the fields recorded."""
        return {k: v for k in COST_FIELDS if (v := getattr(self, f"{k}_per_instance")) is not None}

    def __add__(self, other: ExplanationCost) -> ExplanationCost:
        """The cost of both jobs together (totals added, means over all their instances)."""
        instances = self.instances + other.instances
        values: dict[str, Any] = {"instances": instances}
        for key in COST_FIELDS:
            total = float(getattr(self, f"total_{key}") or 0) + float(getattr(other, f"total_{key}") or 0)
            values[f"total_{key}"] = round(total, 4)
            values[f"{key}_per_instance"] = round(total / max(instances, 1), 6)
        return ExplanationCost(**values)

    @property
    def total_passes(self) -> float:
        """Forward plus backward passes over every instance."""
        return float(self.total_forward_passes or 0) + float(self.total_backward_passes or 0)


class DatasetManifest(Manifest):
    label_names: list[str] | None = None
    source: str | None = None
    pairs: bool | None = None
    checks: dict[str, Any] = Field(default_factory=dict)
    label_counts_before_limit: dict[str, Any] = Field(default_factory=dict)


class ClassifierManifest(Manifest):
    label_names: list[str] | None = None
    device: str | None = None
    truncated: dict[str, int] | None = None
    best_epoch: int | None = None
    best_validation_f1: float | None = None
    test: dict[str, float] = Field(default_factory=dict)
    parameters: int | None = None
    adapter: dict[str, Any] | None = None  # a LoRA run: its settings, base and their sha256 (`attexp.train.lora`)


class ExplanationsManifest(Manifest):
    """explainer: the explainer's resolved config (its `type` names it). target: the explained class setting.
    model: the classifier explained: a train job's name or a model source's config (see `explained_model`)."""

    model: str | dict[str, Any] | None = None
    explainer: dict[str, Any] = Field(default_factory=dict)
    target: str | int | None = None
    split: str | None = None
    device: str | None = None
    label_names: list[str] | None = None
    truncated: int | dict[str, int] | None = None
    cost: ExplanationCost = Field(default_factory=ExplanationCost)
    teacher_cost: ExplanationCost | None = None  # a learned explainer's: what building it cost (its distill job's)

    @property
    def explainer_type(self) -> str | None:
        value = self.explainer.get("type")
        return str(value) if value is not None else None

    def explained_model(self) -> str | dict[str, Any] | None:
        """The classifier these explanations explain: a train job's name or a model source's config (None where
        the manifest does not say). Manifests written before `model` was recorded say it through the model source
        they fingerprinted (`models["model"]`) or their upstream train job."""
        if self.model is not None:
            return self.model
        if "model" in self.models and self.models["model"].source:
            return self.models["model"].source
        trains = self.upstream_of_stage("train")
        return trains[0] if trains else None


class EmpiricalExplainerManifest(Manifest):
    """teacher: the explainer config of the explanations it was distilled from; teacher_cost: the cost of those
    explanations (the training and validation explain jobs together)."""

    teacher: dict[str, Any] | None = None
    teacher_cost: ExplanationCost | None = None
    mode: str | None = None
    head: str | None = None
    device: str | None = None
    best_epoch: int | None = None
    best_validation_mse: float | None = None


class AgentManifest(Manifest):
    task: str | None = None
    victim: Any = None
    device: str | None = None
    episodes: int | None = None
    game_steps: int | None = None
    learn_steps: int | None = None
    training_seconds: float | None = None
    training_cpu_seconds: float | None = None
    stopped_by: str | None = None
    resumed_from_episode: int | None = None
    rewards_curve: list[Any] = Field(default_factory=list)
    final: dict[str, float] = Field(default_factory=dict)
    continued_from: dict[str, Any] | None = None
    learning_curve: list[dict[str, Any]] | None = None
    random_policy: dict[str, Any] | None = None
    heldout: int | None = None


class EvaluationManifest(Manifest):
    """results: per explanations file, its metric summary; beats_random: per file and column, whether it beat the
    random floor; evaluation_cost: the scorer's forward passes, rows and seconds."""

    reference: str | None = None
    model: Any = None
    results: dict[str, Any] = Field(default_factory=dict)
    beats_random: dict[str, Any] = Field(default_factory=dict)
    evaluation_cost: dict[str, Any] = Field(default_factory=dict)


class AnalysisManifest(Manifest):
    """head_pruning and triggers: model-level analyses with a table."""

    model_accuracy: float | None = None
    area: dict[str, Any] | None = None
    accuracy_per_class: Any = None


class PagesManifest(Manifest):
    """Jobs that draw pages (visualize, attribution trees, layer flow): the index page and what the pages show."""

    index: str | None = None
    summary: str | None = None
    evaluation: str | None = None
    label_names: list[str] | None = None
    notes: list[str] = Field(default_factory=list)
