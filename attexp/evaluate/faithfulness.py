"""Faithfulness: does taking away the tokens an explanation ranks highest change the model's prediction?

Agreement metrics compare an explainer with another explainer; these compare it with the model. Each one
perturbs every instance according to the ranking of its attributions, runs the perturbed inputs through
the explained classifier and reads the probability of the explained class (`target` in the record):

- `eraser`: comprehensiveness (p(x) - p(x without the top k%)) and sufficiency (p(x) - p(only the top k%))
  at the bins {1, 5, 10, 20, 50}%, and their AOPC, the mean over the bins (DeYoung et al., 2020, "ERASER: A
  Benchmark to Evaluate Rationalized NLP Models", ACL; the mean over |B| bins is what ERASER's released
  scorer computes). k = ceil(fraction * n) of the n content tokens, so every bin removes at least one.
  Higher comprehensiveness and lower sufficiency are more faithful. `alti: true` is the variant of Ferrando
  et al. (2022, "Measuring the Mixing of Contextual Information in the Transformer", EMNLP; code
  mt-upc/transformer-contributions, aupc.py), with parity to that code: the probability curve over the bins is
  made monotone with a running minimum (comprehensiveness) or maximum (sufficiency) that starts at the 0% point
  (the full input for comprehensiveness, no content at all for sufficiency), and AOPC divides the sum over the
  |B| = 5 bins by |B| + 1 = 6. The 0% point itself is not a term of the sum: it only starts the running min/max
  (for comprehensiveness its term would be 0 anyway; for sufficiency it would be p(x) - p(no content), which an
  earlier attexp added, shifting the mean by about +0.05).
- `ferret_aopc` and `tau_loo`: ferret's AOPC and leave-one-out correlation, in `attexp.evaluate.ferret_metrics`.
- `degradation`: the degradation test of IBA for transformers (Jiang et al., 2020, "Inserting Information
  Bottleneck for Attribution in Transformers", Findings of EMNLP; code bazingagin/IBA): remove round(j/9 * n)
  tokens for j = 1..9 (nine steps of about 11%), most relevant first (MoRF) and least relevant first (LeRF),
  and record accuracy against the gold label and the gold-class probability at every step. A faithful
  explanation makes the MoRF curve fall fast and the LeRF curve stay high.
- `log_odds`: log p(target | top k% replaced) - log p(target | x), averaged over instances (Shrikumar et al.,
  2017; as used for text by Chen et al., 2020, "Generating Hierarchical Explanations on Text Classification
  via Feature Interaction Detection", ACL, with k = 20% replaced by padding). Lower (more negative) is better.

Shared conventions:

- Content tokens are all real tokens except the structural specials ([CLS], [SEP], <s>, </s>, padding):
  specials are never removed, never counted in n and their scores are ignored, whatever the explainer gave
  them. Ties in the ranking go to the earlier position.
- Perturbation (`perturbation`): `delete` removes tokens (the sequence gets shorter; ERASER, ferret, ALTI and
  IBA's default), `mask` / `pad` replace them with the tokenizer's [MASK] / [PAD] token id with attention kept
  on (IBA's `eval_replace`, and the usual choice for log-odds). Segment ids of sentence pairs follow their
  tokens.
- The probabilities of the unperturbed inputs are recomputed with the model (not taken from the records), so
  p(x) and p(perturbed x) come from the same forward code; a mismatch with the recorded predictions means the
  explanations were made with another model and is reported.
- Batched: `ModelScorer` collects every perturbed sequence of every instance, removes duplicates (small bins
  of short sentences often remove the same tokens; the unperturbed inputs and the leave-one-out deletions are shared
  by every metric and every explainer of a job), sorts them by length and runs them in batches of similar length of
  at most `batch_size` rows, counting forward passes and time. Results are the same as a per-instance loop
  (benchmarks/evaluate_speed.py measures both, and ferret's evaluators).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError
from attexp.evaluate.base import Metric, MetricResult
from attexp.evaluate.model_scorer import Instance, ModelScorer, Perturbation, Row, full_probabilities, prepare
from attexp.registry import METRICS

logger = logging.getLogger(__name__)

ERASER_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)


class FaithfulnessMetric(Metric):
    """Base of the metrics that run the model: `compute(records, reference, scorer=...)`; a subclass implements
    `measure(instances, scorer)`, and where its perturbed inputs are known before any is scored, `perturbed` (and
    `usable`, the instances it scores), so that `inputs` can hand them to the evaluate stage's one pass over every
    metric and explainer (`attexp.evaluate.metric_table.score_planned`); `measure` asks for the same rows again,
    which the scorer then already knows."""

    needs_model: ClassVar[bool] = True
    name: ClassVar[str] = ""

    def compute(
        self, records: list[dict], reference: list[dict] | None = None, *, scorer: ModelScorer | None = None
    ) -> MetricResult:
        if scorer is None:
            raise AttexpError(
                f"metric {self.config.type!r} runs the explained classifier, but no model was given; the evaluate "
                f"job loads it from its `model` (or from the explain jobs' manifests)."
            )
        if not records:
            raise AttexpError(f"{self.config.type}: no records to evaluate; the explanations artifact is empty.")
        return self.measure(prepare(records, scorer), scorer)

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        raise NotImplementedError

    def usable(self, instances: list[Instance]) -> list[Instance]:
        """The instances this metric scores (the others count as skipped): by default those with content."""
        return [inst for inst in instances if inst.n > 0]

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        """The perturbed inputs of `usable` that are known before any is scored, in the order `measure` reads them
        (none by default: a metric whose inputs depend on scores asks the scorer step by step)."""
        return []

    def inputs(self, instances: list[Instance], scorer: ModelScorer) -> list[Row]:
        """Every input this metric will ask the scorer for that is known in advance: the unperturbed inputs of the
        instances it scores and `perturbed`."""
        usable = self.usable(instances)
        return [inst.full() for inst in usable] + self.perturbed(usable, scorer)


def _summary(per_instance: dict[int, dict[str, Any]], keys: Sequence[str], skipped: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in keys:
        values = np.array([v[key] for v in per_instance.values() if not _missing(v.get(key))], dtype=np.float64)
        out[key] = float(values.mean()) if len(values) else math.nan
        out[f"{key}_std"] = float(values.std()) if len(values) else math.nan
    out["n"] = len(per_instance)
    out["skipped"] = skipped
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _suffix(perturbation: Perturbation, default: Perturbation) -> str:
    return "" if perturbation == default else f"_{perturbation}"


def _curve(x: Sequence[float], rows: Sequence[Sequence[float]], xlabel: str, ylabel: str) -> dict[str, Any]:
    """A mean curve over instances for the plots: x values, mean y per x, labels."""
    y = np.nanmean(np.asarray(rows, dtype=np.float64), axis=0) if len(rows) else np.full(len(x), np.nan)
    return {"x": [float(v) for v in x], "y": [float(v) for v in y], "xlabel": xlabel, "ylabel": ylabel}


# ------------------------------------------------------------------------------------------ ERASER


def _increasing_fractions(name: str, values: list[float]) -> list[float]:
    if any(not 0 < v <= 1 for v in values) or sorted(set(values)) != values:
        raise ValueError(
            f"{name} must be strictly increasing fractions in (0, 1], e.g. [0.01, 0.05, 0.1, 0.2, 0.5]; got {values}"
        )
    return values


class EraserConfig(ComponentConfig):
    """Comprehensiveness and sufficiency at ERASER's bins and their AOPC (DeYoung et al., 2020).

    bins: fractions of the content tokens (default 1, 5, 10, 20, 50%); k = ceil(fraction * n).
    perturbation: `delete` (default), `mask` or `pad` (see the module docstring).
    alti: Ferrando et al.'s code's variant: running min (comprehensiveness) / max (sufficiency) of the
    probability started at the 0% point, AOPC = the bins' sum / (|B| + 1) (the 0% point is not summed).

    Summary keys: `comprehensiveness`, `sufficiency` (AOPC, with `_std`), suffixed `_alti` with alti and
    `_mask` / `_pad` for a replacement, so several variants fit one table. Per instance: the AOPCs and the
    per-bin values (`..._bins`).
    """

    type: Literal["eraser"] = "eraser"
    bins: list[float] = Field(default_factory=lambda: list(ERASER_BINS), min_length=1)
    perturbation: Perturbation = "delete"
    alti: bool = False

    _fractions = field_validator("bins")(lambda bins: _increasing_fractions("bins", bins))


@METRICS.register("eraser", EraserConfig)
class Eraser(FaithfulnessMetric):
    """ERASER comprehensiveness and sufficiency with AOPC (DeYoung et al., 2020); ALTI's variant as an option."""

    config: EraserConfig

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        suffix = ("_alti" if cfg.alti else "") + _suffix(cfg.perturbation, "delete")
        comp_key, suff_key = f"comprehensiveness{suffix}", f"sufficiency{suffix}"
        usable = self.usable(instances)
        full = full_probabilities(usable, scorer, cfg.type)
        probabilities = scorer.probabilities(self.perturbed(usable, scorer))
        per_row = 2 * len(cfg.bins) + int(cfg.alti)
        per_instance: dict[int, dict[str, Any]] = {}
        comp_rows, suff_rows = [], []
        for i, inst in enumerate(usable):
            rows = probabilities[i * per_row : (i + 1) * per_row, inst.target]  # (per_row,)
            p = full[i, inst.target]
            p_comp, p_suff = rows[: len(cfg.bins)], rows[len(cfg.bins) : 2 * len(cfg.bins)]
            if cfg.alti:  # the 0% point starts the running min / max, then leaves the curve
                p_comp = np.minimum.accumulate(np.concatenate([[p], p_comp]))[1:]
                p_suff = np.maximum.accumulate(np.concatenate([[rows[-1]], p_suff]))[1:]
            comp, suff = p - p_comp, p - p_suff  # (|B|,)
            comp_rows.append(comp)
            suff_rows.append(suff)
            points = len(cfg.bins) + int(cfg.alti)  # ALTI's code divides the |B| bins' sum by |B| + 1
            per_instance[inst.idx] = {
                comp_key: float(comp.sum() / points),
                suff_key: float(suff.sum() / points),
                f"{comp_key}_bins": comp.tolist(),
                f"{suff_key}_bins": suff.tolist(),
            }
        summary = _summary(per_instance, [comp_key, suff_key], skipped=len(instances) - len(usable))
        x = [100 * b for b in cfg.bins]
        curves = {
            comp_key: _curve(x, comp_rows, "% of tokens removed (most relevant first)", "p(x) - p(x without top k%)"),
            suff_key: _curve(x, suff_rows, "% of tokens kept (most relevant)", "p(x) - p(top k% only)"),
        }
        return MetricResult(summary, per_instance, curves)

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        cfg = self.config
        replacement = scorer.replacement_id(cfg.perturbation)
        sequences = []
        for inst in usable:
            ks = [min(inst.n, math.ceil(b * inst.n)) for b in cfg.bins]
            sequences += [inst.without(inst.order[:k], replacement) for k in ks]  # comprehensiveness
            sequences += [inst.only(inst.order[:k], replacement) for k in ks]  # sufficiency
            if cfg.alti:
                sequences.append(inst.only(inst.order[:0], replacement))  # sufficiency at 0%: no content
        return sequences


