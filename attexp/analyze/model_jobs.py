"""What attention attribution is for (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution", AAAI): two
evaluate-stage jobs that use the per-head Self-Attention Attribution maps on any BERT-family classifier.

- `head_pruning` (Sec. 4.1): head importance from attribution (and the Taylor baseline of Michel et al. 2019)
  on `importance_size` instances of `importance_split` with their gold labels as targets, then accuracy on
  the whole `eval_split` with the least important heads masked at 0, 10, ..., 100%, for the attribution
  order, the Taylor order and a seeded random order (see `attexp.analyze.heads`).
- `triggers` (Sec. 4.3): attribution patterns from the first `source_size` instances of `source_split`,
  inserted as adversarial triggers into every instance of `eval_split`; accuracy per gold class before and
  after each trigger (see `attexp.analyze.triggers`).

Output (`logs/<name>/`): the expensive per-instance part streams to a resumable JSON-lines file
(`head_scores.jsonl`: each instance's per-head attribution maxima and Taylor scores; `patterns.jsonl`: each
source instance's pattern), so a killed job rerun with the same command continues where it stopped. Then
`records.jsonl` (head_pruning: one record per rate; triggers: one per trigger), `metrics.json`, `table.md`
and `plots/*.png`.
"""

from __future__ import annotations

import logging
import math
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from tqdm import tqdm

from attexp.analyze import heads as H
from attexp.analyze import triggers as TR
from attexp.config.schema import ClassifierRef, JobConfig, NeutralDefault, PaperNumbers, Upstream
from attexp.errors import AttexpError
from attexp.evaluate.report import format_table, paper_comparison, paper_report
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution
from attexp.io.files import ResumableJsonlWriter, atomic_write_text, read_jsonl, write_json, write_jsonl
from attexp.io.records import DATASET, HEAD_PRUNING, TRIGGERS
from attexp.models.encoder import ENCODER_MODEL_TYPES, Encoder
from attexp.models.inputs import structural_ids, tokenize_rows
from attexp.models.loading import resolve_device
from attexp.registry import JOBS
from attexp.runner import Job, JobContext

log = logging.getLogger(__name__)
Split = Literal["train", "validation", "test"]


class _AnalysisConfig(JobConfig):
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


def _with_paper(config: _AnalysisConfig, metrics: dict, table: str, rows: list[dict], key: str) -> str:
    """Add the `paper:` comparison to metrics.json's content and return the table with its report appended."""
    if config.paper is None:
        return table
    metrics["paper"] = paper_comparison(config.paper.model_dump(), rows, keys=(key,))
    return table + "\n\n" + paper_report(metrics["paper"])


class HeadPruningConfig(_AnalysisConfig):
    """Prune heads by attribution, Taylor and random order; accuracy per rate.

    importance_split / importance_size: where the importance comes from (200 validation instances, gold
    labels as targets). rates: percentages of all heads masked (0, 10, ..., 100). orders: which orders to
    measure (only their importance is computed). taylor: which Taylor criterion (`michel`, the paper's; or
    `official`, the AttAttr code's). random_seeds: the random order is drawn with seeds seed, seed + 1, ...; its
    curve is their mean, with the min-max band over seeds (`random_min`, `random_max`; one seed gives a single
    order, so pruning the "right" heads by luck would read as a finding).
    """

    job: Literal["head_pruning"] = "head_pruning"
    importance_split: Split = "validation"
    importance_size: int = Field(200, ge=1)
    rates: list[float] = Field(default_factory=lambda: [float(r) for r in range(0, 101, 10)], min_length=1)
    orders: list[Literal["attattr", "taylor", "random"]] = Field(default_factory=lambda: list(H.ORDERS), min_length=1)
    random_seeds: int = Field(5, ge=1, description="random orders drawn (seeds seed, seed+1, ...); mean and band")
    taylor: Annotated[Literal["michel", "official"], NeutralDefault()] = Field(
        "michel",
        description="the Taylor baseline: Michel et al.'s gold-label cross-entropy criterion (the paper's), or "
        "'official', the AttAttr code's (gradient of the sum of the logits, |.| per token); see attexp.analyze.heads",
    )

    @field_validator("rates")
    @classmethod
    def _rates_in_range(cls, rates: list[float]) -> list[float]:
        bad = [r for r in rates if not 0 <= r <= 100]
        if bad:
            raise ValueError(f"rates must be percentages in 0..100, got {bad}")
        return rates


