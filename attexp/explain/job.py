"""The explain stage: attribute the predictions of a trained classifier on one split of a dataset.

Output (`explanations/<name>/records.jsonl`): one record per instance with
`idx, input_ids, tokens, label, predictions, target, attributions` (the fields Thermostat and ferret read)
and its cost (`seconds, forward_passes, backward_passes, batch`). Run-level settings (explainer config,
target, model, device, totals) go in the manifest. Records stream to disk one fsynced batch at a time, so a
killed job rerun with the same command continues at the first missing idx.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny

from attexp.config.schema import ComponentConfig, JobConfig, Registered, Upstream
from attexp.explain.batching import explain_rows
from attexp.io.files import read_jsonl
from attexp.models.loading import load_classifier, resolve_device
from attexp.registry import EXPLAINERS, JOBS
from attexp.runner import Job, JobContext

log = logging.getLogger(__name__)
RECORDS = "records.jsonl"


class ExplainConfig(JobConfig):
    """Explain `model`'s predictions on `split` of `data` with `explainer`."""

    job: Literal["explain"] = "explain"
    model: Annotated[str, Upstream(("train",))]
    data: Annotated[str, Upstream(("download",))]
    split: Literal["train", "validation", "test"] = "test"
    explainer: Annotated[SerializeAsAny[ComponentConfig], Registered("explainer")]
    target: Literal["predicted", "label"] | int = Field(
        "predicted", description="class to explain: the model's prediction, the gold label, or a fixed class id"
    )
    batch_size: int = Field(16, ge=1, description="instances per explainer call")
    max_length: int = Field(128, ge=8, description="truncate longer inputs to this many tokens")
    limit: int | None = Field(None, ge=1, description="explain only the first `limit` instances of the split")
    progress: bool = True


@JOBS.register("explain", ExplainConfig)
class ExplainJob(Job):
    """Explain a classifier's predictions on a dataset split."""

    schema = "attexp.explanations"

    def run(self, config: ExplainConfig, ctx: JobContext) -> None:
        data = ctx.upstream(config.data)
        rows = data.records(f"{config.split}.jsonl", required=("idx", "text", "label"))
        if config.limit is not None:
            rows = rows[: config.limit]
        device = resolve_device(config.device)
        entry = EXPLAINERS.get(config.explainer.type)
        model, tokenizer = load_classifier(
            ctx.upstream(config.model).dir / "model",
            eager_attention=getattr(entry.cls, "needs_attentions", False),
            device=device,
        )
        explainer = entry.cls(config.explainer, model, tokenizer, {n: a.dir for n, a in ctx.upstream_artifacts.items()})
        writer = ctx.records_writer(RECORDS)
        todo = len(rows) - len(writer.done)
        # batch numbers keep counting up across a resume
        first_batch = 1 + max((r["batch"] for r in read_jsonl(writer.partial)), default=-1) if writer.done else 0
        try:
            for records in explain_rows(
                explainer,
                model,
                tokenizer,
                rows,
                batch_size=config.batch_size,
                max_length=config.max_length,
                target=config.target,
                device=device,
                skip_idx=writer.done,
                progress=config.progress,
                first_batch=first_batch,
            ):
                writer.write(records)
        finally:
            writer.close()
        n = writer.finalize()
        log.info("%s: %d records (%d this run)", config.name, n, todo)
        finished = _totals(ctx.path(RECORDS))
        ctx.counts.update(records=n, explained_this_run=todo)
        ctx.manifest_extra.update(
            explainer=config.explainer.model_dump(mode="json"),
            target=config.target,
            split=config.split,
            device=str(device),
            label_names=data.manifest.get("label_names"),
            cost=finished,
        )
        ctx.log_metrics({f"mean_{k}": v for k, v in finished.items() if k != "instances"})
        ctx.tracker.summary(finished)


def _totals(path) -> dict[str, float]:
    """Cost totals and per-instance means over the finished records file."""
    records = read_jsonl(path)
    n = max(len(records), 1)
    out: dict[str, float] = {"instances": len(records)}
    for key in ("seconds", "forward_passes", "backward_passes"):
        total = float(sum(r[key] for r in records))
        out[f"total_{key}"] = round(total, 4)
        out[f"{key}_per_instance"] = round(total / n, 6)
    return out
