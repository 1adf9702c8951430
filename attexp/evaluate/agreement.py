"""Agreement with a reference explainer: how close is an explainer to another one?

`mse` (the measure of Empirical Explainers, Schwarzenberg et al. 2021, for an amortised explainer against the
expensive one it imitates), the rank correlations `spearman` / `kendall`, which ignore the scale of the scores and
only ask whether the tokens are ordered alike, and `topk_overlap`, which only asks whether the few tokens a reader
looks at are the same. Records and reference are paired by idx (`attexp.evaluate.base.join_by_idx`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import stats

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError
from attexp.evaluate.base import Metric, MetricResult, attributions_of, join_by_idx, need_reference, same_length
from attexp.io.records import STRUCTURAL_TOKENS
from attexp.registry import METRICS

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------- mse


class MSEConfig(ComponentConfig):
    """Mean squared error between attributions and the reference's, averaged over instances.

    `definition="real_tokens"` (default) takes each instance's mean over its real (stored) tokens, specials
    included, so long and short instances count alike. `definition="padded"` reproduces emp-exp's number for
    parity: there every vector was padded with zeros to `max_length` and torch's `mse_loss` averaged over all
    `max_length` positions, i.e. each instance's sum of squared differences divided by `max_length`. Pad
    positions add nothing to that sum (both vectors are zero there), so the padded MSE equals the real-token
    MSE scaled by length/max_length and is smaller for shorter inputs.

    No rescaling option is offered: MSE measures how well a learned explainer imitates its teacher's scores
    as they are; for scale-free agreement use `spearman` or `kendall`.
    """

    type: Literal["mse"] = "mse"
    definition: Literal["real_tokens", "padded"] = Field(
        "real_tokens", description="average over real tokens, or over max_length zero-padded positions (emp-exp)"
    )
    max_length: int | None = Field(None, gt=0, description="padded length; required with definition='padded'")

    @model_validator(mode="after")
    def _max_length_for_padded(self) -> MSEConfig:
        if self.definition == "padded" and self.max_length is None:
            raise ValueError(
                "definition='padded' needs max_length (the length the inputs were padded to when explained, "
                "e.g. 512); set max_length or use definition='real_tokens'"
            )
        return self


@METRICS.register("mse", MSEConfig)
class MSE(Metric):
    """Mean squared error of attributions against a reference explainer (Schwarzenberg et al. 2021)."""

    needs_reference = True

    config: MSEConfig

    def compute(self, records: list[dict], reference: list[dict] | None = None, *, scorer: Any = None) -> MetricResult:
        per_instance: dict[int, dict[str, float]] = {}
        for mine, theirs in join_by_idx(records, need_reference("mse", reference)):
            a, b = attributions_of(mine, "explanations"), attributions_of(theirs, "reference")  # (seq_len,) each
            same_length(mine, a, b)
            squared = float(np.sum((a - b) ** 2))
            if self.config.definition == "padded":
                assert self.config.max_length is not None  # guaranteed by MSEConfig
                if len(a) > self.config.max_length:
                    raise AttexpError(
                        f"idx {mine['idx']} has {len(a)} tokens, more than max_length={self.config.max_length} "
                        f"of the padded MSE; set max_length to the length the inputs were padded to."
                    )
                value = squared / self.config.max_length
            else:
                value = squared / len(a) if len(a) else 0.0
            per_instance[int(mine["idx"])] = {"mse": value}
        values = np.array([v["mse"] for v in per_instance.values()])
        return MetricResult(
            {"mse": float(values.mean()), "mse_std": float(values.std()), "n": len(values)}, per_instance
        )


# ------------------------------------------------------------------------------------ rank correlation


class SpearmanConfig(ComponentConfig):
    """Spearman rank correlation with the reference's attributions, per instance over its real tokens.

    Instances where either vector is constant (or shorter than 2) have no defined correlation; they are
    skipped and counted in `skipped`. Summary: `spearman` (mean), `spearman_std` (population std), `n`.
    """

    type: Literal["spearman"] = "spearman"


class KendallConfig(ComponentConfig):
    """Kendall's tau-b with the reference's attributions, per instance over its real tokens.

    Same conventions as `spearman` (constant vectors skipped and counted); tau weighs every swapped pair of
    tokens alike, where Spearman weighs swaps by how far the ranks move.
    """

    type: Literal["kendall"] = "kendall"


class _RankCorrelation(Metric):
    needs_reference = True
    name = ""

    def correlate(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError

    def compute(self, records: list[dict], reference: list[dict] | None = None, *, scorer: Any = None) -> MetricResult:
        per_instance: dict[int, dict[str, float]] = {}
        skipped = 0
        for mine, theirs in join_by_idx(records, need_reference(self.name, reference)):
            a, b = attributions_of(mine, "explanations"), attributions_of(theirs, "reference")  # (seq_len,) each
            same_length(mine, a, b)
            if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
                skipped += 1
                continue
            per_instance[int(mine["idx"])] = {self.name: float(self.correlate(a, b))}
        values = np.array([v[self.name] for v in per_instance.values()])
        if skipped:
            logger.warning("%s: skipped %d instances with a constant attribution vector", self.name, skipped)
        summary = {
            self.name: float(values.mean()) if len(values) else math.nan,
            f"{self.name}_std": float(values.std()) if len(values) else math.nan,
            "n": len(values),
            "skipped": skipped,
        }
        return MetricResult(summary, per_instance)


@METRICS.register("spearman", SpearmanConfig)
class Spearman(_RankCorrelation):
    """Spearman rank correlation of attributions with a reference explainer, per instance."""

    name = "spearman"

    def correlate(self, a: np.ndarray, b: np.ndarray) -> float:
        return stats.spearmanr(a, b).statistic


@METRICS.register("kendall", KendallConfig)
class Kendall(_RankCorrelation):
    """Kendall's tau-b of attributions with a reference explainer, per instance."""

    name = "kendall"

    def correlate(self, a: np.ndarray, b: np.ndarray) -> float:
        return stats.kendalltau(a, b).statistic