class TriggersConfig(_AnalysisConfig):
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


def _number(value: float) -> int | float:
    """A rate as printed: 10 rather than 10.0000."""
    return int(value) if float(value).is_integer() else value


def _setup(config: _AnalysisConfig, ctx: JobContext):
    device = resolve_device(config.device)
    model, tokenizer = ctx.classifier(config.model, device=device)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and config.max_length > limit:
        raise AttexpError(f"max_length={config.max_length} exceeds the model's max_position_embeddings={limit}.")
    return device, model, tokenizer


def _rows(ctx: JobContext, config: _AnalysisConfig, split: str, limit: int | None) -> list[dict]:
    rows = ctx.upstream(config.data).read(DATASET, f"{split}.jsonl")
    return rows[:limit] if limit is not None else rows


def _attattr(config: _AnalysisConfig, model, tokenizer) -> AttentionAttribution:
    settings = AttAttrConfig(steps=config.steps, internal_batch_size=config.internal_batch_size, return_maps=True)
    return AttentionAttribution(settings, model, tokenizer, {})


@JOBS.register("head_pruning", HeadPruningConfig)
class HeadPruningJob(Job):
    """Head importance by Self-Attention Attribution vs Taylor vs random, as accuracy under head pruning."""

    architectures = ENCODER_MODEL_TYPES

    schema = HEAD_PRUNING
    folder = "logs"

    def run(self, config: HeadPruningConfig, ctx: JobContext) -> None:
        device, model, tokenizer = _setup(config, ctx)
        encoder = Encoder(model)
        layers, heads = encoder.num_layers, encoder.num_heads
        source = _rows(ctx, config, config.importance_split, config.importance_size)
        scores = self._head_scores(config, ctx, model, tokenizer, encoder, source, device)
        importance = {}  # [L, heads] per measured order
        if "attattr" in config.orders:
            importance["attattr"] = torch.tensor([s["attattr"] for s in scores]).sum(dim=0)
        if "taylor" in config.orders:
            importance["taylor"] = H.normalise_per_layer(torch.tensor([s["taylor"] for s in scores]).sum(dim=0))
        orders = {name: H.pruning_order(importance[name]) for name in config.orders if name != "random"}
        draws = [f"random@{config.seed + k}" for k in range(config.random_seeds)] if "random" in config.orders else []
        orders.update({draw: H.random_order(layers, heads, config.seed + k) for k, draw in enumerate(draws)})

        rows = _rows(ctx, config, config.eval_split, config.eval_limit)
        batches = H.Batches(rows, tokenizer, config.eval_batch_size, config.max_length, device)
        base = H.accuracy(model, batches)
        curves = H.pruning_curves(model, batches, orders, config.rates, progress=config.progress)
        band = None
        if draws:  # the random order: mean over the seeds, with its min-max band
            runs = np.array([curves.pop(draw) for draw in draws])  # [seeds, rates]
            curves["random"] = runs.mean(axis=0).tolist()
            band = (runs.min(axis=0).tolist(), runs.max(axis=0).tolist())
            random_orders = {draw: orders.pop(draw) for draw in draws}
            orders["random"] = random_orders[draws[0]]
        total = layers * heads
        records = [
            {
                "idx": k,
                "rate": rate,
                "heads_pruned": H.pruned_count(rate, total),
                "accuracy": {name: curves[name][k] for name in orders},
                "pruned": {name: order[: H.pruned_count(rate, total)] for name, order in orders.items()},
                **({"random_band": [band[0][k], band[1][k]]} if band else {}),
            }
            for k, rate in enumerate(config.rates)
        ]
        write_jsonl(ctx.path("records.jsonl"), records)
        # area under each curve (mean accuracy over the rates, trapezoid over the rate axis when it spans)
        span = max(config.rates) - min(config.rates)
        area = {
            name: float(np.trapezoid(values, config.rates) / span) if span > 0 else float(np.mean(values))
            for name, values in curves.items()
        }
        columns = ["rate", "heads_pruned", *orders, *(["random_min", "random_max"] if band else [])]
        table_rows = [
            {
                "rate": _number(r["rate"]),
                "heads_pruned": r["heads_pruned"],
                **r["accuracy"],
                **({"random_min": r["random_band"][0], "random_max": r["random_band"][1]} if band else {}),
            }
            for r in records
        ]
        table = format_table(table_rows, columns)
        if band:
            table += (
                f"\n\nrandom: the mean over {config.random_seeds} random orders (seeds {config.seed}.."
                f"{config.seed + config.random_seeds - 1}); random_min / random_max: their range at each rate."
            )
        metrics = {
            "model": config.model,
            "model_accuracy": base,
            "instances": {"importance": len(scores), "evaluation": len(rows)},
            "importance": {name: values.tolist() for name, values in importance.items()},
            "curves": {
                name: {
                    "x": config.rates,
                    "y": values,
                    "xlabel": "heads pruned (%)",
                    "ylabel": "accuracy",
                    **({"band": list(band), "seeds": config.random_seeds} if name == "random" and band else {}),
                }
                for name, values in curves.items()
            },
            "area": area,
            "table": {"columns": columns, "rows": [[row.get(c) for c in columns] for row in table_rows]},
        }
        table = _with_paper(config, metrics, table, table_rows, "rate")
        write_json(ctx.path("metrics.json"), metrics)
        atomic_write_text(ctx.path("table.md"), table + "\n")
        log.info("%s: accuracy %.4f unpruned; by pruning rate:\n%s", config.name, base, table)
        plots = []
        if config.plots:
            from attexp import plots as P

            plots = P.curve_plots(
                {
                    name: {
                        "pruning_curve": {
                            "x": config.rates,
                            "y": values,
                            "xlabel": "heads pruned (%)",
                            "ylabel": f"accuracy on {config.eval_split}",
                            **({"band": list(band)} if name == "random" and band else {}),
                        }
                    }
                    for name, values in curves.items()
                },
                ctx.path("plots"),
                {"random": "random"},
            )
            plots = [str(p.relative_to(ctx.out_dir)) for p in plots]
        ctx.counts.update(importance_instances=len(scores), evaluation_instances=len(rows), rates=len(records))
        ctx.manifest.model_accuracy, ctx.manifest.area, ctx.manifest.plots = base, area, plots
        ctx.log_metrics({"model_accuracy": base, **{f"area_{k}": v for k, v in area.items()}})
        for path in plots:
            ctx.tracker.log_image(f"plots/{path.rsplit('/', 1)[-1].removesuffix('.png')}", ctx.path(path))

    def _head_scores(self, config, ctx, model, tokenizer, encoder, source, device) -> list[dict]:
        """Per instance of `source`: its heads' attribution maxima and Taylor scores (resumable)."""
        if ctx.path("head_scores.jsonl").exists():  # finished by an earlier run that stopped later on
            return read_jsonl(ctx.path("head_scores.jsonl"), required=("idx", "attattr", "taylor"))
        writer = ResumableJsonlWriter(ctx.path("head_scores.jsonl"))
        try:
            todo = [row for row in source if row["idx"] not in writer.done]
            if writer.done:
                log.info("%s: resuming, %d of %d instances scored", config.name, len(writer.done), len(source))
            explainer = _attattr(config, model, tokenizer) if "attattr" in config.orders else None
            batches = H.Batches(todo, tokenizer, config.batch_size, config.max_length, device)
            bar = tqdm(total=len(todo), desc="head importance", unit="row", disable=not config.progress)
            for batch, rows in zip(batches.batches, batches.rows, strict=True):
                # [B, L, heads] each; an order that is not measured is not computed (null)
                maxima = H.attattr_head_maxima(explainer, batch).cpu().tolist() if explainer else [None] * len(rows)
                taylor = (
                    H.taylor_head_scores(encoder, batch, config.taylor).cpu().tolist()
                    if "taylor" in config.orders
                    else [None] * len(rows)
                )
                writer.write(
                    {"idx": row["idx"], "attattr": maxima[i], "taylor": taylor[i]} for i, row in enumerate(rows)
                )
                bar.update(len(rows))
            bar.close()
            writer.finalize()
        finally:
            writer.close()
        return read_jsonl(ctx.path("head_scores.jsonl"), required=("idx", "attattr", "taylor"))


