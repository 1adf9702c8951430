"""Head pruning by Self-Attention Attribution (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution", AAAI,
Sec. 4.1), the `head_pruning` job: head importance from attribution (and the Taylor baseline of Michel et al.
2019) on `importance_size` instances of `importance_split` with their gold labels as targets, then accuracy on the
whole `eval_split` with the least important heads masked at 0, 10, ..., 100%, for the attribution order, the
Taylor order and seeded random orders (see `attexp.analyze.heads`).

Output (`logs/<name>/`): each importance instance's per-head attribution maxima and Taylor scores stream to a
resumable `head_scores.jsonl` (a killed job rerun with the same command continues where it stopped); then
`records.jsonl` (one record per rate), `metrics.json`, `table.md` and `plots/*.png`. Under torchrun every rank
scores a share of the importance instances and of the evaluation rows (`model_analysis.per_instance_pass`, the
correct counts summed over the ranks): the same table as one process. As a job array (`--shard I/N`) every task
scores its share of the importance instances, and the task that finishes the last share evaluates as one process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from tqdm import tqdm

from attexp import plots as P
from attexp.analyze import heads as H
from attexp.analyze.model_analysis import (
    AnalysisConfig,
    ModelAnalysisJob,
    Split,
    attattr_of,
    number,
    per_instance_pass,
    rows_of,
    setup,
    with_paper,
)
from attexp.config.schema import NeutralDefault
from attexp.evaluate.report import format_table
from attexp.io.files import atomic_write_text, write_json, write_jsonl
from attexp.io.records import HEAD_PRUNING
from attexp.models.encoder import Encoder
from attexp.registry import JOBS
from attexp.runner import JobContext

log = logging.getLogger(__name__)


class HeadPruningConfig(AnalysisConfig):
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


@JOBS.register("head_pruning", HeadPruningConfig)
class HeadPruningJob(ModelAnalysisJob):
    """Head importance by Self-Attention Attribution vs Taylor vs random, as accuracy under head pruning."""

    schema = HEAD_PRUNING

    def run(self, config: HeadPruningConfig, ctx: JobContext) -> None:
        device, model, tokenizer = setup(config, ctx)
        encoder = Encoder(model)
        layers, heads = encoder.num_layers, encoder.num_heads
        source = rows_of(ctx, config, config.importance_split, config.importance_size)
        scores = self._head_scores(config, ctx, model, tokenizer, encoder, source, device)
        if scores is None:  # a job-array task: its share of the scores is written; `finish` evaluates
            return
        importance = {}  # [L, heads] per measured order
        if "attattr" in config.orders:
            importance["attattr"] = torch.tensor([s["attattr"] for s in scores]).sum(dim=0)
        if "taylor" in config.orders:
            importance["taylor"] = H.normalise_per_layer(torch.tensor([s["taylor"] for s in scores]).sum(dim=0))
        orders = {name: H.pruning_order(importance[name]) for name in config.orders if name != "random"}
        draws = [f"random@{config.seed + k}" for k in range(config.random_seeds)] if "random" in config.orders else []
        orders.update({draw: H.random_order(layers, heads, config.seed + k) for k, draw in enumerate(draws)})

        rows = rows_of(ctx, config, config.eval_split, config.eval_limit)
        split = ctx.world_size > 1  # every rank its share of the rows; the accuracies count all of them
        mine = ctx.share(rows)
        batches = H.Batches(mine, model, tokenizer, config.eval_batch_size, config.max_length, device)
        base = H.accuracy(model, batches, over_ranks=split)
        progress = config.progress and ctx.is_main
        curves = H.pruning_curves(model, batches, orders, config.rates, progress=progress, over_ranks=split)
        if not ctx.is_main:
            return
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
                "rate": number(r["rate"]),
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
        table = with_paper(config, metrics, table, table_rows, "rate")
        write_json(ctx.path("metrics.json"), metrics)
        atomic_write_text(ctx.path("table.md"), table + "\n")
        log.info("%s: accuracy %.4f unpruned; by pruning rate:\n%s", config.name, base, table)
        plots = []
        if config.plots:
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

    def _head_scores(self, config, ctx, model, tokenizer, encoder, source, device) -> list[dict] | None:
        """Per instance of `source`: its heads' attribution maxima and Taylor scores (resumable; under torchrun a
        share per rank, `per_instance_pass`), sorted by idx."""
        explainer = attattr_of(config, model, tokenizer) if "attattr" in config.orders else None

        def score(todo: list[dict]) -> Iterator[list[dict]]:
            batches = H.Batches(todo, model, tokenizer, config.batch_size, config.max_length, device)
            bar = tqdm(
                total=len(todo), desc="head importance", unit="row", disable=not (config.progress and ctx.is_main)
            )
            for batch, rows in zip(batches.batches, batches.rows, strict=True):
                # [B, L, heads] each; an order that is not measured is not computed (null)
                maxima = H.attattr_head_maxima(explainer, batch).cpu().tolist() if explainer else [None] * len(rows)
                taylor = (
                    H.taylor_head_scores(encoder, batch, config.taylor).cpu().tolist()
                    if "taylor" in config.orders
                    else [None] * len(rows)
                )
                yield [{"idx": row["idx"], "attattr": maxima[i], "taylor": taylor[i]} for i, row in enumerate(rows)]
                bar.update(len(rows))
            bar.close()

        return per_instance_pass(ctx, "head_scores.jsonl", source, score, ("idx", "attattr", "taylor"))
