"""ferret's faithfulness metrics (Attanasio et al., 2023, "ferret: a Framework for Benchmarking Explainers on
Transformers", EACL demos), on the shared conventions of `attexp.evaluate.faithfulness` (content tokens, perturbation,
the batched and de-duplicated scorer):

- `ferret_aopc`: AOPC comprehensiveness and sufficiency: thresholds 10%, 20%, ..., 100% of the content tokens,
  k = floor(fraction * n) with k = 0 skipped, only tokens with a positive score enter a rationale, and a threshold
  whose rationale equals the previous one is left out of the mean.
- `tau_loo`: ferret's leave-one-out correlation: Kendall's tau between the attributions and the drop in
  p(target) when each content token alone is deleted (occlusion with window 1). Higher is more faithful.

`benchmarks/evaluate_speed.py` runs ferret's own evaluators beside them.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator
from scipy import stats

from attexp.config.schema import ComponentConfig
from attexp.evaluate.base import MetricResult
from attexp.evaluate.faithfulness import FaithfulnessMetric, _increasing_fractions, _suffix, _summary
from attexp.evaluate.model_scorer import Instance, ModelScorer, Perturbation, Row, full_probabilities
from attexp.registry import METRICS

FERRET_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 11))


# ------------------------------------------------------------------------------------------- ferret


class FerretAOPCConfig(ComponentConfig):
    """ferret's AOPC comprehensiveness and sufficiency (Attanasio et al., 2023).

    thresholds: fractions of the content tokens (default 10%, 20%, ..., 100%), k = floor(fraction * n), k = 0
    skipped; only_positive (True): only tokens with a score > 0 enter a rationale; a threshold whose rationale
    equals the previous one is left out of the mean. perturbation: `delete` (ferret's default) or `mask`/`pad`.
    Summary keys: `ferret_comprehensiveness`, `ferret_sufficiency` (suffixed `_mask`/`_pad`).
    """

    type: Literal["ferret_aopc"] = "ferret_aopc"
    thresholds: list[float] = Field(default_factory=lambda: list(FERRET_THRESHOLDS), min_length=1)
    only_positive: bool = True
    perturbation: Perturbation = "delete"

    _fractions = field_validator("thresholds")(lambda thresholds: _increasing_fractions("thresholds", thresholds))


@METRICS.register("ferret_aopc", FerretAOPCConfig)
class FerretAOPC(FaithfulnessMetric):
    """ferret's AOPC comprehensiveness and sufficiency: 10%..100%, positive scores only (Attanasio et al., 2023)."""

    config: FerretAOPCConfig

    def rationales(self, inst: Instance) -> list[np.ndarray]:
        """The distinct rationales (content positions) of one instance, one per threshold kept."""
        out: list[np.ndarray] = []
        last: set[int] | None = None
        for fraction in self.config.thresholds:
            k = int(fraction * inst.n)
            if k <= 0 or k > inst.n:
                continue
            top = inst.order[:k]
            if self.config.only_positive:
                top = top[inst.scores[top] > 0]
            if last is not None and set(top.tolist()) == last:
                continue
            last = set(top.tolist())
            out.append(top)
        return out

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        suffix = _suffix(cfg.perturbation, "delete")
        comp_key, suff_key = f"ferret_comprehensiveness{suffix}", f"ferret_sufficiency{suffix}"
        usable = self.usable(instances)
        full = full_probabilities(usable, scorer, cfg.type)
        probabilities = scorer.probabilities(self.perturbed(usable, scorer))
        per_instance: dict[int, dict[str, Any]] = {}
        start = 0
        for i, inst in enumerate(usable):
            m = len(self.rationales(inst))
            rows = probabilities[start : start + 2 * m, inst.target]
            start += 2 * m
            p = full[i, inst.target]
            per_instance[inst.idx] = {comp_key: float(np.mean(p - rows[:m])), suff_key: float(np.mean(p - rows[m:]))}
        summary = _summary(per_instance, [comp_key, suff_key], skipped=len(instances) - len(usable))
        return MetricResult(summary, per_instance)

    def usable(self, instances: list[Instance]) -> list[Instance]:
        return [inst for inst in instances if inst.n > 0 and self.rationales(inst)]

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        replacement = scorer.replacement_id(self.config.perturbation)
        sequences = []
        for inst in usable:
            rationales = self.rationales(inst)
            sequences += [inst.without(top, replacement) for top in rationales]
            sequences += [inst.only(top, replacement) for top in rationales]
        return sequences


# ------------------------------------------------------------------------------------------ tau-LOO


class TauLOOConfig(ComponentConfig):
    """ferret's leave-one-out Kendall tau: tau-b between the attributions and p(x) - p(x without token i).

    Over content tokens; instances with fewer than 2 content tokens or a constant vector are skipped.
    perturbation: `delete` (ferret's) or `mask`/`pad` (occlusion). Summary key: `tau_loo`.
    """

    type: Literal["tau_loo"] = "tau_loo"
    perturbation: Perturbation = "delete"


@METRICS.register("tau_loo", TauLOOConfig)
class TauLOO(FaithfulnessMetric):
    """Kendall tau of the attributions with leave-one-out importance (ferret's tau-LOO)."""

    config: TauLOOConfig

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        key = "tau_loo" + _suffix(self.config.perturbation, "delete")
        usable = self.usable(instances)
        full = full_probabilities(usable, scorer, self.config.type)
        probabilities = scorer.probabilities(self.perturbed(usable, scorer))
        per_instance: dict[int, dict[str, Any]] = {}
        start, skipped = 0, len(instances) - len(usable)
        for i, inst in enumerate(usable):
            left_out = probabilities[start : start + inst.n, inst.target]
            start += inst.n
            importance = full[i, inst.target] - left_out  # (n,)
            scores = inst.scores[inst.content]
            if np.ptp(importance) == 0 or np.ptp(scores) == 0:
                skipped += 1
                continue
            per_instance[inst.idx] = {key: float(stats.kendalltau(scores, importance).statistic)}
        return MetricResult(_summary(per_instance, [key], skipped), per_instance)

    def usable(self, instances: list[Instance]) -> list[Instance]:
        return [inst for inst in instances if inst.n >= 2]

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        replacement = scorer.replacement_id(self.config.perturbation)
        return [inst.without(np.array([pos]), replacement) for inst in usable for pos in inst.content]
