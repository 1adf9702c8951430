"""Soft normalised comprehensiveness and sufficiency (Zhao & Aletras, 2023, "Incorporating Attribution Importance
for Improving Faithfulness Metrics", ACL; code casszhao/SoftFaith).

Deleting or masking tokens puts the input out of the distribution the classifier saw, so a deletion curve partly
measures that shift. The soft metrics perturb the input embeddings instead, in proportion to the importance: each
hidden unit of token i's embedding is kept with a probability set by i's normalised score s_i (min-max over the
content tokens to [0, 1]; all equal: 0.5), zeroed otherwise (a Bernoulli mask per token and hidden unit, no
rescaling):
- soft comprehensiveness: kept with probability 1 - s_i (the important tokens lose the most);
  Soft-C = max(0, p(x) - p(x')).
- soft sufficiency: kept with probability s_i (the important tokens stay); Soft-S = 1 - max(0, p(x) - p(x')).
- normalised as Carton et al. (2020) by the sufficiency of an input with no content, S0 = 1 - max(0, p(x) - p(x0)),
  x0 the input with every content token replaced by padding (specials kept):
  Soft-NC = clip(Soft-C / (1 - S0), 0, 1), Soft-NS = clip((Soft-S - S0) / (1 - S0), 0, 1) (S0 lowered by 1e-4 first,
  as the code, so the denominator is never 0). Both: higher is more faithful.
p is the probability of the explained class. The embeddings perturbed are the embedding block's output where the
model has one (BERT family, ModernBERT: word + position (+ segment) embeddings after their norm, as the code's
BERT wrapper), else the word embeddings (the decoders: rotary positions come later, so these are the first layer's
input; on a prompted classifier, the text's only). Structural specials are never perturbed. Seeded per instance
(`seed`, idx): the same records give the same numbers in any batch; `samples` masks per instance are averaged (the
code draws 1).

`official: true` reproduces the released code where it departs from that description: its masks run the other way
(comprehensiveness keeps a unit with probability s_i, sufficiency with 1 - s_i; the code's earlier version and the
authors' later ReAGent code run as above), the scores are squashed by a sigmoid for sufficiency (min-max for
comprehensiveness), the specials are dropped with the least important tokens under comprehensiveness, and x0 is
every id 0 (the [PAD] of BERT vocabularies), the specials included.

Summary keys: `soft_comprehensiveness` (Soft-NC), `soft_sufficiency` (Soft-NS), suffixed `_official` with the flag.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from scipy.special import expit

from attexp.config.schema import ComponentConfig
from attexp.evaluate.base import MetricResult
from attexp.evaluate.faithfulness import FaithfulnessMetric, _summary
from attexp.evaluate.model_scorer import Instance, ModelScorer, Row, full_probabilities
from attexp.models.inputs import length_bucketed_batches
from attexp.registry import METRICS


class SoftConfig(ComponentConfig):
    """Soft-NC and Soft-NS (Zhao & Aletras, 2023); see the module docstring. samples: masks averaged per instance;
    seed: with the instance's idx, seeds its masks; official: the released code's directions and normalisations."""

    type: Literal["soft"] = "soft"
    samples: int = Field(1, ge=1, le=100)
    seed: int = 0
    official: bool = False


def embedding_output(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose output the soft metrics perturb: the embedding block where the model has one, else the word
    embeddings."""
    block = getattr(getattr(model, "base_model", None), "embeddings", None)
    return block if isinstance(block, torch.nn.Module) else model.get_input_embeddings()


def normalised_scores(scores: np.ndarray, how: Literal["minmax", "sigmoid"]) -> np.ndarray:
    """Scores (n,) -> [0, 1]: min-max (all equal: 0.5) or a sigmoid."""
    if how == "sigmoid":
        return expit(scores)
    low, high = scores.min(), scores.max()
    return np.full_like(scores, 0.5) if high == low else (scores - low) / (high - low)


