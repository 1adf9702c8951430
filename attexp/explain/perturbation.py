"""Perturbation-based explainers, computed with Captum: the model is only run forward, on copies of the input
in which some tokens are replaced by a baseline token.

- Occlusion (Zeiler & Fergus, 2014, "Visualizing and Understanding Convolutional Networks", ECCV): a window of
  `window` tokens slides over the text; each token gets the mean output drop of the windows covering it.
- Feature Ablation: each token replaced alone; its score is the output drop (leave-one-out; Li et al., 2016,
  "Understanding Neural Networks through Representation Erasure", arXiv:1612.08220).
- Shapley Value Sampling (Castro et al., 2009, "Polynomial calculation of the Shapley value based on
  sampling", Computers & Operations Research; Strumbelj & Kononenko, 2010, JMLR): tokens are added in random
  orders; a token's score is its mean marginal contribution.
- KernelSHAP (Lundberg & Lee, 2017, "A Unified Approach to Interpreting Model Predictions", NeurIPS): a linear
  model fitted to random coalitions weighted by the Shapley kernel.
- LIME (Ribeiro et al., 2016, "'Why Should I Trust You?'", KDD): a ridge regression fitted to random coalitions
  weighted by their closeness to the full text.

What is perturbed: real tokens only. Each real token is one feature (id 0..n-1 in text order); [CLS], [SEP]
and padding are never replaced (the baseline keeps them; they share feature 0, where replacing them by
themselves changes nothing) and get exactly 0. The baseline token is `pad`, `mask` or `unk`; the attention mask
is left as it is, so the replaced position is still attended to.

Batching: Feature Ablation and Shapley Value Sampling explain the whole batch in one Captum call (one feature
mask per instance; feature k is ablated in every instance at once) and run `perturbations_per_eval`
perturbed copies of the batch as one forward, as many as `max_tokens_per_forward` allows. Occlusion, LIME and
KernelSHAP go one instance at a time (unpadded), because Captum's occlusion windows span the padded width
(so an instance's scores would depend on its batch) and LIME/KernelSHAP fit one surrogate model per instance
anyway; each instance's perturbations still run together.

Passes: the forward is memoised per explain call. A row identical to one already run (the unperturbed input,
a shorter instance's copy when feature k is beyond its length, a coalition drawn twice) is not run again, and
passes are counted per instance as the rows of it that really went through the model.

Randomness (Shapley sampling, KernelSHAP, LIME): drawn from torch's generator seeded by the config's `seed`
and the batch's contents (see `attexp.explain.captum_base.seeded`), so reruns and resumed jobs give identical
records and the job's seed stream is untouched.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from captum._utils.models.linear_model import SkLearnLinearRegression, SkLearnRidge
from captum.attr import FeatureAblation, KernelShap, Lime, Occlusion, ShapleyValueSampling
from pydantic import Field
from torch import Tensor

from attexp.explain.base import Explanation
from attexp.explain.batching import rows_per_forward
from attexp.explain.captum_base import CaptumConfig, CaptumExplainer, TokenBaseline, instance_groups, seeded
from attexp.models.inputs import Batch, structural_positions
from attexp.models.memo import RowMemo
from attexp.registry import EXPLAINERS


class PerturbationConfig(CaptumConfig):
    """Fields every perturbation explainer has.

    baseline: the token that replaces a perturbed real token (`pad` default, `mask`, `unk`).
    max_tokens_per_forward: memory budget in padded token positions per forward (default 16384): how many
    perturbed copies run as one forward (`perturbations_per_eval`).
    """

    baseline: TokenBaseline = "pad"
    max_tokens_per_forward: int | None = Field(16384, ge=1)


class CachedForward:
    """The model's scores as Captum's forward function, each distinct row run once (`RowMemo`), rows counted per
    instance.

    `members[r % len(members)]` is the instance that row r of a call belongs to (Captum stacks perturbed
    copies of the batch one after the other); `passes[i]` counts the rows of instance i that were run.
    """

    def __init__(self, explainer: CaptumExplainer, members: list[int], passes: list[int]):
        self.explainer = explainer
        self.members = members
        self.passes = passes
        self.memo: RowMemo[Tensor] = RowMemo()

    def __call__(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
        # input_ids, attention_mask, token_type_ids [N, T] -> scores [N, C]
        parts = [input_ids, attention_mask] + ([] if token_type_ids is None else [token_type_ids])
        keys = [row.tobytes() for row in torch.cat(parts, dim=1).cpu().numpy()]

        def run(rows: list[int]) -> Tensor:
            index = torch.tensor(rows, device=input_ids.device)
            out = self.explainer.scores(
                input_ids=input_ids[index],
                attention_mask=attention_mask[index],
                token_type_ids=None if token_type_ids is None else token_type_ids[index],
            )
            for r in rows:
                self.passes[self.members[r % len(self.members)]] += 1
            return out

        return torch.stack(self.memo.run(keys, run))


class PerturbationExplainer(CaptumExplainer):
    """Base of the perturbation explainers: baseline ids, one feature per real token, zeros elsewhere.

    A subclass implements `attribute(batch, baselines, features, real, passes)` -> scores [B, T].
    """

    config: PerturbationConfig

    def explain(self, batch: Batch) -> Explanation:
        real = ~structural_positions(batch.input_ids, batch.attention_mask, self.tokenizer)  # [B, T]
        features = (real.long().cumsum(dim=1) - 1).clamp(min=0)  # [B, T]: real tokens 0..n-1, the rest 0
        passes = [0] * len(batch)
        with torch.no_grad():
            scores = self.attribute(batch, self.baseline_ids(batch), features, real, passes)
        scores = torch.where(real, scores.float(), torch.zeros((), device=scores.device))
        return Explanation(attributions=scores, forward_passes=passes, backward_passes=[0] * len(batch))

    def attribute(self, batch: Batch, baselines: Tensor, features: Tensor, real: Tensor, passes: list[int]) -> Tensor:
        raise NotImplementedError

    def per_eval(self, perturbations: int, copies: int, width: int) -> int:
        """Perturbed copies per forward: all `perturbations`, or as many (of `copies` rows each) as fit."""
        cap = rows_per_forward(self.budget("max_tokens_per_forward"), width)
        return max(1, perturbations if cap is None else min(perturbations, cap // copies))

    @staticmethod
    def forward_args(batch: Batch) -> tuple[Tensor, Tensor | None]:
        return (batch.attention_mask, batch.token_type_ids)

    @staticmethod
    def instance(batch: Batch, i: int) -> tuple[Batch, int]:
        """Instance i alone, unpadded, and its length."""
        n = int(batch.attention_mask[i].sum())
        one = Batch(
            input_ids=batch.input_ids[i : i + 1, :n],
            attention_mask=batch.attention_mask[i : i + 1, :n],
            token_type_ids=None if batch.token_type_ids is None else batch.token_type_ids[i : i + 1, :n],
            targets=batch.targets[i : i + 1],
        )
        return one, n


# ---------------------------------------------------------------- one Captum call per batch


class BatchedPerturbationExplainer(PerturbationExplainer):
    """Base of the methods that explain several instances in one Captum call (one feature mask per instance).

    The batch is cut into groups of as many instances as one copy of which fits `max_tokens_per_forward`
    (usually the whole batch); `attribute_group` runs Captum on one group.
    """

    def attribute(self, batch: Batch, baselines: Tensor, features: Tensor, real: Tensor, passes: list[int]) -> Tensor:
        size, width = batch.input_ids.shape
        scores = torch.zeros(size, width, device=batch.input_ids.device)
        for index in instance_groups(size, 1, width, self.budget("max_tokens_per_forward")):
            most = int(real[index].sum(dim=1).max())
            if most == 0:
                continue  # nothing to perturb: all scores stay 0
            group_passes = [0] * len(index)
            forward = CachedForward(self, list(range(len(index))), group_passes)
            part = batch.subset(index)
            scores[index] = self.attribute_group(part, baselines[index], features[index], forward, most).float()
            for i, count in zip(index.tolist(), group_passes, strict=True):
                passes[i] += count
        return scores

    def attribute_group(
        self, batch: Batch, baselines: Tensor, features: Tensor, forward: CachedForward, most: int
    ) -> Tensor:
        """Scores [G, T] for a group; `most` is its largest number of real tokens."""
        raise NotImplementedError


class FeatureAblationConfig(PerturbationConfig):
    """Feature Ablation (leave-one-out; Li et al., 2016): each real token replaced by the baseline token alone."""

    type: Literal["feature_ablation"] = "feature_ablation"


@EXPLAINERS.register("feature_ablation", FeatureAblationConfig)
class FeatureAblationExplainer(BatchedPerturbationExplainer):
    """Feature Ablation via Captum: score = f(x) - f(x with that token replaced by the baseline token).

    Cost per instance: 1 forward of the input + 1 per real token.
    """

    config: FeatureAblationConfig

    def attribute_group(
        self, batch: Batch, baselines: Tensor, features: Tensor, forward: CachedForward, most: int
    ) -> Tensor:
        size, width = batch.input_ids.shape
        return FeatureAblation(forward).attribute(
            batch.input_ids,
            baselines=baselines,
            target=batch.targets.tolist(),
            additional_forward_args=self.forward_args(batch),
            feature_mask=features,
            perturbations_per_eval=self.per_eval(most, size, width),
        )


class ShapleySamplingConfig(PerturbationConfig):
    """Shapley Value Sampling over the real tokens (Castro et al., 2009).

    n_samples (25, Thermostat's setting): random token orders; seed (0): with the batch's contents, fixes them.
    """

    type: Literal["shapley_sampling"] = "shapley_sampling"
    n_samples: int = Field(25, ge=1)
    seed: int = 0


@EXPLAINERS.register("shapley_sampling", ShapleySamplingConfig)
class ShapleySamplingExplainer(BatchedPerturbationExplainer):
    """Shapley Value Sampling via Captum, one feature per real token.

    Each order starts from the baseline (all real tokens replaced) and adds tokens one by one, so per instance
    the scores add up exactly to f(x) - f(baseline) (efficiency). One permutation of max_i n_i features is
    shared by the batch; for a shorter instance it is a uniform permutation of its own tokens.
    Cost per instance: at most 1 + n_samples * n forward passes for n real tokens; fewer in practice, since
    repeated coalitions (the full input at the end of every order, short texts' few subsets) run once.
    """

    deterministic = False
    config: ShapleySamplingConfig

    def attribute(self, batch: Batch, baselines: Tensor, features: Tensor, real: Tensor, passes: list[int]) -> Tensor:
        with seeded(self.config.seed, batch):
            return super().attribute(batch, baselines, features, real, passes)

    def attribute_group(
        self, batch: Batch, baselines: Tensor, features: Tensor, forward: CachedForward, most: int
    ) -> Tensor:
        size, width = batch.input_ids.shape
        return ShapleyValueSampling(forward).attribute(
            batch.input_ids,
            baselines=baselines,
            target=batch.targets.tolist(),
            additional_forward_args=self.forward_args(batch),
            feature_mask=features,
            n_samples=self.config.n_samples,
            perturbations_per_eval=self.per_eval(most, size, width),
        )


# ---------------------------------------------------------------- one Captum call per instance


class OcclusionConfig(PerturbationConfig):
    """Occlusion (Zeiler & Fergus, 2014) with a sliding window over the tokens.

    window (3): tokens replaced at once (capped at the text's length); stride (1): step between windows.
    """

    type: Literal["occlusion"] = "occlusion"
    window: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)


@EXPLAINERS.register("occlusion", OcclusionConfig)
class OcclusionExplainer(PerturbationExplainer):
    """Occlusion via Captum: each token gets the mean output drop of the windows that cover it.

    Windows slide over the unpadded instance, [CLS] and [SEP] included, but only real tokens are replaced: a
    window over [CLS] and one word perturbs that word. Specials get exactly 0. With window 1 this is Feature
    Ablation. Cost per instance: 1 + the number of distinct windows ((n - window) / stride + 1, n counting
    the specials).
    """

    config: OcclusionConfig

    def attribute(self, batch: Batch, baselines: Tensor, features: Tensor, real: Tensor, passes: list[int]) -> Tensor:
        size, width = batch.input_ids.shape
        scores = torch.zeros(size, width, device=batch.input_ids.device)
        for i in range(size):
            if not real[i].any():
                continue
            one, n = self.instance(batch, i)
            window = min(self.config.window, n)
            windows = (n - window) // self.config.stride + 1
            scores[i, :n] = Occlusion(CachedForward(self, [i], passes)).attribute(
                one.input_ids,
                sliding_window_shapes=(window,),
                strides=(self.config.stride,),
                baselines=baselines[i : i + 1, :n],
                target=one.targets.tolist(),
                additional_forward_args=self.forward_args(one),
                perturbations_per_eval=self.per_eval(windows, 1, n),
            )[0]
        return scores


class KernelShapConfig(PerturbationConfig):
    """KernelSHAP (Lundberg & Lee, 2017) over the real tokens.

    n_samples (100): coalitions drawn per instance (the first two are all and none); seed (0): with the
    batch's contents, fixes them.
    """

    type: Literal["kernel_shap"] = "kernel_shap"
    n_samples: int = Field(100, ge=2)
    seed: int = 0


@EXPLAINERS.register("kernel_shap", KernelShapConfig)
class KernelShapExplainer(PerturbationExplainer):
    """KernelSHAP via Captum: a linear regression on coalitions of real tokens, Shapley-kernel weighted.

    Captum samples coalition sizes from the Shapley kernel, so it needs two features or more: a text with one
    real token gets its specials as a second, inert feature (replacing them changes nothing); a text of one token
    and no specials (a byte-level BPE decoder's) gets its exact Shapley value, f(x) - f(baseline), in 2 passes.
    Captum weights the full and the empty coalition heavily, so the scores nearly add up to f(x) - f(baseline).
    Cost per instance: at most n_samples forward passes (distinct coalitions only).
    """

    deterministic = False
    config: KernelShapConfig

    def attribute(self, batch: Batch, baselines: Tensor, features: Tensor, real: Tensor, passes: list[int]) -> Tensor:
        size, width = batch.input_ids.shape
        scores = torch.zeros(size, width, device=batch.input_ids.device)
        with seeded(self.config.seed, batch):
            for i in range(size):
                count = int(real[i].sum())
                if count == 0:
                    continue
                one, n = self.instance(batch, i)
                mask = features[i : i + 1, :n]
                if count == 1 and n == 1:  # one token, nothing else: its Shapley value is f(x) - f(baseline)
                    forward, args = CachedForward(self, [i], passes), self.forward_args(one)
                    target = int(one.targets[0])
                    gap = forward(one.input_ids, *args)[0, target] - forward(baselines[i : i + 1, :n], *args)[0, target]
                    scores[i, 0] = gap
                    continue
                if count == 1:
                    mask = (~real[i : i + 1, :n]).long()  # the token is feature 0, the specials feature 1
                scores[i, :n] = KernelShap(CachedForward(self, [i], passes)).attribute(
                    one.input_ids,
                    baselines=baselines[i : i + 1, :n],
                    target=one.targets.tolist(),
                    additional_forward_args=self.forward_args(one),
                    feature_mask=mask,
                    n_samples=self.config.n_samples,
                    perturbations_per_eval=self.per_eval(self.config.n_samples, 1, n),
                )[0]
        return scores


class LimeConfig(PerturbationConfig):
    """LIME (Ribeiro et al., 2016) over the real tokens, with the reference implementation's text defaults.

    n_samples (100): coalitions drawn per instance, each token kept with probability 1/2; kernel_width (25):
    a coalition keeping k of n tokens weighs sqrt(exp(-d^2 / kernel_width^2)) with d = 100 * cosine distance
    to the full text = 100 * (1 - sqrt(k / n)); alpha (1.0): ridge penalty of the surrogate (0: ordinary least
    squares); seed (0): with the batch's contents, fixes the draws.
    """

    type: Literal["lime"] = "lime"
    n_samples: int = Field(100, ge=1)
    kernel_width: float = Field(25.0, gt=0)
    alpha: float = Field(1.0, ge=0)
    seed: int = 0


@EXPLAINERS.register("lime", LimeConfig)
class LimeExplainer(PerturbationExplainer):
    """LIME via Captum: a weighted ridge regression on random coalitions of real tokens; scores = coefficients.

    Cost per instance: at most n_samples forward passes (distinct coalitions only).
    """

    deterministic = False
    config: LimeConfig

    def similarity(self, original: Tensor, perturbed: Tensor, coalition: Tensor, **kwargs) -> float:
        """LIME's text kernel on the coalition [1, n] (1 = token kept)."""
        kept, total = float(coalition.sum()), coalition.numel()
        distance = 100.0 * (1.0 - math.sqrt(kept / total))  # cosine distance to all-ones, x 100
        return math.sqrt(math.exp(-(distance**2) / self.config.kernel_width**2))

    def attribute(self, batch: Batch, baselines: Tensor, features: Tensor, real: Tensor, passes: list[int]) -> Tensor:
        size, width = batch.input_ids.shape
        scores = torch.zeros(size, width, device=batch.input_ids.device)
        alpha = self.config.alpha
        with seeded(self.config.seed, batch):
            for i in range(size):
                if not real[i].any():
                    continue
                one, n = self.instance(batch, i)
                surrogate = SkLearnRidge(alpha=alpha) if alpha > 0 else SkLearnLinearRegression()
                lime = Lime(
                    CachedForward(self, [i], passes), interpretable_model=surrogate, similarity_func=self.similarity
                )
                scores[i, :n] = lime.attribute(
                    one.input_ids,
                    baselines=baselines[i : i + 1, :n],
                    target=one.targets.tolist(),
                    additional_forward_args=self.forward_args(one),
                    feature_mask=features[i : i + 1, :n],
                    n_samples=self.config.n_samples,
                    perturbations_per_eval=self.per_eval(self.config.n_samples, 1, n),
                )[0]
        return scores
