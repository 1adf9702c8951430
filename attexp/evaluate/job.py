"""The evaluate stage: score explanation files with registered metrics, against a reference or the model.

`explanations` names explain jobs (one table row each); `reference` names the explain job they are compared
with (e.g. the expensive explainer an empirical explainer imitates). Records are joined by `idx`.

Faithfulness metrics (`eraser`, `ferret_aopc`, `degradation`, `tau_loo`, `log_odds`; see
`attexp.evaluate.faithfulness` and `attexp.evaluate.ferret_metrics`) run the explained classifier on perturbed
inputs. Which classifier:

- `model` names it explicitly: a train job (validated before any work like every upstream reference, and
  recorded with its config hash in the manifest) or a model source (`hub`, `local`, `packaged`).
- Left out, it is the classifier the explain jobs read (from their configs: a train job or a model source), so
  evaluate configs written before the faithfulness metrics keep working. The explain jobs must then agree on one.
In both forms an explanations file of another model is refused: the faithfulness of an explanation is a
statement about the model it explained.

The random floor: unless one of `explanations` already is a `random` explain job, `random_floor` adds a row
`random-floor` with seeded uniform random scores (`attexp.explain.baseline.random_scores`) on the instances of
the first explanations file (its predictions, zero cost), scored by every metric, so each table shows what
knowing nothing achieves. Every other row is then tested against that floor on each faithfulness column
(`attexp.evaluate.report.versus_floor`: one-sided paired Wilcoxon signed-rank test over instances), and
`table.md` states, per column, which explainers beat random and which do not.

Output (`logs/<name>/`): `metrics.json` (summary per explanation file and metric, the table as columns and
rows, the mean curves and the cost of the evaluation itself), `instances.jsonl` (per-instance values),
`table.md` (explainers as rows, metrics and cost as columns, means only; also printed to the log) and `plots/*.png`
(deletion curves per explainer, metric against cost); the table and the plots also go to wandb when enabled.

Data-parallel: under torchrun every rank, in a job array every task (`--shard I/N`), runs the model-reading metrics
on its share of the instances; the process that finishes the job scores every instance from the shares' rows
(`attexp.evaluate.shares`), so the outputs are those of one process.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, SerializeAsAny, model_validator

from attexp.config.schema import (
    ComponentConfig,
    JobConfig,
    NeutralDefault,
    OptionalClassifierRef,
    PaperNumbers,
    Registered,
    Upstream,
)
from attexp.errors import AttexpError
from attexp.evaluate import shares
from attexp.evaluate.base import Metric
from attexp.evaluate.metric_table import Run, score_runs, with_floor
from attexp.evaluate.model_scorer import ModelScorer
from attexp.evaluate.report import paper_comparison, paper_report
from attexp.io.artifacts import Artifact, find_artifact
from attexp.io.files import atomic_write_text, write_json, write_jsonl
from attexp.io.records import EVALUATION, EXPLANATIONS
from attexp.models.loading import load_classifier
from attexp.models.precision import Precision
from attexp.registry import JOBS, METRICS, MODELS
from attexp.runner import Job, JobContext, Splits

log = logging.getLogger(__name__)
EXPLANATION_FIELDS = ("idx", "input_ids", "label", "predictions", "attributions")


class EvaluateConfig(JobConfig):
    """Score the explanation files of `explanations` with `metrics`.

    model: the classifier the faithfulness metrics run, a train job's name or a model source (default: the one
    the explain jobs read). deletion_model: a train job that continued that classifier (`model: {type: 'trained',
    job: ...}`) with `mask_augment`; the metrics then run the copy while the explanations stay the original's (the
    F-Fidelity protocol, `attexp.train.augment`). batch_size: perturbed inputs per forward pass of those metrics.
    random_floor: add a `random-floor` row of seeded random scores (see the module docstring). plots: write PNG
    plots.
    """

    job: Literal["evaluate"] = "evaluate"
    explanations: Annotated[list[str], Upstream(("explain",))] = Field(min_length=1)
    reference: Annotated[str | None, Upstream(("explain",))] = None
    model: OptionalClassifierRef = None
    metrics: Annotated[list[SerializeAsAny[ComponentConfig]], Registered("metric")] = Field(min_length=1)
    batch_size: int = Field(64, ge=1, description="perturbed inputs per forward pass (faithfulness metrics)")
    random_floor: bool = Field(True, description="add a row of random scores as the floor of every metric")
    plots: bool = Field(True, description="write plots/*.png (and log them to wandb when enabled)")
    paper: Annotated[PaperNumbers | None, NeutralDefault()] = Field(
        None, description="a paper's numbers for this table, shown beside the measured"
    )
    precision: Annotated[Precision | None, NeutralDefault()] = Field(
        None, description="fp32 (None), bf16 or fp16 for the scorer's forwards"
    )
    deletion_model: Annotated[str | None, Upstream(("train",)), NeutralDefault()] = Field(
        None,
        description="a train job that continued the explained classifier with mask_augment: the metrics run it "
        "instead (F-Fidelity: deletion on a copy used to masked inputs; attexp.train.augment)",
    )

    @model_validator(mode="after")
    def _reference_given(self) -> EvaluateConfig:
        needing = [m.type for m in self.metrics if METRICS.get(m.type).cls.needs_reference]
        if needing and self.reference is None:
            raise ValueError(
                f"metric(s) {', '.join(needing)} compare with a reference: set `reference` to an explain job"
            )
        return self


@JOBS.register("evaluate", EvaluateConfig)
class EvaluateJob(Job):
    """Score explanations (faithfulness to the model, agreement with a reference, prediction quality, cost)."""

    schema = EVALUATION
    folder = "logs"
    resumable = False
    splits = Splits.INSTANCES

    def run(self, config: EvaluateConfig, ctx: JobContext) -> None:
        setup = _Setup.of(config, ctx)
        if ctx.world_size > 1:  # this process's share of the model's work; `finish` scores everything
            if setup.scorer is not None:
                shares.score_share(
                    shares.share_runs(setup.runs, ctx.share), setup.metrics, setup.reference, setup.scorer
                )
                shares.save_share(ctx.shard_path(shares.SHARE_FILE), setup.scorer)
            return
        _score_and_write(config, ctx, setup, {})

    @classmethod
    def finish(cls, config: EvaluateConfig, ctx: JobContext) -> None:
        """After every rank (or array task) scored its share: every instance scored from the shares' rows."""
        if ctx.world_size == 1:
            return
        setup = _Setup.of(config, ctx)
        paths = ctx.shard_paths(shares.SHARE_FILE)
        shared = shares.load_shares(paths, setup.scorer) if setup.scorer is not None else {}
        _score_and_write(config, ctx, setup, shared)
        shares.remove_shares(paths)