# -------------------------------------------------------------------------------------- degradation


class DegradationConfig(ComponentConfig):
    """IBA's degradation test (Jiang et al., 2020): remove round(j / steps * n) tokens, j = 1..steps.

    steps (9: about 11% each, ending with every content token removed); perturbation: `delete` (IBA's
    truncation, default) or `mask`/`pad` (IBA's replacement); against: `label` (gold class, IBA's choice) or
    `target` (the explained class) for accuracy and probability. Both orders are measured: most relevant
    first (`morf`) and least relevant first (`lerf`). Summary keys: `degradation_{morf,lerf}_{accuracy,
    probability}` (means over the steps; lower MoRF and higher LeRF are more faithful); curves include the
    unperturbed 0% point.

    lengths: `content` (default) takes n as the number of content tokens, as the paper describes removing a
    fraction of the input's tokens; `official` reproduces the released code (bazingagin/IBA), whose n also counts
    the structural specials ([CLS], [SEP]; they are never removed, so k is capped at the content tokens) and whose
    mean leaves out a step whose k equals the previous step's (short inputs have fewer distinct steps). The two
    differ little on average (about 0.01) but up to about 0.2 on a short instance. Curves show every step.
    """

    type: Literal["degradation"] = "degradation"
    steps: int = Field(9, ge=1, le=100)
    perturbation: Perturbation = "delete"
    against: Literal["label", "target"] = "label"
    lengths: Literal["content", "official"] = Field(
        "content",
        description="content: k = round(j/steps * n) of the n content tokens (the paper's description); official: "
        "the IBA code's, n counts [CLS]/[SEP] too and a step that repeats the previous k is left out of the mean",
    )


