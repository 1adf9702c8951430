"""What the records say besides the attributions: how good the explained model's predictions are (`f1`) and
what an explanation cost (`cost`: seconds and model passes per instance, and the speed-up over a reference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field
from sklearn.metrics import accuracy_score, f1_score

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError
from attexp.evaluate.base import Metric, MetricResult, join_by_idx, record_field
from attexp.io.manifests import COST_FIELDS
from attexp.registry import METRICS

# -------------------------------------------------------------------------------------------------- f1


class F1Config(ComponentConfig):
    """F1 and accuracy of the recorded predictions (argmax of `predictions`) against `label`.

    `average="weighted"` is emp-exp's choice (sklearn's support-weighted mean of per-class F1). A class that is
    never predicted counts as F1 0 (sklearn `zero_division=0`). Per instance: `correct` (1.0 or 0.0).
    """

    type: Literal["f1"] = "f1"
    average: Literal["weighted", "macro", "micro"] = Field("weighted", description="sklearn f1_score average")


@METRICS.register("f1", F1Config)
class F1(Metric):
    """Weighted F1 and accuracy of the explained model's predictions; needs no reference."""

    uses_attributions = False

    config: F1Config

    def compute(self, records: list[dict], reference: list[dict] | None = None, *, scorer: Any = None) -> MetricResult:
        if not records:
            raise AttexpError("f1: no records to evaluate; the explanations artifact is empty.")
        labels, predicted = [], []
        for record in records:
            probabilities = record_field(record, "predictions", "explanations")
            if not probabilities:
                raise AttexpError(
                    f"f1: record idx={record.get('idx')} has no predictions; f1 needs the explained model's class "
                    f"probabilities. Evaluate f1 on an explain job that records them."
                )
            labels.append(int(record_field(record, "label", "explanations")))
            predicted.append(int(np.argmax(probabilities)))
        summary = {
            "f1": float(f1_score(labels, predicted, average=self.config.average, zero_division=0)),
            "accuracy": float(accuracy_score(labels, predicted)),
            "n": len(labels),
        }
        per_instance = {
            int(r["idx"]): {"correct": float(y == p)} for r, y, p in zip(records, labels, predicted, strict=True)
        }
        return MetricResult(summary, per_instance)


# ------------------------------------------------------------------------------------------------ cost


class CostConfig(ComponentConfig):
    """Mean cost per instance: `seconds`, `forward_passes`, `backward_passes`.

    With a reference, records are paired by idx (input_ids are not compared: the cost of explaining the same
    instance with a different model is still a fair comparison), both sides are averaged over the paired
    instances only, and the summary adds the reference's means (`reference_seconds`, ...), `speedup`
    (reference seconds / these seconds) and `pass_ratio` (reference passes / these passes, forward plus
    backward; unlike seconds it does not depend on the hardware). A ratio over zero cost is `inf`.
    """

    type: Literal["cost"] = "cost"


@METRICS.register("cost", CostConfig)
class Cost(Metric):
    """Seconds and model passes per instance, and the speed-up over a reference explainer."""

    uses_attributions = False

    config: CostConfig

    def compute(self, records: list[dict], reference: list[dict] | None = None, *, scorer: Any = None) -> MetricResult:
        if reference is None:
            if not records:
                raise AttexpError("cost: no records to evaluate; the explanations artifact is empty.")
            return MetricResult(_mean_cost(records, "explanations"))
        pairs = join_by_idx(records, reference, check_input_ids=False)
        summary = _mean_cost([a for a, _ in pairs], "explanations")
        theirs = _mean_cost([b for _, b in pairs], "reference")
        summary.update({f"reference_{k}": v for k, v in theirs.items() if k != "n"})
        summary["speedup"] = _ratio(theirs["seconds"], summary["seconds"])
        summary["pass_ratio"] = _ratio(
            theirs["forward_passes"] + theirs["backward_passes"],
            summary["forward_passes"] + summary["backward_passes"],
        )
        return MetricResult(summary)


def _mean_cost(records: Sequence[dict], where: str) -> dict[str, float]:
    out = {key: float(np.mean([float(record_field(r, key, where)) for r in records])) for key in COST_FIELDS}
    out["n"] = len(records)
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf
