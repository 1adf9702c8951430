"""What the two Self-Attention Attribution analyses over a split share (Hao, Dong, Wei & Xu 2021, AAAI): their
config fields, the paper block beside their tables, loading the model and rows, and the attribution method.
The jobs are `pruning_job` (head_pruning) and `triggers_job` (triggers).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Annotated, Literal

from pydantic import Field

from attexp.config.schema import ClassifierRef, JobConfig, NeutralDefault, PaperNumbers, Upstream
from attexp.evaluate.report import paper_comparison, paper_report
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution
from attexp.io.files import done_idx, read_jsonl, read_shards, write_jsonl
from attexp.io.records import DATASET
from attexp.models.layouts import INSIDE_MODEL_TYPES
from attexp.runner import Job, JobContext, Splits

log = logging.getLogger(__name__)
Split = Literal["train", "validation", "test"]


class AnalysisConfig(JobConfig):
    """Fields both analyses share: the classifier, the data, AttAttr's steps and the batching."""

    model: ClassifierRef
    data: Annotated[str, Upstream(("download",))]
    eval_split: Split = "test"
    eval_limit: int | None = Field(None, ge=1, description="evaluate on the first N rows only (default: all)")
    steps: int = Field(20, ge=1, description="m, AttAttr's Riemann steps")
    batch_size: int = Field(8, ge=1, description="instances per AttAttr call")
    internal_batch_size: int = Field(64, ge=1, description="rows (instances x steps) per AttAttr forward")
    eval_batch_size: int = Field(64, ge=1, description="instances per accuracy forward")
    max_length: int = Field(128, ge=8)
    plots: bool = True
    progress: bool = True
    paper: Annotated[PaperNumbers | None, NeutralDefault()] = Field(
        None,
        description="a paper's numbers for this table (rows: head_pruning's rates, triggers' ranks), shown beside "
        "the measured ones in table.md and metrics.json",
    )


def with_paper(config: AnalysisConfig, metrics: dict, table: str, rows: list[dict], key: str) -> str:
    """Add the `paper:` comparison to metrics.json's content and return the table with its report appended."""
    if config.paper is None:
        return table
    metrics["paper"] = paper_comparison(config.paper.model_dump(), rows, keys=(key,))
    return table + "\n\n" + paper_report(metrics["paper"])


def number(value: float) -> int | float:
    """A rate as printed: 10 rather than 10.0000."""
    return int(value) if float(value).is_integer() else value


def setup(config: AnalysisConfig, ctx: JobContext):
    device = ctx.device
    model, tokenizer = ctx.classifier(config.model, device=device)  # max_length: checked by the plan
    return device, model, tokenizer


def rows_of(ctx: JobContext, config: AnalysisConfig, split: str, limit: int | None) -> list[dict]:
    rows = ctx.upstream(config.data).read(DATASET, f"{split}.jsonl")
    return rows[:limit] if limit is not None else rows


def attattr_of(config: AnalysisConfig, model, tokenizer) -> AttentionAttribution:
    settings = AttAttrConfig(steps=config.steps, internal_batch_size=config.internal_batch_size, return_maps=True)
    return AttentionAttribution(settings, model, tokenizer, {})


def per_instance_pass(
    ctx: JobContext,
    name: str,
    source: list[dict],
    score: Callable[[list[dict]], Iterator[list[dict]]],
    fields: tuple[str, ...],
) -> list[dict] | None:
    """The records `score(rows)` yields (a list per batch, one record per row with its `idx`) for every row of
    `source`, streamed to a resumable file and returned sorted by idx; a finished `name` (e.g. `head_scores.jsonl`)
    is read as it is. Under torchrun every rank scores its share of `source` (`ctx.share`) into its own shard file
    (`ctx.shard_writer`) and every rank reads all of them; rank 0 then writes `name` as one process would. In a job
    array each task writes its share and gets None: the job's `finish` then runs the job as one process
    (`ctx.alone()`), whose pass finds every share done and reads them (`ModelAnalysisJob.finish`)."""
    if ctx.path(name).exists():  # finished by an earlier run that stopped later on
        return read_jsonl(ctx.path(name), required=fields)
    done = done_idx(ctx.shard_paths(name))
    ctx.barrier()  # every rank has seen what is done before any rank writes
    writer = ctx.shard_writer(name)
    try:
        todo = [row for row in ctx.share(source) if row["idx"] not in done | writer.done]
        if done and ctx.is_main:
            log.info("%s: resuming, %d of %d instances done", ctx.config.name, len(done), len(source))
        for records in score(todo):
            writer.write(records)
    finally:
        writer.close()
    if ctx.array:  # a job-array task: its share is on disk; the task that finishes the job reads them all
        return None
    ctx.barrier()  # every rank's share is on disk
    partials = ctx.shard_paths(name)
    ordered = read_shards(partials, required=fields)  # every rank reads all of them (an idx in two is refused)
    ctx.barrier()  # every rank has read them
    if ctx.is_main:
        write_jsonl(ctx.path(name), ordered)
        for path in partials:
            path.unlink(missing_ok=True)
    return ordered


class ModelAnalysisJob(Job):
    """What both Self-Attention Attribution analyses declare: they read any inside-the-model layout, write to logs/,
    and split their per-instance pass (`per_instance_pass`). Under torchrun every rank also takes a share of the
    evaluation rows (correct counts summed over the ranks); in a job array every task writes its share of the pass,
    and the task that finishes the last share runs the rest of the job as one process (`finish`)."""

    architectures = INSIDE_MODEL_TYPES
    folder = "logs"
    splits = Splits.INSTANCES

    @classmethod
    def finish(cls, config: AnalysisConfig, ctx: JobContext) -> None:
        """In a job array, once every task wrote its share: the job as one process (its pass finds every share
        done; the evaluation, which sums counts over ranks under torchrun, runs here whole). Under torchrun and
        for one process `run` did it all."""
        if ctx.array:
            cls().run(config, ctx.alone())