@METRICS.register("degradation", DegradationConfig)
class Degradation(FaithfulnessMetric):
    """IBA's degradation test: accuracy and gold-class probability as top tokens are removed (Jiang et al., 2020)."""

    config: DegradationConfig

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        suffix = _suffix(cfg.perturbation, "delete") + ("_official" if cfg.lengths == "official" else "")
        usable = self.usable(instances)
        full = full_probabilities(usable, scorer, cfg.type)
        counted = {inst.idx: self._counts(inst)[1] for inst in usable}  # per instance: which steps enter the mean
        probabilities = scorer.probabilities(self.perturbed(usable, scorer))
        per_instance: dict[int, dict[str, Any]] = {}
        curves_rows: dict[str, list[np.ndarray]] = {}
        for i, inst in enumerate(usable):
            gold = self._class(inst)
            block = probabilities[i * 2 * cfg.steps : (i + 1) * 2 * cfg.steps]  # (2 * steps, C)
            values: dict[str, Any] = {}
            for order, rows in (("morf", block[: cfg.steps]), ("lerf", block[cfg.steps :])):
                with_full = np.concatenate([full[i : i + 1], rows])  # (steps + 1, C): 0% point first
                probability = with_full[:, gold]
                accuracy = (with_full.argmax(axis=-1) == gold).astype(np.float64)
                for what, curve in (("accuracy", accuracy), ("probability", probability)):
                    key = f"degradation_{order}_{what}{suffix}"
                    values[key] = float(curve[1:][counted[inst.idx]].mean())
                    values[f"{key}_steps"] = curve.tolist()
                    curves_rows.setdefault(key, []).append(curve)
            per_instance[inst.idx] = values
        keys = [k for k in curves_rows]
        summary = _summary(per_instance, keys, skipped=len(instances) - len(usable))
        x = [100 * j / cfg.steps for j in range(cfg.steps + 1)]
        curves = {
            key: _curve(x, rows, f"% of tokens removed ({key.split('_')[1].upper()})", key.split("_")[2])
            for key, rows in curves_rows.items()
        }
        return MetricResult(summary, per_instance, curves)

    def usable(self, instances: list[Instance]) -> list[Instance]:
        return [inst for inst in instances if inst.n > 0 and self._class(inst) is not None]

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        replacement = scorer.replacement_id(self.config.perturbation)
        sequences = []
        for inst in usable:
            counts = self._counts(inst)[0]
            sequences += [inst.without(inst.order[:c], replacement) for c in counts]  # most relevant first
            sequences += [inst.without(inst.order[::-1][:c], replacement) for c in counts]  # least relevant first
        return sequences

    def _counts(self, inst: Instance) -> tuple[list[int], np.ndarray]:
        """Tokens removed at steps j = 1..steps, and which steps count in the mean (see `lengths`)."""
        steps = self.config.steps
        if self.config.lengths == "content":
            return [round(j / steps * inst.n) for j in range(1, steps + 1)], np.ones(steps, dtype=bool)
        length = len(inst.ids)  # the official code's n: every token, the specials too
        counts = [min(inst.n, round(j / steps * length)) for j in range(1, steps + 1)]
        fresh = np.array([i == 0 or counts[i] != counts[i - 1] for i in range(steps)])
        return counts, fresh

    def _class(self, inst: Instance) -> int | None:
        return inst.label if self.config.against == "label" else inst.target


