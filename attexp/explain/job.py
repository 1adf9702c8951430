"""The explain stage: attribute the predictions of a trained classifier on one split of a dataset.

Output (`explanations/<name>/records.jsonl`): one record per instance with
`idx, input_ids, tokens, label, predictions, target, attributions` (the fields Thermostat and ferret read)
and its cost (`seconds, forward_passes, backward_passes, batch`). Run-level settings (explainer config,
target, model, device, totals) go in the manifest. Records stream to `records.jsonl.rank<r>.partial` one fsynced
batch at a time, so a killed job rerun with the same command continues with the missing idx; when all are done
they are merged, sorted by idx, into `records.jsonl`.

Data-parallel: under `torchrun --nproc_per_node=N run_job.py CONFIG` every rank explains a shard of the
instances (dealt round-robin in length order, skipping those done) and writes its own shard file; rank 0 merges
them (see attexp.distributed). A job array (`--shard I/N`, attexp.job_arrays) runs the same shards as separate
commands. Deterministic explainers give the same records as a single process.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from attexp.config.schema import ClassifierRef, ComponentConfig, JobConfig, NeutralDefault, Registered, Upstream
from attexp.explain.artifact import RECORDS, finish_records
from attexp.explain.batching import explain_rows, text_length
from attexp.explain.prompted import build_explainer
from attexp.io.files import done_idx
from attexp.io.records import DATASET, EXPLANATIONS
from attexp.models.inputs import count_truncated
from attexp.models.loading import label_names_of
from attexp.models.precision import Precision
from attexp.registry import EXPLAINERS, JOBS
from attexp.runner import Job, JobContext, Splits

log = logging.getLogger(__name__)


class ExplainConfig(JobConfig):
    """Explain `model`'s predictions on `split` of `data` with `explainer`.

    model: an upstream train job's name, or a model source (`hub`, `local`, `packaged`; see `ClassifierRef`).
    """

    job: Literal["explain"] = "explain"
    model: ClassifierRef
    data: Annotated[str, Upstream(("download",))]
    split: Literal["train", "validation", "test"] = "test"
    explainer: Annotated[SerializeAsAny[ComponentConfig], Registered("explainer")]
    target: Literal["predicted", "label"] | int = Field(
        "predicted", description="class to explain: the model's prediction, the gold label, or a fixed class id"
    )
    batch_size: int = Field(16, ge=1, description="instances per explainer call")
    max_length: int = Field(128, ge=8, description="truncate longer inputs to this many tokens")
    limit: int | None = Field(None, ge=1, description="explain only the first `limit` instances of the split")
    precision: Annotated[Precision | None, NeutralDefault()] = Field(
        None, description="fp32 (None), bf16 or fp16 for the prediction forward (gradient explainers stay fp32)"
    )
    max_tokens_per_pass: Annotated[int | None, NeutralDefault()] = Field(
        None,
        ge=1,
        description="the job's memory budget in padded token positions per model pass, which every explainer sizes "
        "its passes by (gradient chunks, perturbation batches, AttAttr's rows, IBA's samples); an explainer's own "
        "max_tokens_per_forward or internal_batch_size wins where set",
    )
    progress: bool = True

    @field_validator("target")
    @classmethod
    def _class_id(cls, target: str | int) -> str | int:
        if isinstance(target, int) and target < 0:
            raise ValueError(f"a class id is 0 or more, got {target}; or use 'predicted' or 'label'")
        return target

    @model_validator(mode="after")
    def _explainer_takes_the_batch(self) -> ExplainConfig:
        check = getattr(self.explainer, "check_batch_size", None)
        if check is not None:
            check(self.batch_size)
        return self


@JOBS.register("explain", ExplainConfig)
class ExplainJob(Job):
    """Explain a classifier's predictions on a dataset split."""

    schema = EXPLANATIONS
    folder = "explanations"
    splits = Splits.INSTANCES

    def run(self, config: ExplainConfig, ctx: JobContext) -> None:
        data = ctx.upstream(config.data)
        rows = data.read(DATASET, f"{config.split}.jsonl")
        if config.limit is not None:
            rows = rows[: config.limit]
        device = ctx.device
        entry = EXPLAINERS.get(config.explainer.type)
        model, tokenizer = ctx.classifier(
            config.model,
            eager_attention=getattr(entry.cls, "needs_attentions", False),
            device=device,
            label_names=data.manifest.label_names,
        )
        upstream = {n: a.dir for n, a in ctx.upstream_artifacts.items()}
        explainer = build_explainer(entry.cls, config.explainer, model, tokenizer, upstream)

        # A run killed after merging its shards but before its manifest said "finished" left records.jsonl:
        # it becomes a shard again, so those records count as done (not explained a second time).
        if ctx.is_main and ctx.path(RECORDS).exists():
            os.replace(ctx.path(RECORDS), ctx.path(f"{RECORDS}.rank-merged.partial"))
        ctx.barrier()
        # Resume: each rank recovers its own shard file, then all read every shard (of this or an earlier run,
        # whatever its number of processes) to skip what is done, before anyone writes.
        writer = ctx.shard_writer(RECORDS)
        ctx.barrier()
        done, next_batch = _scan(ctx.shard_paths(RECORDS))
        ctx.barrier()
        remaining = [r for r in rows if r["idx"] not in done]
        # This process's share, dealt in length order (every share gets a similar mix of lengths); done ones skipped.
        mine = [r for r in ctx.share(rows, key=text_length) if r["idx"] not in done]
        if done and ctx.is_main:
            log.info("%s: resuming, %d of %d instances done", config.name, len(done), len(rows))
        try:
            for records in explain_rows(
                explainer,
                model,
                tokenizer,
                mine,
                batch_size=config.batch_size,
                max_length=config.max_length,
                target=config.target,
                device=device,
                progress=config.progress and ctx.is_main,
                precision=config.precision,
                max_tokens_per_pass=config.max_tokens_per_pass,
            ):
                for r in records:  # batch ids unique across ranks and resumes: local number * world + rank
                    r["batch"] = (next_batch + r["batch"]) * ctx.world_size + ctx.rank
                writer.write(records)
        finally:
            writer.close()
        if ctx.is_main:
            truncated = count_truncated(tokenizer, rows, config.max_length)
            if truncated:
                log.warning(
                    "%s: %d of %d instances are longer than max_length=%d tokens and are explained cut to it",
                    config.name,
                    truncated,
                    len(rows),
                    config.max_length,
                )
            ctx.manifest.truncated = truncated
        # an array task counts its own share (the tasks' counts add up); under torchrun rank 0 counts them all
        ctx.counts.update(explained_this_run=len(mine) if ctx.array else len(remaining))
        manifest = ctx.manifest
        manifest.model = config.model if isinstance(config.model, str) else config.model.model_dump(mode="json")
        manifest.explainer = config.explainer.model_dump(mode="json")
        # a learned explainer (empirical): what its teacher's explanations cost, from its distill job
        teachers = [a.manifest.teacher_cost for a in ctx.upstream_artifacts.values() if a.stage == "distill"]
        manifest.teacher_cost = next((cost for cost in teachers if cost is not None), None)
        manifest.target = config.target
        manifest.split = config.split
        manifest.device = str(device)
        # a train job's classifier is named after its data; any other model names its own classes
        manifest.label_names = data.manifest.label_names if isinstance(config.model, str) else label_names_of(model)

    @classmethod
    def finish(cls, config: ExplainConfig, ctx: JobContext) -> None:
        """Rank 0, after every rank: merge the shard files into records.jsonl (sorted by idx)."""
        n = finish_records(ctx.out_dir, ctx.manifest)
        log.info("%s: %d records (%d this run)", config.name, n, ctx.counts.get("explained_this_run", 0))
        ctx.counts.update(records=n)
        cost = ctx.manifest.cost
        ctx.log_metrics({f"{k}_per_instance": v for k, v in cost.per_instance().items()})
        ctx.tracker.summary(cost.to_json())


def _scan(partials: list[Path]) -> tuple[set[int], int]:
    """idx already explained in these shard files, and the next free local batch number."""
    done = done_idx(partials)
    last = -1
    for path in partials:
        with path.open("rb") as f:
            for raw in f:
                if raw.endswith(b"\n"):
                    last = max(last, json.loads(raw)["batch"])
    return done, last + 1
