"""The evaluate stage: score explanation files with registered metrics, against a reference where needed.

`explanations` names explain jobs (one table row each); `reference` names the explain job they are compared
with (e.g. the expensive explainer an empirical explainer imitates). Records are joined by `idx`.

Output (`logs/<name>/`): `metrics.json` (summary per explanation file and metric), `instances.jsonl`
(per-instance values), `table.md` (explainers as rows, metrics and cost as columns; also printed to the log).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny, model_validator

from attexp.config.schema import ComponentConfig, JobConfig, Registered, Upstream
from attexp.evaluate.metrics import format_table
from attexp.io.files import atomic_write_text, write_json, write_jsonl
from attexp.registry import JOBS, METRICS
from attexp.runner import Job, JobContext

log = logging.getLogger(__name__)
EXPLANATION_FIELDS = ("idx", "input_ids", "label", "predictions", "attributions")


class EvaluateConfig(JobConfig):
    """Score the explanation files of `explanations` with `metrics`."""

    job: Literal["evaluate"] = "evaluate"
    explanations: Annotated[list[str], Upstream(("explain",))] = Field(min_length=1)
    reference: Annotated[str | None, Upstream(("explain",))] = None
    metrics: Annotated[list[SerializeAsAny[ComponentConfig]], Registered("metric")] = Field(min_length=1)

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
    """Score explanations (agreement with a reference, prediction quality, cost)."""

    schema = "attexp.evaluation"

    def run(self, config: EvaluateConfig, ctx: JobContext) -> None:
        metrics = [METRICS.get(m.type).cls(m) for m in config.metrics]
        reference = (
            ctx.upstream(config.reference).records("records.jsonl", EXPLANATION_FIELDS) if config.reference else None
        )
        summary: dict[str, dict] = {}
        per_instance: dict[tuple[str, int], dict] = {}
        rows = []
        for name in config.explanations:
            artifact = ctx.upstream(name)
            records = artifact.records("records.jsonl", EXPLANATION_FIELDS)
            row: dict = {"explanations": name, "explainer": (artifact.manifest.get("explainer") or {}).get("type")}
            summary[name] = {"explainer": row["explainer"], "instances": len(records)}
            for spec, metric in zip(config.metrics, metrics, strict=True):
                result = metric.compute(records, reference)
                for key, value in result.summary.items():
                    summary[name][f"{spec.type}.{key}" if key != spec.type else key] = value
                    row[key] = value
                for idx, values in result.per_instance.items():
                    per_instance.setdefault((name, idx), {"explanations": name, "idx": idx}).update(values)
            rows.append(row)
        columns = ["explanations", "explainer"] + [
            k for k in dict.fromkeys(k for r in rows for k in r) if k not in ("explanations", "explainer")
        ]
        table = format_table(rows, columns)
        write_json(ctx.path("metrics.json"), {"reference": config.reference, "results": summary})
        write_jsonl(
            ctx.path("instances.jsonl"), sorted(per_instance.values(), key=lambda r: (r["explanations"], r["idx"]))
        )
        atomic_write_text(ctx.path("table.md"), table + "\n")
        log.info("%s (reference: %s)\n%s", config.name, config.reference, table)
        ctx.counts.update(explanation_files=len(rows), instance_rows=len(per_instance))
        ctx.manifest_extra.update(reference=config.reference, results=summary)
        for row in rows:
            ctx.tracker.log({f"{row['explanations']}/{k}": v for k, v in row.items() if isinstance(v, int | float)})
        ctx.tracker.log_table("evaluation", columns, [[r.get(c) for c in columns] for r in rows])
