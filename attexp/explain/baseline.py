"""Random scores: the floor every faithfulness and agreement table is read against.

An explainer is only informative where it beats an explanation that knows nothing. ERASER (DeYoung et al.,
2020, "ERASER: A Benchmark to Evaluate Rationalized NLP Models", ACL) and the faithfulness studies after it
(e.g. Atanasova et al., 2020, "A Diagnostic Study of Explainability Techniques for Text Classification",
EMNLP) report a random ranking beside every method: removing random tokens already moves the prediction,
and comprehensiveness or Spearman only mean something as a margin over that.

`random` draws one score per real token without running the model (0 forward and 0 backward passes of its
own; the engine's prediction forward is the only pass in its records):

- `uniform` (default): U[0, 1), so every content token is a positive candidate (ferret's positive-only
  variants see them all); `gaussian`: N(0, 1), signed like gradient methods.
- Special tokens: structural specials ([CLS], [SEP], <s>, </s>) and padding get exactly 0, as in Integrated
  Gradients' baseline, so they never outrank content; the faithfulness metrics never remove them anyway.
  [UNK] and [MASK] stand for text and are scored like any token.
- Seeding: each instance's draws come from a generator seeded with (`seed`, its token ids), so an instance
  gets the same scores whatever batch it sits in, in any run, on any device (deterministic in the sense of
  the explainer contract). Two instances with identical token ids get identical scores.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from attexp.explain.base import Explainer, ExplainerConfig, Explanation
from attexp.models.inputs import Batch, structural_positions
from attexp.registry import EXPLAINERS

Distribution = Literal["uniform", "gaussian"]


class RandomConfig(ExplainerConfig):
    """Random token scores (the floor of every comparison).

    distribution: `uniform` (U[0, 1), default) or `gaussian` (N(0, 1)); seed (0): with each instance's token
    ids, fixes its draws.
    """

    type: Literal["random"] = "random"
    distribution: Distribution = "uniform"
    seed: int = Field(0, description="with each instance's token ids, fixes its random scores")


def instance_seed(seed: int, token_ids: Tensor | np.ndarray | list[int]) -> int:
    """A 63-bit seed from (`seed`, the instance's token ids without padding)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(int(seed)).encode())
    digest.update(np.asarray(token_ids, dtype=np.int64).tobytes())
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


def random_scores(
    token_ids: np.ndarray, structural: np.ndarray, seed: int, distribution: Distribution = "uniform"
) -> np.ndarray:
    """Scores (T,) for one instance's unpadded ids (T,): random at content tokens, 0 where `structural` (T,)."""
    rng = np.random.default_rng(instance_seed(seed, token_ids))
    draws = rng.random(len(token_ids)) if distribution == "uniform" else rng.standard_normal(len(token_ids))
    return np.where(structural, 0.0, draws)


@EXPLAINERS.register("random", RandomConfig)
class RandomExplainer(Explainer):
    """Random scores per real token (uniform or gaussian), seeded per instance; 0 at specials and padding.

    Cost: no model pass of its own (0 forward, 0 backward); `runs_model = False` says so to the tests.
    """

    runs_model = False
    config: RandomConfig

    def explain(self, batch: Batch) -> Explanation:
        structural = structural_positions(batch.input_ids, batch.attention_mask, self.tokenizer).cpu().numpy()
        ids = batch.input_ids.cpu().numpy()
        lengths = batch.attention_mask.sum(dim=-1).tolist()
        scores = np.zeros(ids.shape, dtype=np.float32)  # [B, T]
        for i, n in enumerate(lengths):
            n = int(n)
            scores[i, :n] = random_scores(ids[i, :n], structural[i, :n], self.config.seed, self.config.distribution)
        size = len(batch)
        return Explanation(
            attributions=torch.from_numpy(scores).to(batch.input_ids.device),
            forward_passes=[0] * size,
            backward_passes=[0] * size,
        )
