"""Score explanation runs with metrics: the computation of the evaluate stage, shared by the job and the Python API
(`attexp.evaluate`), which differ only in where records come from and where results go.

A run is `(name, explainer type, records)`. `score_runs` first scores, in one pass, every perturbed input the
model-reading metrics know in advance over every run (`score_planned`), then computes every metric on every run, the
table (means), the per-instance values, the mean curves and, when a `random` run is among them, each run against
that floor (`attexp.evaluate.report.versus_floor`). `floor_records` makes that random run from another run's records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from attexp.evaluate.base import Metric
from attexp.evaluate.faithfulness import FaithfulnessMetric
from attexp.evaluate.model_scorer import ModelScorer, Row, prepare
from attexp.evaluate.report import direction, floor_report, format_table, rankings, rankings_report, versus_floor
from attexp.explain.baseline import random_scores
from attexp.models.inputs import structural_positions
from attexp.models.memo import row_key

log = logging.getLogger(__name__)

FLOOR = "random-floor"
FLOOR_SEED = 0

Run = tuple[str, str | None, list[dict]]


@dataclass
class Scores:
    """What `score_runs` computed. `rows` are the table rows (means), `columns` their keys in order, `table` the
    Markdown table (with the statement against the random floor, if any), `summary` every summary value per run,
    `per_instance` the values per (run, idx), `curves` the mean curves per run, `versus` each run against the
    floor (`floor` its name, None without one)."""

    rows: list[dict]
    columns: list[str]
    table: str
    summary: dict[str, dict]
    per_instance: dict[tuple[str, int], dict]
    curves: dict[str, dict]
    floor: str | None
    versus: dict[str, dict] = field(default_factory=dict)
    ranks: dict[str, Any] = field(default_factory=dict)

    def metrics_json(self, reference: str | None, model: Any, cost: dict) -> dict[str, Any]:
        """The content of the evaluate stage's `metrics.json`."""
        return {
            "reference": reference,
            "model": model,
            "results": self.summary,
            "table": {
                "columns": self.columns,
                "rows": [[r.get(c) for c in self.columns] for r in self.rows],
                "directions": [direction(c) for c in self.columns],
            },
            "curves": self.curves,
            "random_floor": {"name": self.floor, "versus": self.versus} if self.floor else None,
            "rankings": self.ranks or None,
            "evaluation_cost": cost,
        }

    def instances(self) -> list[dict]:
        """The per-instance rows of `instances.jsonl`, sorted by run name and idx."""
        return sorted(self.per_instance.values(), key=lambda r: (r["explanations"], r["idx"]))