# ------------------------------------------------------------------------------------------ top-k overlap


class TopKOverlapConfig(ComponentConfig):
    """Share of the reference's top-k tokens that are also among these attributions' top-k, per instance.

    k (5) tokens, or with `fraction` set, k = ceil(fraction * n) of the instance's n candidate tokens; k is
    capped at n. Candidates are all tokens except structural specials ([CLS], [SEP], <s>, </s>, pad, by their
    token strings) unless `include_specials`. Ties rank the earlier position first. Summary: `topk_overlap`
    (mean of |top_k(a) & top_k(b)| / k), `topk_overlap_std`, `n`, `skipped` (instances without candidates).
    """

    type: Literal["topk_overlap"] = "topk_overlap"
    k: int = Field(5, ge=1, description="tokens in each top-k (ignored when fraction is set)")
    fraction: float | None = Field(None, gt=0, le=1, description="k as a fraction of the candidate tokens")
    include_specials: bool = False


@METRICS.register("topk_overlap", TopKOverlapConfig)
class TopKOverlap(Metric):
    """Overlap of the top-k tokens with a reference explainer's top-k, per instance."""

    needs_reference = True

    config: TopKOverlapConfig

    def compute(self, records: list[dict], reference: list[dict] | None = None, *, scorer: Any = None) -> MetricResult:
        per_instance: dict[int, dict[str, float]] = {}
        skipped = 0
        for mine, theirs in join_by_idx(records, need_reference("topk_overlap", reference)):
            a, b = attributions_of(mine, "explanations"), attributions_of(theirs, "reference")  # (seq_len,) each
            same_length(mine, a, b)
            tokens = mine.get("tokens") or [""] * len(a)
            candidates = np.array(
                [i for i, t in enumerate(tokens) if self.config.include_specials or t not in STRUCTURAL_TOKENS],
                dtype=np.int64,
            )
            if len(candidates) == 0:
                skipped += 1
                continue
            n = len(candidates)
            k = min(n, math.ceil(self.config.fraction * n) if self.config.fraction else self.config.k)
            top_a = candidates[np.argsort(-a[candidates], kind="stable")[:k]]
            top_b = candidates[np.argsort(-b[candidates], kind="stable")[:k]]
            per_instance[int(mine["idx"])] = {"topk_overlap": len(set(top_a.tolist()) & set(top_b.tolist())) / k}
        values = np.array([v["topk_overlap"] for v in per_instance.values()])
        summary = {
            "topk_overlap": float(values.mean()) if len(values) else math.nan,
            "topk_overlap_std": float(values.std()) if len(values) else math.nan,
            "n": len(values),
            "skipped": skipped,
        }
        return MetricResult(summary, per_instance)