@dataclass
class _Setup:
    """What scoring needs: the metrics, the runs (with the random floor), the reference, the model's scorer."""

    metrics: list[Metric]
    runs: list[Run]
    reference: list[dict] | None
    scorer: ModelScorer | None
    model_name: Any
    extra: dict[str, dict[str, float]]  # per explanations file: the teacher columns of a learned explainer

    @classmethod
    def of(cls, config: EvaluateConfig, ctx: JobContext) -> _Setup:
        metrics: list[Metric] = [METRICS.get(m.type).cls(m) for m in config.metrics]
        reference = (
            ctx.upstream(config.reference).read(EXPLANATIONS, required=EXPLANATION_FIELDS) if config.reference else None
        )
        artifacts = {name: ctx.upstream(name) for name in config.explanations}
        scorer, model_name = None, None
        if any(metric.needs_model for metric in metrics):
            model_ref = _resolve_model(config, ctx, artifacts)
            if config.deletion_model is not None:
                model_ref = _deletion_model(config.deletion_model, model_ref, ctx)
            model_name = model_ref if isinstance(model_ref, str) else model_ref.model_dump(mode="json")
            device = ctx.device
            if isinstance(model_ref, str):
                model, tokenizer = load_classifier(_model_artifact(ctx, model_ref).dir / "model", device=device)
            else:  # a prompted classifier's classes in the order the explanations name them
                names = next((n for a in artifacts.values() if (n := getattr(a.manifest, "label_names", None))), None)
                model, tokenizer = ctx.classifier(model_ref, device=device, label_names=names)
            scorer = ModelScorer(
                model,
                tokenizer,
                device,
                batch_size=config.batch_size,
                precision=config.precision,
                other_model=config.deletion_model is not None,
            )

        runs: list[Run] = []
        for name, artifact in artifacts.items():
            runs.append(
                (name, artifact.manifest.explainer_type, artifact.read(EXPLANATIONS, required=EXPLANATION_FIELDS))
            )
        if config.random_floor:
            first = artifacts[runs[0][0]]
            tokenizer = scorer.tokenizer if scorer is not None else None
            if tokenizer is None and any(m.uses_attributions for m in metrics):
                tokenizer = _tokenizer_of(first, ctx)
            runs = with_floor(runs, metrics, tokenizer)
        return cls(metrics, runs, reference, scorer, model_name, teacher_columns(artifacts))