def score_runs(
    runs: Sequence[Run],
    metrics: Sequence[Metric],
    reference: list[dict] | None,
    scorer: ModelScorer | None,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Scores:
    """Every metric on every run (records joined with `reference` by idx where a metric needs it); `extra` adds
    columns per run name (e.g. what a learned explainer's teacher cost) after the metrics'."""
    summary: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    per_instance: dict[tuple[str, int], dict] = {}
    rows = []
    if scorer is not None:
        score_planned(runs, metrics, scorer)
    for name, explainer, records in runs:
        row: dict = {"explanations": name, "explainer": explainer}
        summary[name] = {"explainer": explainer, "instances": len(records)}
        for metric in metrics:
            kind = metric.config.type
            before = (scorer.forward_passes, scorer.seconds) if scorer else (0, 0.0)
            result = metric.compute(records, reference, scorer=scorer if metric.needs_model else None)
            if scorer and metric.needs_model:
                passes, seconds = scorer.forward_passes - before[0], scorer.seconds - before[1]
                log.info("%s: %s took %d forward passes, %.1f s", name, kind, passes, seconds)
            for key, value in result.summary.items():
                summary[name][f"{kind}.{key}" if key != kind else key] = value
                row[key] = value
            for idx, values in result.per_instance.items():
                per_instance.setdefault((name, idx), {"explanations": name, "idx": idx}).update(values)
            for key, curve in result.curves.items():
                curves.setdefault(name, {})[key] = curve
        row.update((extra or {}).get(name, {}))
        summary[name].update((extra or {}).get(name, {}))
        rows.append(row)
    # the table keeps the means; spreads (`_std`) and the reference's own cost stay in metrics.json
    columns = ["explanations", "explainer"] + [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k not in ("explanations", "explainer") and not k.endswith("_std") and not k.startswith("reference_")
    ]
    table = format_table(rows, columns)
    floor = next((name for name, explainer, _ in runs if explainer == "random"), None)
    by_run: dict[str, dict[int, dict]] = {}
    for (name, idx), values in per_instance.items():
        by_run.setdefault(name, {})[idx] = values
    versus = versus_floor(by_run, floor, columns) if floor else {}
    if versus:
        table += "\n\n" + floor_report(versus, floor, {name: explainer for name, explainer, _ in runs})
    ranks = rankings(rows, columns) if len(rows) >= 2 else {}
    if ranks.get("columns"):
        table += "\n\n" + rankings_report(ranks)
    return Scores(rows, columns, table, summary, per_instance, curves, floor, versus, ranks)


def score_planned(runs: Sequence[Run], metrics: Sequence[Metric], scorer: ModelScorer) -> None:
    """Score every input the model-reading metrics know in advance (`FaithfulnessMetric.inputs`: the unperturbed
    inputs, the deletions of ERASER's bins, ferret's thresholds, the leave-one-out rows, the normalised AOPC's curves
    and exact subsets, the soft metrics' empty inputs, ...) for every run, as one set: each distinct input once,
    whichever metrics and explainers ask for it (the unperturbed and the leave-one-out inputs are the same for every
    explainer, the random floor included), sorted by length and batched (`ModelScorer`). The metrics then find their
    rows scored; only the inputs that depend on scores (the beam search's steps, the masked embeddings of the soft
    metrics) are run by the metrics themselves."""
    planned: dict[bytes, Row] = {}  # distinct as they come: K explainers ask for the same rows K times
    asked = 0
    for _, _, records in runs:
        if not records:
            continue
        instances = prepare(records, scorer)
        for metric in metrics:
            if isinstance(metric, FaithfulnessMetric):
                for row in metric.inputs(instances, scorer):
                    planned.setdefault(row_key(*row), row)
                    asked += 1
    if planned:
        passes, rows, seconds = scorer.forward_passes, scorer.rows, scorer.seconds
        scorer.probabilities(list(planned.values()))
        log.info(
            "the metrics' %d planned inputs: %d distinct, %d run, %d forward passes, %.1f s",
            asked, len(planned), scorer.rows - rows, scorer.forward_passes - passes, scorer.seconds - seconds,
        )  # fmt: skip


def floor_records(records: list[dict], tokenizer: Any | None) -> list[dict]:
    """Copies of `records` with seeded uniform random attributions (0 at structural specials, known from
    `tokenizer`; without one specials get random scores too) and zero cost."""
    out = []
    for record in records:
        ids = np.asarray(record["input_ids"], dtype=np.int64)  # (T,)
        if tokenizer is not None:
            ids_t = torch.from_numpy(ids)[None]
            structural = structural_positions(ids_t, torch.ones_like(ids_t), tokenizer)[0].numpy()
        else:
            structural = np.zeros(len(ids), dtype=bool)
        scores = random_scores(ids, structural, FLOOR_SEED, "uniform")
        out.append(
            {**record, "attributions": scores.tolist(), "seconds": 0.0, "forward_passes": 0, "backward_passes": 0}
        )
    return out


def with_floor(runs: list[Run], metrics: Sequence[Metric], tokenizer: Any | None) -> list[Run]:
    """`runs` plus a random-floor run on the first run's instances, unless one is random already or no metric
    reads attributions."""
    if any(explainer == "random" for _, explainer, _ in runs) or not any(m.uses_attributions for m in metrics):
        return list(runs)
    return [*runs, (FLOOR, "random", floor_records(runs[0][2], tokenizer))]
