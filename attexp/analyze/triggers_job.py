"""Adversarial triggers from attribution patterns (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution", AAAI,
Sec. 4.3), the `triggers` job: attribution patterns from the first `source_size` instances of `source_split`,
inserted as triggers into every instance of `eval_split`; accuracy per gold class before and after each trigger
(see `attexp.analyze.triggers`).

Output (`logs/<name>/`): each source instance's pattern streams to a resumable `patterns.jsonl`; then
`records.jsonl` (one record per trigger), `metrics.json`, `table.md` and `plots/trigger_drops.png`. Under torchrun
every rank extracts a share of the patterns and scores a share of the evaluation rows per trigger (per-class counts
summed over the ranks): the same table as one process. As a job array (`--shard I/N`) every task extracts its share
of the patterns, and the task that finishes the last share evaluates the triggers as one process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from attexp import distributed as dist
from attexp import plots as P
from attexp.analyze import heads as H
from attexp.analyze import triggers as TR
from attexp.analyze.model_analysis import (
    AnalysisConfig,
    ModelAnalysisJob,
    Split,
    attattr_of,
    per_instance_pass,
    rows_of,
    setup,
    with_paper,
)
from attexp.evaluate.report import format_table
from attexp.io.files import atomic_write_text, write_json, write_jsonl
from attexp.io.records import TRIGGERS
from attexp.models.inputs import structural_ids, tokenize_rows
from attexp.registry import JOBS
from attexp.runner import JobContext

log = logging.getLogger(__name__)


class TriggersConfig(AnalysisConfig):
    """Adversarial triggers from attribution patterns.

    source_split / source_size: the instances patterns come from (the first 500 training ones). target: the
    class AttAttr explains there (`predicted`, as the official code, or `label`). threshold: patterns whose
    two edges sum to less are dropped (0.02). ratio: the second edge joins the trigger when it is at least
    `ratio` x the first (0.2); both: always take both edges. max_triggers: evaluate only the N highest-scoring
    patterns (None: all). top: rows of the table (10).
    """

    job: Literal["triggers"] = "triggers"
    source_split: Split = "train"
    source_size: int = Field(500, ge=1)
    target: Literal["predicted", "label"] = "predicted"
    threshold: float = 0.02
    ratio: float = Field(0.2, ge=0)
    both: bool = False
    max_triggers: int | None = Field(None, ge=1)
    top: int = Field(10, ge=1)


@JOBS.register("triggers", TriggersConfig)
class TriggersJob(ModelAnalysisJob):
    """Adversarial triggers from Self-Attention Attribution patterns: accuracy per class before and after."""

    schema = TRIGGERS

    def run(self, config: TriggersConfig, ctx: JobContext) -> None:
        device, model, tokenizer = setup(config, ctx)
        specials = structural_ids(tokenizer)
        patterns = self._patterns(config, ctx, model, tokenizer, device)
        if patterns is None:  # a job-array task: its share of the patterns is written; `finish` evaluates
            return
        valid = sorted((p for p in patterns if sum(p["scores"]) >= config.threshold), key=lambda p: -sum(p["scores"]))
        kept = valid if config.max_triggers is None else valid[: config.max_triggers]
        log.info(
            "%s: %d of %d patterns reach the threshold %g; evaluating %d",
            config.name,
            len(valid),
            len(patterns),
            config.threshold,
            len(kept),
        )

        every = rows_of(ctx, config, config.eval_split, config.eval_limit)
        classes = sorted({int(r["label"]) for r in every})
        rows = ctx.share(every)  # under torchrun this rank's share; the counts are summed
        features = tokenize_rows(tokenizer, rows, config.max_length)
        labels = np.array([int(r["label"]) for r in rows])

        def class_accuracy(predicted: np.ndarray) -> dict[str, float]:
            counts = torch.from_numpy(TR.per_class_counts(predicted, labels, classes))  # [C, 2]
            return TR.accuracy_from_counts(dist.sum_over_ranks(counts).numpy(), classes)

        clean = self._predict(model, tokenizer, rows, features, config, device)
        before = class_accuracy(clean)
        overall = dist.sum_over_ranks(torch.tensor([float((clean == labels).sum()), float(len(rows))]))
        progress = config.progress and ctx.is_main
        records, seen = [], {}
        for rank, pattern in enumerate(tqdm(kept, desc="triggers", unit="trigger", disable=not progress)):
            trigger = TR.Trigger.from_pattern(
                pattern, pattern["input_ids"], pattern["tokens"], specials, config.ratio, config.both
            )
            if not trigger.token_ids:  # the pattern's edges join specials only: nothing to insert
                continue
            if trigger not in seen:
                attacked = [
                    dict(
                        zip(
                            ("input_ids", "token_type_ids"),
                            trigger.insert(f["input_ids"], f.get("token_type_ids"), specials, config.max_length),
                            strict=True,
                        )
                    )
                    for f in features
                ]
                attacked = [{k: v for k, v in f.items() if v is not None} for f in attacked]
                predicted = self._predict(model, tokenizer, rows, attacked, config, device)
                seen[trigger] = class_accuracy(predicted)
            after = seen[trigger]
            drops = {c: before[c] - after[c] for c in before}
            records.append(
                {
                    "idx": rank,
                    "source_idx": pattern["idx"],
                    "trigger": list(trigger.tokens),
                    "segment": list(trigger.segment),
                    "relative_positions": [round(r, 4) for r in trigger.relative],
                    "score": sum(pattern["scores"]),
                    "layer": pattern["layer"],
                    "head": pattern["head"],
                    "edges": [
                        [pattern["tokens"][i] for i in pattern["top1"]],
                        [pattern["tokens"][i] for i in pattern["top2"]],
                    ],
                    "accuracy_before": before,
                    "accuracy_after": after,
                    "drop_per_class": drops,
                    "drop": max(drops.values()),
                    "mean_drop": float(np.mean(list(drops.values()))),
                }
            )
        if not ctx.is_main:
            return
        write_jsonl(ctx.path("records.jsonl"), records)
        best = sorted(records, key=lambda r: (-r["drop"], r["idx"]))[: config.top]
        columns = ["rank", "trigger", "score", *[f"drop_{c}" for c in before], "drop", "source_idx"]
        table_rows = [
            {
                "rank": r["idx"] + 1,
                "trigger": " ".join(r["trigger"]),
                "score": r["score"],
                "drop": r["drop"],
                "source_idx": r["source_idx"],
                **{f"drop_{c}": v for c, v in r["drop_per_class"].items()},
            }
            for r in best
        ]
        table = format_table(table_rows, columns)
        accuracy = float(overall[0] / overall[1]) if overall[1] > 0 else math.nan
        metrics = {
            "model": config.model,
            "accuracy": accuracy,
            "accuracy_per_class": before,
            "patterns": len(patterns),
            "patterns_above_threshold": len(valid),
            "triggers": len(records),
            "top": [
                {k: r[k] for k in ("idx", "trigger", "score", "drop", "drop_per_class", "mean_drop")} for r in best
            ],
            "table": {"columns": columns, "rows": [[row.get(c) for c in columns] for row in table_rows]},
        }
        table = with_paper(config, metrics, table, table_rows, "rank")
        write_json(ctx.path("metrics.json"), metrics)
        atomic_write_text(ctx.path("table.md"), table + "\n")
        log.info("%s: accuracy per class %s; top triggers by accuracy drop:\n%s", config.name, before, table)
        plots = (
            [str(P.trigger_drops(best, ctx.path("plots/trigger_drops.png")).relative_to(ctx.out_dir))]
            if config.plots and best
            else []
        )
        ctx.counts.update(patterns=len(patterns), triggers=len(records), evaluation_instances=len(every))
        ctx.manifest.accuracy_per_class, ctx.manifest.plots = before, plots
        ctx.log_metrics({"accuracy": accuracy, "triggers": len(records), "top_drop": best[0]["drop"] if best else 0.0})

    def _patterns(self, config: TriggersConfig, ctx, model, tokenizer, device) -> list[dict] | None:
        """Each source instance's pattern (resumable; under torchrun a share per rank, `per_instance_pass`): idx,
        input_ids, tokens, target, label and the edges."""
        source = rows_of(ctx, config, config.source_split, config.source_size)
        explainer = attattr_of(config, model, tokenizer)

        def score(todo: list[dict]) -> Iterator[list[dict]]:
            batches = H.Batches(todo, model, tokenizer, config.batch_size, config.max_length, device)
            bar = tqdm(total=len(todo), desc="patterns", unit="row", disable=not (config.progress and ctx.is_main))
            for batch, rows in zip(batches.batches, batches.rows, strict=True):
                labels = batch.targets
                if config.target == "predicted":
                    with torch.inference_mode():
                        batch.targets = model(**batch.model_inputs()).logits.argmax(dim=-1).clone()
                with torch.enable_grad():
                    maps = explainer.explain(batch).extras["maps"].detach()  # [B, L, heads, T, T]
                lengths = batch.attention_mask.sum(dim=1).tolist()
                out = []
                for i, row in enumerate(rows):
                    n = int(lengths[i])
                    ids = batch.input_ids[i, :n].tolist()
                    out.append(
                        {
                            "idx": row["idx"],
                            "input_ids": ids,
                            "tokens": tokenizer.convert_ids_to_tokens(ids),
                            "target": int(batch.targets[i]),
                            "label": int(labels[i]),
                            **TR.extract_pattern(maps[i], n),
                        }
                    )
                yield out
                bar.update(len(rows))
            bar.close()

        return per_instance_pass(ctx, "patterns.jsonl", source, score, ("idx", "input_ids", "tokens", "scores"))

    @staticmethod
    def _predict(model, tokenizer, rows, features, config, device) -> np.ndarray:
        batches = H.Batches(
            rows, model, tokenizer, config.eval_batch_size, config.max_length, device, features=features
        )
        predicted = H.predictions(model, batches).numpy()
        out = np.empty(len(rows), dtype=np.int64)
        out[np.array(batches.order, dtype=np.int64)] = predicted
        return out
