"""Normalised AOPC (Edin et al., 2025, "Normalized AOPC: Fixing Misleading Faithfulness Metrics for Feature
Attribution Explainability", ACL; code JoakimEdin/naopc, PyPI `aopc` by the same author).

AOPC's attainable range depends on the model and the instance: one model's AOPC lies between 0.1 and 0.3 for every
ordering of the words, another's between 0.2 and 0.8, so raw AOPCs of two models (or of two instances) do not
compare. The metric places each instance's AOPC between the lowest and the highest AOPC any ordering of its features
reaches: NAOPC = (AOPC - lower) / (upper - lower) (0 where upper == lower; not clipped, as the authors' code).

Definitions (the paper's, as its code computes them):
- Features are the words of the record (`word_ids`; all tokens of a word are masked together, a word's score is
  the sum of its tokens' scores), or the tokens (`features: tokens`, the PyPI package's default). Structural
  specials are never features.
- AOPC of an ordering: (1/N) sum_{k=1..N} [p(x) - p(x with its first k features masked)], N the number of features,
  p the probability of the explained class. Comprehensiveness takes the explanation's ranking, most important first;
  sufficiency the same curve with the ranking reversed, least important first (not ERASER's keep-the-top-k). The
  perturbation replaces tokens with [MASK] (`perturbation`; `pad` or `delete` for tokenizers without one).
- Bounds: the highest and the lowest AOPC over all N! orderings, shared by comprehensiveness and sufficiency.
  Exact for N <= `exact_max_features` (10, the paper's short inputs): every one of the 2^N subsets is scored once and
  a dynamic programme over subsets finds the best and worst chain (the code enumerates the N! orderings; the values
  are the same). Longer inputs: the paper's beam search, two beams (upper and lower) of `beam_width` (5, the paper's
  runs; the code's default is 50) partial orderings, each step extending every entry by every remaining feature and
  keeping the best (worst) cumulative sums; its bounds are inner bounds, so an explainer may score outside [0, 1].
- `official_bounds: true` reproduces a quirk of the authors' exact code: its running maximum starts at 0, so an
  upper bound is never below 0.

Summary keys: `aopc_comprehensiveness`, `aopc_sufficiency` (raw), `naopc_comprehensiveness`, `naopc_sufficiency`
(normalised), `naopc_lower`, `naopc_upper`, `naopc_exact` (share of instances with exact bounds) and
`naopc_bound_inputs` (distinct perturbed inputs the bounds cost per instance; the scorer runs each once for every
explainer of the job). Suffixed `_pad` / `_delete` for another perturbation, `_tokens` for token features.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Literal

import numpy as np
from pydantic import Field

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError
from attexp.evaluate.base import MetricResult
from attexp.evaluate.faithfulness import FaithfulnessMetric, _summary
from attexp.evaluate.model_scorer import Instance, ModelScorer, Perturbation, Row, full_probabilities
from attexp.registry import METRICS

logger = logging.getLogger(__name__)


class NAOPCConfig(ComponentConfig):
    """Normalised AOPC comprehensiveness and sufficiency (Edin et al., 2025); see the module docstring.

    features: `words` (the paper's) or `tokens`; perturbation: `mask` (the paper's), `pad` or `delete`;
    exact_max_features: exact bounds up to this many features (2^N scored inputs), beam search above; beam_width:
    the beam's entries per bound; max_features: instances with more features are skipped (None: none);
    official_bounds: the authors' exact code's upper bound, never below 0.
    """

    type: Literal["naopc"] = "naopc"
    features: Literal["words", "tokens"] = "words"
    perturbation: Perturbation = "mask"
    exact_max_features: int = Field(10, ge=0, le=16)
    beam_width: int = Field(5, ge=1)
    max_features: int | None = Field(None, ge=1)
    official_bounds: bool = False


def feature_groups(inst: Instance, by: Literal["words", "tokens"]) -> list[np.ndarray]:
    """The instance's features as arrays of content positions, in text order: its words (the tokens sharing a word
    id; a content token without one is its own feature; records without word ids: tokens) or its content tokens."""
    word_ids = inst.word_ids
    if by == "tokens" or word_ids is None:
        return [np.array([p]) for p in inst.content]
    groups: dict[Any, list[int]] = {}
    for p in inst.content:
        word = word_ids[p] if p < len(word_ids) else None
        groups.setdefault(("word", word) if word is not None else ("token", int(p)), []).append(int(p))
    return [np.array(positions) for positions in groups.values()]


def membership(inst: Instance, groups: list[np.ndarray]) -> np.ndarray:
    """bool [N, T]: the positions of each of the instance's N features."""
    table = np.zeros((len(groups), len(inst.ids)), dtype=bool)
    for j, positions in enumerate(groups):
        table[j, positions] = True
    return table