def _score_and_write(config: EvaluateConfig, ctx: JobContext, setup: _Setup, shared: dict[str, Any]) -> None:
    """Every metric on every run; metrics.json, instances.jsonl, table.md, plots and the manifest's results.
    `shared`: the summed cost of the shares whose rows the scorer was given (empty for one process)."""
    scorer, model_name = setup.scorer, setup.model_name
    scores = score_runs(setup.runs, setup.metrics, setup.reference, scorer, setup.extra)
    rows, columns, table, versus = scores.rows, scores.columns, scores.table, scores.versus
    summary, curves, per_instance = scores.summary, scores.curves, scores.per_instance
    cost: dict[str, Any] = {}
    if scorer:
        cost = {
            "forward_passes": scorer.forward_passes + shared.get("forward_passes", 0),
            "rows": scorer.rows + shared.get("rows", 0),
            "seconds": round(scorer.seconds + shared.get("seconds", 0.0), 3),
        }
        if shared:
            cost["shares"] = shared["shares"]
    metrics_json = scores.metrics_json(config.reference, model_name, cost)
    if config.paper is not None:
        metrics_json["paper"] = paper_comparison(config.paper.model_dump(), rows)
        table += "\n\n" + paper_report(metrics_json["paper"])
    write_json(ctx.path("metrics.json"), metrics_json)
    write_jsonl(ctx.path("instances.jsonl"), scores.instances())
    atomic_write_text(ctx.path("table.md"), table + "\n")
    log.info("%s (reference: %s, model: %s)\n%s", config.name, config.reference, model_name, table)
    plots = _plots(rows, curves, ctx) if config.plots else []
    ctx.counts.update(explanation_files=len(rows), instance_rows=len(per_instance), plots=len(plots))
    manifest = ctx.manifest
    manifest.reference = config.reference
    manifest.model = model_name
    manifest.results = summary
    manifest.beats_random = {name: {c: r["beats"] for c, r in result.items()} for name, result in versus.items()}
    manifest.evaluation_cost = cost
    manifest.plots = plots
    for row in rows:
        ctx.tracker.log({f"{row['explanations']}/{k}": v for k, v in row.items() if isinstance(v, int | float)})
    ctx.tracker.log_table("evaluation", columns, [[r.get(c) for c in columns] for r in rows])
    for path in plots:
        ctx.tracker.log_image(f"plots/{path.rsplit('/', 1)[-1].removesuffix('.png')}", ctx.path(path))


def teacher_columns(artifacts: dict[str, Artifact]) -> dict[str, dict[str, float]]:
    """`teacher_instances` and `teacher_passes` (forward + backward, summed over the teacher's training and
    validation explanations) of each explanations file made by a learned explainer: what building it cost, the
    axis along which learned explainers trade teacher cost for quality (`plots.teacher_cost_plots`)."""
    out = {}
    for name, artifact in artifacts.items():
        cost = getattr(artifact.manifest, "teacher_cost", None)
        if cost is not None:
            out[name] = {"teacher_instances": cost.instances, "teacher_passes": cost.total_passes}
    return out


