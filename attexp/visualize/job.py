"""The visualize stage: HTML heatmaps comparing several explanation files instance by instance.

Output (`visualizations/<name>/`): `index.html` (instances and each explainer's cost),
`instances/<idx>.html` (one heatmap row per explanation file, joined by idx, with label, prediction,
explainer name and cost; with `trees` / `layer_flow` also that idx's attribution tree and IBA layer x token
heatmap, from the attribution_tree and layer_flow jobs of attexp.analyze) and, when `evaluation` names an
evaluate job, `summary.html` (its metric table, sortable, and its plots embedded). Pages are self-contained
(no CDN) and every token is HTML-escaped.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from attexp.config.schema import JobConfig, Upstream
from attexp.errors import AttexpError
from attexp.io.artifacts import verify_file
from attexp.io.files import read_json
from attexp.io.records import ATTRIBUTION_TREE, EXPLANATIONS, LAYER_FLOW, VISUALIZATION
from attexp.registry import JOBS
from attexp.runner import Job, JobContext
from attexp.visualize import flow, tree
from attexp.visualize.analysis_pages import QUANTITY_LABELS
from attexp.visualize.heatmap import Run
from attexp.visualize.report import render_report
from attexp.visualize.summary import render_summary


class VisualizeConfig(JobConfig):
    """Render heatmap pages for the explain jobs in `explanations` (and a summary of `evaluation`)."""

    job: Literal["visualize"] = "visualize"
    explanations: Annotated[list[str], Upstream(("explain",))] = Field(min_length=1)
    evaluation: Annotated[str | None, Upstream(("evaluate",))] = Field(
        None, description="an evaluate job whose table and plots make summary.html"
    )
    max_instances: int | None = Field(50, ge=1, description="pages for the first N shared idx; null for all")
    merge_subwords: bool = Field(True, description="show words (their pieces' scores summed), not subword pieces")
    scale_specials: bool = Field(True, description="False: leave [CLS]/[SEP]/<s>... out of each row's colour scale")
    trees: Annotated[str | None, Upstream(("attribution_tree",))] = Field(
        None, description="an attribution_tree job whose trees are drawn on the pages of the same idx"
    )
    layer_flow: Annotated[str | None, Upstream(("layer_flow",))] = Field(
        None, description="a layer_flow job whose layer x token heatmaps are shown on the pages of the same idx"
    )


@JOBS.register("visualize", VisualizeConfig)
class VisualizeJob(Job):
    """Render HTML heatmaps of several explanation files side by side, and a summary of an evaluation."""

    schema = VISUALIZATION
    folder = "visualizations"
    resumable = False
    splits_because = "it renders finished artifacts into pages and runs no model; one process takes seconds"

    def run(self, config: VisualizeConfig, ctx: JobContext) -> None:
        runs = []
        label_names = None
        for name in config.explanations:
            artifact = ctx.upstream(name)
            runs.append(
                Run(
                    name=name,
                    explainer=artifact.manifest.explainer_type or "?",
                    records=artifact.read(EXPLANATIONS, required=("idx", "tokens", "attributions")),
                    cost={f"{k}_per_instance": v for k, v in artifact.manifest.cost.per_instance().items()},
                )
            )
            label_names = label_names or artifact.manifest.label_names
        summary = self._summary(config, ctx) if config.evaluation else None
        pages = render_report(
            ctx.out_dir,
            runs,
            max_instances=config.max_instances,
            merge_subwords=config.merge_subwords,
            scale_specials=config.scale_specials,
            label_names=label_names,
            summary_href=summary.name if summary else None,
            sections=self._sections(config, ctx),
        )
        pages += [summary] if summary else []
        ctx.counts.update(pages=len(pages))
        ctx.log_metrics({"pages": len(pages), "explanation_files": len(runs)})
        ctx.manifest.index = str(ctx.path("index.html"))
        ctx.manifest.summary = str(summary) if summary else None
        ctx.manifest.evaluation = config.evaluation

    def _sections(self, config: VisualizeConfig, ctx: JobContext) -> dict[int, list[dict]]:
        """Per idx, the attribution tree and the IBA layer flow to add to its page (from `trees`, `layer_flow`)."""
        sections: dict[int, list[dict]] = {}
        if config.trees:
            trees = ctx.upstream(config.trees)
            threshold = trees.config.get("threshold")
            for record in trees.read(ATTRIBUTION_TREE):
                item = tree.section(record, record["tokens"], threshold)
                sections.setdefault(record["idx"], []).append({**item, "title": f"Attribution tree ({config.trees})"})
        if config.layer_flow:
            flows = ctx.upstream(config.layer_flow)
            quantity = flows.config.get("quantity", "scores")
            for record in flows.read(LAYER_FLOW):
                item = flow.section(np.asarray(record[quantity]), record["tokens"], QUANTITY_LABELS[quantity])
                sections.setdefault(record["idx"], []).append({**item, "title": f"IBA per layer ({config.layer_flow})"})
        return sections

    def _summary(self, config: VisualizeConfig, ctx: JobContext):
        evaluation = ctx.upstream(config.evaluation)
        verify_file(evaluation.dir, "metrics.json", evaluation.manifest)
        metrics = read_json(evaluation.dir / "metrics.json")
        table = metrics.get("table")
        if not table:
            raise AttexpError(
                f"evaluate job {config.evaluation!r} wrote no table in {evaluation.dir / 'metrics.json'} (it predates "
                f"the summary page). Rerun it with --force, or leave `evaluation` out."
            )
        plots = [
            (relative.rsplit("/", 1)[-1].removesuffix(".png"), (evaluation.dir / relative).read_bytes())
            for relative in evaluation.manifest.plots
            if (evaluation.dir / relative).is_file()
        ]
        notes = [f"evaluate job: {config.evaluation}"]
        if metrics.get("reference"):
            notes.append(f"reference explainer: {metrics['reference']}")
        if metrics.get("model"):
            notes.append(f"model: {metrics['model']}")
        cost = metrics.get("evaluation_cost") or {}
        if cost:
            notes.append(
                f"evaluation cost: {cost.get('forward_passes')} forward passes, {cost.get('rows')} inputs, "
                f"{cost.get('seconds')} s"
            )
        return render_summary(
            ctx.out_dir,
            table["columns"],
            table["rows"],
            plots,
            title=config.evaluation,
            notes=notes,
            floor=metrics.get("random_floor"),
            directions=table.get("directions"),
            paper=metrics.get("paper"),
            rankings=metrics.get("rankings"),
        )
