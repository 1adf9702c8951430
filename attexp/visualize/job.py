"""The visualize stage: HTML heatmaps comparing several explanation files instance by instance.

Output (`visualizations/<name>/`): `index.html` (instances and each explainer's cost) and
`instances/<idx>.html` (one heatmap row per explanation file, joined by idx, with label, prediction,
explainer name and cost). Pages are self-contained (no CDN) and every token is HTML-escaped.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from attexp.config.schema import JobConfig, Upstream
from attexp.registry import JOBS
from attexp.runner import Job, JobContext
from attexp.visualize.html import Run, render_report


class VisualizeConfig(JobConfig):
    """Render heatmap pages for the explain jobs in `explanations`."""

    job: Literal["visualize"] = "visualize"
    explanations: Annotated[list[str], Upstream(("explain",))] = Field(min_length=1)
    max_instances: int | None = Field(50, ge=1, description="pages for the first N shared idx; null for all")
    merge_subwords: bool = Field(False, description="sum WordPiece '##' pieces into words")


@JOBS.register("visualize", VisualizeConfig)
class VisualizeJob(Job):
    """Render HTML heatmaps of several explanation files side by side."""

    schema = "attexp.visualization"

    def run(self, config: VisualizeConfig, ctx: JobContext) -> None:
        runs = []
        label_names = None
        for name in config.explanations:
            artifact = ctx.upstream(name)
            cost = artifact.manifest.get("cost", {})
            runs.append(
                Run(
                    name=name,
                    explainer=(artifact.manifest.get("explainer") or {}).get("type", "?"),
                    records=artifact.records("records.jsonl", ("idx", "tokens", "attributions")),
                    cost={k: v for k, v in cost.items() if k.endswith("_per_instance")},
                )
            )
            label_names = label_names or artifact.manifest.get("label_names")
        pages = render_report(
            ctx.out_dir,
            runs,
            max_instances=config.max_instances,
            merge_subwords=config.merge_subwords,
            label_names=label_names,
        )
        ctx.counts.update(pages=len(pages))
        ctx.log_metrics({"pages": len(pages), "explanation_files": len(runs)})
        ctx.manifest_extra.update(index=str(ctx.path("index.html")))