def _resolve_model(config: EvaluateConfig, ctx: JobContext, artifacts: dict[str, Artifact]) -> str | ComponentConfig:
    """The classifier the faithfulness metrics run: `config.model`, else the one the explain jobs read (a train
    job's name or a model source, from their configs). Faithfulness is measured on the model that was explained."""
    named = {name: _explained_model(artifact) for name, artifact in artifacts.items()}
    if config.model is not None:
        for name, ref in named.items():
            if ref is not None and _key(ref) != _key(config.model):
                raise AttexpError(
                    f"evaluate {config.name!r}: explanations {name!r} explain model {_key(ref)}, but `model` is "
                    f"{_key(config.model)}. Faithfulness is measured on the model that was explained: set model "
                    f"to {_key(ref)} or evaluate explanations of {_key(config.model)}."
                )
        return config.model
    found = {_key(ref): ref for ref in named.values() if ref is not None}
    if len(found) != 1 or any(ref is None for ref in named.values()):
        given = ", ".join(f"{name}: {_key(ref) if ref is not None else 'none'}" for name, ref in named.items())
        raise AttexpError(
            f"evaluate {config.name!r}: its metrics run the explained classifier, but the explain jobs name "
            f"{'no' if not found else 'different'} models ({given}). Set the evaluate job's `model` to the "
            f"classifier that was explained."
        )
    return next(iter(found.values()))


def _deletion_model(name: str, explained: str | ComponentConfig, ctx: JobContext) -> str:
    """`name`, after checking that its train job continued the explained classifier with `mask_augment`."""
    config = _model_artifact(ctx, name).config
    source = config.get("model") or {}
    continued = source.get("type") == "trained" and isinstance(explained, str) and source.get("job") == explained
    if not continued or not config.get("mask_augment"):
        raise AttexpError(
            f"deletion_model {name!r} must be a copy of the explained classifier {_key(explained)} fine-tuned with "
            f"random masking: a train job with model: {{type: 'trained', job: <the explained train job>}} and "
            f"mask_augment (it has model {json.dumps(source)} and mask_augment {config.get('mask_augment')})"
        )
    return name


def _key(ref: str | ComponentConfig | dict) -> str:
    """A model reference as one comparable string: a train job's name, or the source's JSON."""
    if isinstance(ref, str):
        return repr(ref)
    data = ref.model_dump(mode="json") if isinstance(ref, ComponentConfig) else ref
    return json.dumps(data, sort_keys=True)


def _explained_model(artifact: Artifact) -> str | ComponentConfig | None:
    """The classifier an explain job read (`ExplanationsManifest.explained_model`): a train job's name or a model
    source."""
    ref = artifact.manifest.explained_model()
    if isinstance(ref, dict) and ref.get("type") in MODELS.names():
        return MODELS.get(ref["type"]).config_type.model_validate(ref)
    return ref if isinstance(ref, str) else None


def _model_artifact(ctx: JobContext, name: str) -> Artifact:
    if name in ctx.upstream_artifacts:
        return ctx.upstream(name)
    artifact = find_artifact(ctx.base_dir, name)
    if artifact is None or artifact.stage != "train":
        raise AttexpError(
            f"the explain jobs name train job {name!r}, but {ctx.base_dir} holds no train artifact of that name. "
            f"Set the evaluate job's `model` to a train job in this base directory."
        )
    return artifact.require_finished()


def _tokenizer_of(artifact: Artifact, ctx: JobContext) -> Any:
    """The tokenizer of the model an explanations file explained (for its special-token ids), or None. Only the
    tokenizer is loaded: the random floor runs no model."""
    from transformers import AutoTokenizer

    ref = _explained_model(artifact)
    try:
        if ref is None:
            raise AttexpError("no model named")
        if isinstance(ref, str):
            where, kwargs = _model_artifact(ctx, ref).dir / "model", {}
        else:
            where, kwargs = MODELS.get(ref.type).cls(ref).pretrained(ctx.cache_dir, root=ctx.base_dir)
        return AutoTokenizer.from_pretrained(where, **kwargs)
    except (AttexpError, OSError) as err:
        log.warning("random floor: no tokenizer found for %s (%s); specials get random scores too", artifact.name, err)
        return None


def _plots(rows: list[dict], curves: dict[str, dict], ctx: JobContext) -> list[str]:
    """Write the plots under plots/; returns their paths relative to the job folder."""
    from attexp import plots

    folder = ctx.path("plots")
    written = plots.curve_plots(curves, folder, {row["explanations"]: row["explainer"] for row in rows})
    written += plots.cost_plots(rows, folder)
    written += plots.teacher_cost_plots(rows, folder)
    return [str(path.relative_to(ctx.out_dir)) for path in written]