# ---------------------------------------------------------------------------------------- log-odds


class LogOddsConfig(ComponentConfig):
    """Log-odds: log p(target | top `fraction` of content tokens replaced) - log p(target | x).

    fraction (0.2): k = ceil(fraction * n); perturbation: `pad` (default, as in Chen et al., 2020), `mask` or
    `delete`. Probabilities are clipped at 1e-12. Summary key: `log_odds` (lower is more faithful).
    """

    type: Literal["log_odds"] = "log_odds"
    fraction: float = Field(0.2, gt=0, le=1)
    perturbation: Perturbation = "pad"


@METRICS.register("log_odds", LogOddsConfig)
class LogOdds(FaithfulnessMetric):
    """Log-odds of the explained class after replacing the top 20% of tokens (lower is better)."""

    config: LogOddsConfig

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        key = "log_odds" + _suffix(cfg.perturbation, "pad")
        usable = self.usable(instances)
        full = full_probabilities(usable, scorer, cfg.type)
        probabilities = scorer.probabilities(self.perturbed(usable, scorer))
        per_instance = {
            inst.idx: {
                key: float(np.log(max(probabilities[i, inst.target], 1e-12)) - np.log(max(full[i, inst.target], 1e-12)))
            }
            for i, inst in enumerate(usable)
        }
        return MetricResult(_summary(per_instance, [key], skipped=len(instances) - len(usable)), per_instance)

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        cfg = self.config
        replacement = scorer.replacement_id(cfg.perturbation)
        ks = [min(inst.n, math.ceil(cfg.fraction * inst.n)) for inst in usable]
        return [inst.without(inst.order[:k], replacement) for inst, k in zip(usable, ks, strict=True)]