def masked_features(inst: Instance, table: np.ndarray, subset: int, replacement: int | None) -> Row:
    """The instance with the features of bitmask `subset` masked; `table` bool [N, T] (`membership`)."""
    chosen = np.unpackbits(np.frombuffer(subset.to_bytes(len(table) // 8 + 1, "little"), np.uint8), bitorder="little")
    drop = np.flatnonzero(table[chosen[: len(table)].astype(bool)].any(axis=0))
    return inst.without(drop, replacement)


def exact_bounds(gain: np.ndarray, n: int) -> tuple[float, float]:
    """Highest and lowest AOPC over every ordering of n features: gain[S] = p(x) - p(x with subset S masked), for
    every bitmask S (gain[0] = 0). Best chain sum by dynamic programming over subsets: U(S) = gain(S) + max over i in
    S of U(S - i). Returns (upper, lower) = (U(full) / n, L(full) / n)."""
    size = 1 << n
    upper = np.full(size, -np.inf)
    lower = np.full(size, np.inf)
    upper[0] = lower[0] = 0.0
    for subset in range(1, size):
        best, worst = -np.inf, np.inf
        bits = subset
        while bits:
            low = bits & -bits
            rest = subset ^ low
            best, worst = max(best, upper[rest]), min(worst, lower[rest])
            bits ^= low
        upper[subset], lower[subset] = best + gain[subset], worst + gain[subset]
    return float(upper[size - 1] / n), float(lower[size - 1] / n)


@METRICS.register("naopc", NAOPCConfig)
class NormalisedAOPC(FaithfulnessMetric):
    """AOPC comprehensiveness and sufficiency, raw and placed between each instance's bounds (Edin et al., 2025)."""

    config: NAOPCConfig

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        replacement = scorer.replacement_id(cfg.perturbation)
        suffix = "" if cfg.perturbation == "mask" else f"_{cfg.perturbation}"
        suffix += "" if cfg.features == "words" else "_tokens"
        keys = {k: f"{k}{suffix}" for k in ("aopc_comprehensiveness", "aopc_sufficiency")}
        keys |= {k: f"{k}{suffix}" for k in ("naopc_comprehensiveness", "naopc_sufficiency", "naopc_lower")}
        keys |= {k: f"{k}{suffix}" for k in ("naopc_upper", "naopc_exact", "naopc_bound_inputs")}
        items = [(inst, feature_groups(inst, cfg.features)) for inst in self.usable(instances)]
        full = full_probabilities([inst for inst, _ in items], scorer, cfg.type)
        sizes = [len(groups) for _, groups in items]
        exact_count = sum(n <= cfg.exact_max_features for n in sizes)
        estimate = sum((1 << n) if n <= cfg.exact_max_features else cfg.beam_width * n * n for n in sizes)
        logger.info(
            "naopc: the bounds of %d instances need up to about %d perturbed inputs (%d exact, %d by beam search of "
            "width %d; paid once per job, every explainer shares them); beam_width and max_features bound the cost",
            len(items), estimate, exact_count, len(items) - exact_count, cfg.beam_width,
        )  # fmt: skip

        members = {inst.idx: membership(inst, groups) for inst, groups in items}

        def masked(inst: Instance, groups: list[np.ndarray], subset: int) -> Row:
            return masked_features(inst, members[inst.idx], subset, replacement)

        # the explanation's curves, and every subset of the short instances, in one call
        exact = {inst.idx for inst, groups in items if len(groups) <= cfg.exact_max_features}
        probabilities = scorer.probabilities(self.perturbed([inst for inst, _ in items], scorer))
        bounds, bound_inputs = self._beam_bounds(
            [(i, inst, groups) for i, (inst, groups) in enumerate(items) if inst.idx not in exact],
            full,
            scorer,
            masked,
        )
        per_instance: dict[int, dict[str, Any]] = {}
        start = 0
        for i, (inst, groups) in enumerate(items):
            n = len(groups)
            p = full[i, inst.target]
            comp = float(np.mean(p - probabilities[start : start + n, inst.target]))
            suff = float(np.mean(p - probabilities[start + n : start + 2 * n, inst.target]))
            start += 2 * n
            if inst.idx in exact:
                gain = np.zeros(1 << n)
                gain[1:] = p - probabilities[start : start + (1 << n) - 1, inst.target]
                start += (1 << n) - 1
                upper, lower = exact_bounds(gain, n)
                if math.isnan(upper) or math.isnan(lower):
                    raise AttexpError("naopc: a bound is NaN; the model's probabilities are not finite")
                if cfg.official_bounds:
                    upper = max(upper, 0.0)
                inputs = (1 << n) - 1
            else:
                upper, lower = bounds[inst.idx]
                inputs = bound_inputs[inst.idx]
            span = upper - lower
            per_instance[inst.idx] = {
                keys["aopc_comprehensiveness"]: comp,
                keys["aopc_sufficiency"]: suff,
                keys["naopc_comprehensiveness"]: (comp - lower) / span if span > 0 else 0.0,
                keys["naopc_sufficiency"]: (suff - lower) / span if span > 0 else 0.0,
                keys["naopc_lower"]: lower,
                keys["naopc_upper"]: upper,
                keys["naopc_exact"]: float(inst.idx in exact),
                keys["naopc_bound_inputs"]: float(inputs),
            }
        summary = _summary(per_instance, list(keys.values()), skipped=len(instances) - len(items))
        return MetricResult(summary, per_instance)

    def usable(self, instances: list[Instance]) -> list[Instance]:
        """The instances with features, and no more than `max_features`."""
        cfg = self.config
        sizes = [len(feature_groups(inst, cfg.features)) for inst in instances]
        limit = cfg.max_features
        return [inst for inst, n in zip(instances, sizes, strict=True) if n > 0 and (limit is None or n <= limit)]

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        """Per instance: the explanation's two curves (its ranking, then reversed), and for an instance of at most
        `exact_max_features` features every non-empty subset of them (bitmask order). The beam search's inputs
        depend on scores: `_beam_bounds` asks for them step by step."""
        cfg = self.config
        replacement = scorer.replacement_id(cfg.perturbation)
        sequences: list[Row] = []
        for inst in usable:
            groups = feature_groups(inst, cfg.features)
            table, n = membership(inst, groups), len(groups)
            score = np.array([inst.scores[g].sum() for g in groups])
            ranking = np.argsort(-score, kind="stable")
            for order in (ranking, ranking[::-1]):
                subsets = itertools.accumulate(1 << int(j) for j in order)  # Python ints: any number of features
                sequences += [masked_features(inst, table, s, replacement) for s in subsets]
            if n <= cfg.exact_max_features:
                sequences += [masked_features(inst, table, s, replacement) for s in range(1, 1 << n)]
        return sequences

    def _beam_bounds(self, items, full: np.ndarray, scorer: ModelScorer, masked) -> tuple[dict, dict]:
        """(upper, lower) per instance by the paper's beam search, and the distinct inputs each needed. All
        instances advance together, one scorer call per step."""
        width = self.config.beam_width
        beams = {inst.idx: ({0: 0.0}, {0: 0.0}) for _, inst, _ in items}  # upper, lower: subset -> cumulative
        seen: dict[int, set[int]] = {inst.idx: set() for _, inst, _ in items}
        steps = max((len(groups) for _, _, groups in items), default=0)
        for step in range(steps):
            wanted: list[tuple[int, Instance, list[np.ndarray], int]] = []
            for i, inst, groups in items:
                n = len(groups)
                if step >= n:
                    continue
                subsets = set()
                for beam in beams[inst.idx]:
                    for subset in beam:
                        subsets.update(subset | 1 << j for j in range(n) if not subset >> j & 1)
                for subset in sorted(subsets):
                    wanted.append((i, inst, groups, subset))
                seen[inst.idx].update(subsets)
            if not wanted:
                break
            rows = scorer.probabilities([masked(inst, groups, subset) for _, inst, groups, subset in wanted])
            gain = {(inst.idx, subset): full[i, inst.target] - rows[r, inst.target] for r, (i, inst, _, subset) in
                    enumerate(wanted)}  # fmt: skip
            for _, inst, groups in items:
                if step >= len(groups):
                    continue
                n = len(groups)
                new = []
                for k, beam in enumerate(beams[inst.idx]):
                    extended: dict[int, float] = {}
                    pick = max if k == 0 else min
                    for subset, total in beam.items():
                        for j in range(n):
                            if subset >> j & 1:
                                continue
                            grown = subset | 1 << j
                            value = total + gain[(inst.idx, grown)]
                            extended[grown] = pick(extended.get(grown, value), value)
                    ranked = sorted(extended.items(), key=lambda kv: kv[1], reverse=k == 0)[:width]
                    new.append(dict(ranked))
                beams[inst.idx] = (new[0], new[1])
        bounds, inputs = {}, {}
        for _, inst, groups in items:
            n = len(groups)
            upper_beam, lower_beam = beams[inst.idx]
            upper, lower = max(upper_beam.values()) / n, min(lower_beam.values()) / n
            bounds[inst.idx] = (float(upper), float(lower))
            inputs[inst.idx] = len(seen[inst.idx])
        if any(math.isnan(u) or math.isnan(v) for u, v in bounds.values()):
            raise AttexpError("naopc: a bound is NaN; the model's probabilities are not finite")
        return bounds, inputs