@JOBS.register("triggers", TriggersConfig)
class TriggersJob(Job):
    """Adversarial triggers from Self-Attention Attribution patterns: accuracy per class before and after."""

    architectures = ENCODER_MODEL_TYPES

    schema = TRIGGERS
    folder = "logs"

    def run(self, config: TriggersConfig, ctx: JobContext) -> None:
        device, model, tokenizer = _setup(config, ctx)
        specials = structural_ids(tokenizer)
        patterns = self._patterns(config, ctx, model, tokenizer, device)
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

        rows = _rows(ctx, config, config.eval_split, config.eval_limit)
        features = tokenize_rows(tokenizer, rows, config.max_length)
        classes = sorted({int(r["label"]) for r in rows})
        labels = np.array([int(r["label"]) for r in rows])
        clean = self._predict(model, tokenizer, rows, features, config, device)
        before = TR.per_class_accuracy(clean, labels, classes)
        records, seen = [], {}
        for rank, pattern in enumerate(tqdm(kept, desc="triggers", unit="trigger", disable=not config.progress)):
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
                seen[trigger] = TR.per_class_accuracy(predicted, labels, classes)
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
        accuracy = float((clean == labels).mean()) if len(rows) else math.nan
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
        table = _with_paper(config, metrics, table, table_rows, "rank")
        write_json(ctx.path("metrics.json"), metrics)
        atomic_write_text(ctx.path("table.md"), table + "\n")
        log.info("%s: accuracy per class %s; top triggers by accuracy drop:\n%s", config.name, before, table)
        plots = self._plot(best, ctx) if config.plots and best else []
        ctx.counts.update(patterns=len(patterns), triggers=len(records), evaluation_instances=len(rows))
        ctx.manifest.accuracy_per_class, ctx.manifest.plots = before, plots
        ctx.log_metrics({"accuracy": accuracy, "triggers": len(records), "top_drop": best[0]["drop"] if best else 0.0})

    def _patterns(self, config: TriggersConfig, ctx, model, tokenizer, device) -> list[dict]:
        """Each source instance's pattern (resumable): idx, input_ids, tokens, target, label and the edges."""
        if ctx.path("patterns.jsonl").exists():  # finished by an earlier run that stopped later on
            return read_jsonl(ctx.path("patterns.jsonl"), required=("idx", "input_ids", "tokens", "scores"))
        source = _rows(ctx, config, config.source_split, config.source_size)
        writer = ResumableJsonlWriter(ctx.path("patterns.jsonl"))
        try:
            todo = [row for row in source if row["idx"] not in writer.done]
            explainer = _attattr(config, model, tokenizer)
            batches = H.Batches(todo, tokenizer, config.batch_size, config.max_length, device)
            bar = tqdm(total=len(todo), desc="patterns", unit="row", disable=not config.progress)
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
                writer.write(out)
                bar.update(len(rows))
            bar.close()
            writer.finalize()
        finally:
            writer.close()
        return read_jsonl(ctx.path("patterns.jsonl"), required=("idx", "input_ids", "tokens", "scores"))

    @staticmethod
    def _predict(model, tokenizer, rows, features, config, device) -> np.ndarray:
        batches = H.Batches(rows, tokenizer, config.eval_batch_size, config.max_length, device, features=features)
        predicted = H.predictions(model, batches).numpy()
        out = np.empty(len(rows), dtype=np.int64)
        out[np.array(batches.order, dtype=np.int64)] = predicted
        return out

    @staticmethod
    def _plot(best: list[dict], ctx: JobContext) -> list[str]:
        from matplotlib.figure import Figure

        from attexp.plots import figure_text, save_figure

        fig = Figure(figsize=(6.4, 0.4 * len(best) + 1.2))
        ax = fig.subplots()
        names = [figure_text(" ".join(r["trigger"])) for r in best][::-1]
        ax.barh(names, [r["drop"] for r in best][::-1], color="#d7301f")
        ax.set_xlabel("accuracy drop of the attacked class")
        ax.set_title("top adversarial triggers")
        path = save_figure(fig, ctx.path("plots/trigger_drops.png"))
        return [str(path.relative_to(ctx.out_dir))]
