"""The masking game as a metric: AttExplainer's evaluation (Niu et al., IJCAI 2022), for any explainer.

AttExplainer is judged by what its masked tokens do to the classifier: mask them (replace them by [MASK],
attention kept on) and see whether the explained class's probability drops by the done threshold
(explanation) or the prediction flips (attack), and how much of the input that took. The same measurement
applies to any explainer once its scores say which tokens to mask. Two ways (`mode`):

- `positive` (the paper's way for its Captum baselines): mask every content token with a positive score at
  once. For `attexplainer` records these are exactly the tokens the agent left masked, so this replays its
  final input. Queries = the record's forward passes (the explainer's own cost, prediction forward included).
- `sequential`: mask the positively scored tokens one at a time, highest first, until the goal is reached or
  `max_steps` tokens are masked. With `random` scores this is the random masking policy; with Captum scores a
  greedy policy led by the attribution. Queries = the record's forward passes + the game steps.

Per instance (delta_p = p(target | x) - p(target | masked x); content tokens exclude structural specials):
`success` (explain: delta_p >= done_threshold; attack: the prediction left the target), `token_mod` (masked /
content tokens), `word_mod` (words with a masked piece / words; the record's words by its `word_ids`, else by
the pieces' spelling, `attexp.io.words`), `queries`, `fidelity` (the prediction left the target: the
official code's fidelity+), `delta_p`, `masked` (count), and `success@B` for each budget B in `budgets`
(success with token_mod <= B: success at equal or fewer masked tokens, comparable across explainers).
Summary: the means; for `task: attack` also `asr`, the attack success rate over the instances the model
classified correctly at first (label == initial prediction; records without labels are left out).
`count_misclassified_as_success` is the official evaluation's quirk (analysis.py: done = initially-correct
XOR still-original-prediction): instances misclassified at first count as successful attacks and the rate is
over all instances. Keys get `_attack` for the attack task and `_seq` for the sequential mode, so several
variants fit one table. Curve: success rate against the token budget (5%, 10%, ..., 100%).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from attexp.config.schema import ComponentConfig
from attexp.evaluate.base import MetricResult, by_idx
from attexp.evaluate.faithfulness import FaithfulnessMetric
from attexp.evaluate.model_scorer import Instance, ModelScorer, Row, full_probabilities
from attexp.io.words import word_ids
from attexp.registry import METRICS

CURVE_BUDGETS = tuple(round(0.05 * i, 2) for i in range(1, 21))


class MaskingGameConfig(ComponentConfig):
    """AttExplainer's masking-game metrics (Niu et al., 2022) for any explainer's scores.

    task: `explain` (default; success = p(target) dropped by done_threshold, 0.8) or `attack` (prediction
    flipped). mode: `positive` (mask all positively scored tokens, the paper's way) or `sequential` (mask them
    one at a time by score until success, at most max_steps = 100). budgets: token-modification budgets for
    the `success@B` columns. count_misclassified_as_success: the official evaluation's parity quirk (attack).
    """

    type: Literal["masking_game"] = "masking_game"
    task: Literal["explain", "attack"] = "explain"
    done_threshold: float = Field(0.8, gt=0, le=1)
    mode: Literal["positive", "sequential"] = "positive"
    max_steps: int = Field(100, ge=1)
    budgets: list[float] = Field(default_factory=lambda: [0.1, 0.2, 0.3])
    count_misclassified_as_success: bool = False

    @field_validator("budgets")
    @classmethod
    def _fractions(cls, budgets: list[float]) -> list[float]:
        if any(not 0 < b <= 1 for b in budgets):
            raise ValueError(f"budgets must be fractions of the tokens in (0, 1], e.g. [0.1, 0.2, 0.3]; got {budgets}")
        return budgets


@METRICS.register("masking_game", MaskingGameConfig)
class MaskingGameMetric(FaithfulnessMetric):
    """AttExplainer's metrics: success rate, token/word modification rate, queries, fidelity, delta p, ASR."""

    config: MaskingGameConfig

    def compute(
        self, records: list[dict], reference: list[dict] | None = None, *, scorer: ModelScorer | None = None
    ) -> MetricResult:
        self._records = by_idx(records, "explanations") if records else {}
        return super().compute(records, reference, scorer=scorer)

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        suffix = ("_attack" if cfg.task == "attack" else "") + ("_seq" if cfg.mode == "sequential" else "")
        full = full_probabilities(instances, scorer, cfg.type)  # [N, C]
        candidates = [self._candidates(inst) for inst in instances]
        sequences = self.perturbed(instances, scorer)
        probabilities = scorer.probabilities(sequences) if sequences else np.zeros((0, full.shape[1]))
        per_instance: dict[int, dict[str, Any]] = {}
        correct, asr_hits = [], []
        offset = 0
        for i, (inst, chosen) in enumerate(zip(instances, candidates, strict=True)):
            p0 = full[i, inst.target]
            if cfg.mode == "positive":
                rows, offset = probabilities[offset : offset + 1], offset + 1
            else:
                rows, offset = probabilities[offset : offset + len(chosen)], offset + len(chosen)
            hits = [self._success(p0 - row[inst.target], int(row.argmax()), inst.target) for row in rows]
            k = (hits.index(True) + 1) if (cfg.mode == "sequential" and True in hits) else len(rows)
            final = rows[k - 1] if k > 0 else full[i]
            masked = chosen if cfg.mode == "positive" else chosen[:k]
            success = bool(hits[k - 1]) if k > 0 else False
            delta_p = float(p0 - final[inst.target])
            flipped = int(final.argmax()) != inst.target
            token_mod = len(masked) / inst.n if inst.n else 0.0
            record = self._records.get(inst.idx, {})
            values = {
                "success": float(success),
                "token_mod": token_mod,
                "word_mod": self._word_rate(inst, masked, record, scorer),
                "queries": float(record.get("forward_passes", 0)) + (k if cfg.mode == "sequential" else 0),
                "fidelity": float(flipped),
                "delta_p": delta_p,
                "masked": float(len(masked)),
            }
            for budget in cfg.budgets:
                values[f"success@{round(100 * budget)}%"] = float(success and token_mod <= budget + 1e-9)
            if cfg.task == "attack":
                initially_correct = inst.label is not None and int(full[i].argmax()) == inst.label
                if cfg.count_misclassified_as_success and inst.label is not None:
                    asr_hits.append(float(success or not initially_correct))
                elif initially_correct:
                    asr_hits.append(float(success))
                correct.append(initially_correct)
            per_instance[inst.idx] = {f"{key}{suffix}": value for key, value in values.items()}
        keys = list(next(iter(per_instance.values()))) if per_instance else []
        summary: dict[str, float] = {}
        for key in keys:
            summary[key] = float(np.mean([v[key] for v in per_instance.values()]))
        if cfg.task == "attack":
            summary[f"asr{suffix}"] = float(np.mean(asr_hits)) if asr_hits else float("nan")
            summary[f"initially_correct{suffix}"] = int(sum(correct))
        summary[f"n{suffix}"] = len(per_instance)
        curve_rows = [
            [float(v[f"success{suffix}"] and v[f"token_mod{suffix}"] <= b + 1e-9) for b in CURVE_BUDGETS]
            for v in per_instance.values()
        ]
        curves = {
            f"masking_success{suffix}": {
                "x": [100 * b for b in CURVE_BUDGETS],
                "y": np.mean(curve_rows, axis=0).tolist() if curve_rows else [],
                "xlabel": "% of tokens masked at most",
                "ylabel": f"{cfg.task} success rate",
            }
        }
        return MetricResult(summary, per_instance, curves)

    def usable(self, instances: list[Instance]) -> list[Instance]:
        return list(instances)  # an instance without content is scored too: nothing to mask, no success

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        """`positive`: each instance with its candidates masked; `sequential`: every prefix of them, in order."""
        mask_id = scorer.replacement_id("mask")
        sequences = []
        for inst in usable:
            chosen = self._candidates(inst)
            prefixes = [len(chosen)] if self.config.mode == "positive" else range(1, len(chosen) + 1)
            sequences += [inst.without(chosen[:k], mask_id) for k in prefixes]
        return sequences

    def _candidates(self, inst: Instance) -> np.ndarray:
        """Content positions with a positive score, highest first (ties: earlier first); at most max_steps in
        the sequential mode."""
        chosen = inst.order[inst.scores[inst.order] > 0]
        return chosen[: self.config.max_steps] if self.config.mode == "sequential" else chosen

    def _success(self, delta_p: float, prediction: int, target: int) -> bool:
        if self.config.task == "explain":
            return bool(delta_p >= self.config.done_threshold)
        return prediction != target

    @staticmethod
    def _word_rate(inst: Instance, masked: np.ndarray, record: dict, scorer: ModelScorer) -> float:
        """Words with a masked piece / words, over the content tokens' words (`attexp.io.words.word_ids`: the
        record's `word_ids`, else the pieces' spelling); a content token in no word counts as a word of its own."""
        tokens = record.get("tokens") or scorer.tokenizer.convert_ids_to_tokens(inst.ids.tolist())
        if not len(inst.content):
            return 0.0
        words = word_ids(tokens, record.get("word_ids"))
        word_of = {int(p): words[p] if words[p] is not None else -1 - int(p) for p in inst.content}
        return len({word_of[int(p)] for p in masked}) / len(set(word_of.values()))