@METRICS.register("soft", SoftConfig)
class SoftFaithfulness(FaithfulnessMetric):
    """Soft normalised comprehensiveness and sufficiency: importance-proportional masks on the input embeddings."""

    config: SoftConfig

    def keep_probabilities(self, inst: Instance) -> tuple[np.ndarray, np.ndarray]:
        """Per token (T,): the probability that each of its hidden units is kept, for comprehensiveness and for
        sufficiency (1 for the specials, except under the code's comprehensiveness)."""
        official = self.config.official
        comp, suff = np.ones(len(inst.ids)), np.ones(len(inst.ids))
        if inst.n == 0:
            return comp, suff
        content = inst.scores[inst.content]
        if official:
            comp[:] = 0.0  # the code's min-max maps the specials' -1 to 0: kept with probability 0
            comp[inst.content] = normalised_scores(content, "minmax")
            suff[inst.content] = 1.0 - normalised_scores(content, "sigmoid")
        else:
            s = normalised_scores(content, "minmax")
            comp[inst.content], suff[inst.content] = 1.0 - s, s
        return comp, suff

    def measure(self, instances: list[Instance], scorer: ModelScorer) -> MetricResult:
        cfg = self.config
        suffix = "_official" if cfg.official else ""
        comp_key, suff_key = f"soft_comprehensiveness{suffix}", f"soft_sufficiency{suffix}"
        usable = self.usable(instances)
        full = full_probabilities(usable, scorer, cfg.type)
        zero = scorer.probabilities(self.perturbed(usable, scorer))
        perturbed = self._perturbed(usable, scorer)  # (instances, 2 * samples, C)
        per_instance: dict[int, dict[str, Any]] = {}
        samples = cfg.samples
        for i, inst in enumerate(usable):
            p = full[i, inst.target]
            s0 = 1.0 - max(0.0, p - zero[i, inst.target]) - 1e-4
            comp = np.maximum(0.0, p - perturbed[i, :samples, inst.target]).mean()
            suff = (1.0 - np.maximum(0.0, p - perturbed[i, samples:, inst.target])).mean()
            per_instance[inst.idx] = {
                comp_key: float(np.clip(comp / (1.0 - s0), 0.0, 1.0)),
                suff_key: float(np.clip((suff - s0) / (1.0 - s0), 0.0, 1.0)),
            }
        return MetricResult(_summary(per_instance, [comp_key, suff_key], len(instances) - len(usable)), per_instance)

    def perturbed(self, usable: list[Instance], scorer: ModelScorer) -> list[Row]:
        """The inputs with no content, x0, that normalise both metrics (the masked embeddings are not inputs of ids:
        `_perturbed` runs them)."""
        if self.config.official:
            return [(np.zeros_like(inst.ids), inst.segments) for inst in usable]
        return [inst.only(np.array([], dtype=np.int64), scorer.pad_id) for inst in usable]

    def _perturbed(self, instances: list[Instance], scorer: ModelScorer) -> np.ndarray:
        """Class probabilities (instances, 2 * samples, C): `samples` comprehensiveness masks, then as many
        sufficiency masks, per instance; instances of similar length share forwards (`length_bucketed_batches`)."""
        cfg, samples = self.config, self.config.samples
        per_row = 2 * samples
        rows = max(1, scorer.batch_size // per_row)
        batches = length_bucketed_batches([len(inst.ids) for inst in instances], rows, min_rows=max(1, 8 // per_row))
        out: list[np.ndarray | None] = [None] * len(instances)
        layer = embedding_output(scorer.model)
        keep: list[torch.Tensor] = []  # per row of the batch: (T_i,) keep probabilities
        generators: list[torch.Generator] = []

        def mask_output(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            size, width, hidden = output.shape
            mask = torch.ones(size, width, hidden)
            for r, (probability, generator) in enumerate(zip(keep, generators, strict=True)):
                n = len(probability)
                draws = torch.rand(n, hidden, generator=generator)
                mask[r, :n] = (draws < probability[:, None]).float()
            return output * mask.to(device=output.device, dtype=output.dtype)

        handle = layer.register_forward_hook(mask_output)
        began = time.perf_counter()
        try:
            for chunk in batches:
                sequences, keep, generators = [], [], []  # the hook reads `keep` and `generators` row by row
                for i in chunk:
                    inst = instances[i]
                    comp, suff = self.keep_probabilities(inst)
                    generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + inst.idx)
                    for probability in [comp] * samples + [suff] * samples:
                        sequences.append(inst.full())
                        keep.append(torch.as_tensor(probability, dtype=torch.float32))
                        generators.append(generator)
                probabilities = scorer.forward(sequences)  # one padded forward, the rows in this order
                for k, i in enumerate(chunk):
                    out[i] = probabilities[k * per_row : (k + 1) * per_row]
        finally:
            handle.remove()
            scorer.seconds += time.perf_counter() - began
        return np.stack(out) if out else np.zeros((0, per_row, 0))
