"""The gradient explainers on `inputs_embeds` (`ig`, `saliency`, `input_x_gradient`, `deeplift`, `gradient_shap`):
the word embeddings of the batch are looked up once and passed to the model as `inputs_embeds`, with the attention
mask and segment ids as additional forward arguments (see the package docstring)."""

from __future__ import annotations

import abc
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from captum.attr import (
    DeepLift,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Saliency,
)
from pydantic import Field
from torch import Tensor

from attexp.errors import ConfigError
from attexp.explain.base import Explanation, Reduction, reduce_hidden, zero_padding
from attexp.explain.batching import rows_per_forward
from attexp.explain.captum_base import (
    CaptumConfig,
    CaptumExplainer,
    gradient_max_tokens,
    instance_groups,
    seeded,
)
from attexp.explain.gradient.lig import CaptumRule
from attexp.models.inputs import Batch, structural_positions
from attexp.models.precision import accumulation_dtype
from attexp.registry import EXPLAINERS


class EmbeddingGradientConfig(CaptumConfig):
    """Fields of the explainers that take gradients with respect to the word embeddings (`inputs_embeds`).

    baseline: the reference embedding at real tokens: that of `pad` (default), `mask` or `unk`, or `zero`
    (a zero vector); specials and padding keep theirs. reduce: how the hidden dimension becomes one score per
    token (`sum`: signed, keeps completeness; `l2`: magnitude; `mean`: signed, scale-free).
    """

    baseline: Literal["pad", "mask", "unk", "zero"] = "pad"
    reduce: Reduction = "sum"


class _EmbeddingsToScores(torch.nn.Module):
    """The classifier as a function of its word embeddings, as an nn.Module (Captum's DeepLift hooks a module)."""

    def __init__(self, explainer: EmbeddingGradientExplainer):
        super().__init__()
        self.classifier = explainer.model
        self._explainer = explainer

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        return self._explainer.embeds_forward(inputs_embeds, attention_mask, token_type_ids)


class EmbeddingGradientExplainer(CaptumExplainer):
    """Base of the gradient methods on `inputs_embeds`: embeddings looked up once, budgeted groups, reduction.

    A subclass sets `rows_per_instance` (forward rows one instance costs in one Captum call, for the memory
    budget) and implements `attribute`, returning per-hidden attributions [G, T, H] and optional deltas [G].
    """

    needs_gradients = True
    config: EmbeddingGradientConfig
    rows_per_instance: ClassVar[int] = 1

    def __init__(
        self, config: EmbeddingGradientConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]
    ):
        super().__init__(config, model, tokenizer, upstream)
        self.embedding = model.get_input_embeddings()
        self.module = _EmbeddingsToScores(self)

    def embeds_forward(self, inputs_embeds: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
        # inputs_embeds [N, T, H] (float32) -> scores [N, C]; the model runs in its own dtype
        embeds = inputs_embeds.to(self.embedding.weight.dtype)
        return self.scores(inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def embeds(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Input and baseline word embeddings [G, T, H], detached leaves (Captum sets requires_grad).

        float32 for bf16/fp16 weights (`accumulation_dtype`; a float64 model keeps float64): the path points, noise,
        offsets and Captum's sums over steps and samples are taken in it (bf16 has 8 bits of mantissa: a sum of 20
        steps in bf16 loses the small terms), and only the model's forward runs in its own dtype (`embeds_forward`
        casts)."""
        with torch.no_grad():
            wide = accumulation_dtype(self.embedding.weight.dtype)
            inputs = self.embedding(batch.input_ids).to(wide)
            if self.baseline_id is not None:
                baselines = self.embedding(self.baseline_ids(batch)).to(wide)
            else:
                keep = structural_positions(batch.input_ids, batch.attention_mask, self.tokenizer)
                baselines = inputs * keep.unsqueeze(-1).to(inputs.dtype)
        return inputs.detach(), baselines.detach()

    def backward_rows(self) -> int:
        """Rows per instance that go through a backward pass."""
        return self.rows_per_instance

    @abc.abstractmethod
    def attribute(self, inputs: Tensor, baselines: Tensor, batch: Batch) -> tuple[Tensor, Tensor | None]:
        """Attributions [G, T, H] for `batch.targets`, and convergence deltas [G] or None."""

    def explain(self, batch: Batch) -> Explanation:
        self.check_autograd()
        size, width = batch.input_ids.shape
        scores = torch.zeros(size, width, device=batch.input_ids.device)
        deltas: Tensor | None = None
        forwards = [0] * size
        budget = gradient_max_tokens(self.model, self.budget("max_tokens_per_forward"))
        for index in instance_groups(size, self.rows_per_instance, width, budget):
            part = batch.subset(index)
            inputs, baselines = self.embeds(part)
            self.rows_forwarded = 0
            with torch.enable_grad():
                attributions, delta = self.attribute(inputs, baselines, part)
            # attributions [G, T, H] -> scores [G, T]
            scores[index] = reduce_hidden(attributions.detach(), self.config.reduce).to(scores.dtype)
            for i in index.tolist():
                forwards[i] = self.rows_forwarded // len(index)
            if delta is not None:
                deltas = torch.zeros(size, device=scores.device) if deltas is None else deltas
                deltas[index] = delta.detach().reshape(len(index)).to(deltas.dtype)
        return Explanation(
            attributions=zero_padding(scores, batch.attention_mask),
            forward_passes=forwards,
            backward_passes=[self.backward_rows()] * size,
            extras={} if deltas is None else {"convergence_delta": deltas},
        )

    def forward_args(self, batch: Batch) -> tuple[Tensor, Tensor | None]:
        return (batch.attention_mask, batch.token_type_ids)


class IGConfig(EmbeddingGradientConfig):
    """Integrated Gradients on the word embeddings (Sundararajan et al., 2017).

    n_steps (20), method (`gausslegendre`), internal_batch_size (None: all B * n_steps rows at once, or what
    `max_tokens_per_forward` allows) as for `lig`; return_delta: also return the convergence delta per
    instance (2 more forward passes).
    """

    type: Literal["ig"] = "ig"
    n_steps: int = Field(20, ge=1)
    method: CaptumRule = "gausslegendre"
    internal_batch_size: int | None = Field(None, ge=1)
    return_delta: bool = False

    def check_batch_size(self, batch_size: int) -> None:
        if self.internal_batch_size is not None and self.internal_batch_size < batch_size:
            raise ValueError(
                f"{self.type}: internal_batch_size={self.internal_batch_size} is smaller than batch_size={batch_size}; "
                f"Captum needs at least one row per instance. Raise internal_batch_size or lower batch_size."
            )


@EXPLAINERS.register("ig", IGConfig)
class IntegratedGradientsExplainer(EmbeddingGradientExplainer):
    """Integrated Gradients (Sundararajan et al., 2017) on `inputs_embeds`, via Captum.

    The same integral as `lig` with layer `word_embeddings`, but the embeddings are looked up once instead of
    being read by two extra forward passes, and a `zero` baseline is possible. Specials get exactly 0 and the
    token scores (reduce `sum`) add up to f(x) - f(baseline) up to the integration error.
    Cost per instance: n_steps forward and backward passes (+2 forward with return_delta).
    """

    config: IGConfig

    @property
    def rows_per_instance(self) -> int:  # type: ignore[override]
        return self.config.n_steps

    def explain(self, batch: Batch) -> Explanation:
        cfg = self.config
        if cfg.internal_batch_size is not None and cfg.internal_batch_size < len(batch):
            raise ConfigError(
                f"ig: internal_batch_size={cfg.internal_batch_size} is smaller than the batch size {len(batch)}; "
                f"Captum needs at least one row per instance. Raise internal_batch_size or lower the batch size."
            )
        return super().explain(batch)

    def attribute(self, inputs: Tensor, baselines: Tensor, batch: Batch) -> tuple[Tensor, Tensor | None]:
        cfg = self.config
        budget = gradient_max_tokens(self.model, self.budget("max_tokens_per_forward"))
        chunk = cfg.internal_batch_size or rows_per_forward(budget, inputs.shape[1])
        result = IntegratedGradients(self.embeds_forward).attribute(
            inputs.requires_grad_(),
            baselines=baselines,
            target=batch.targets.tolist(),
            additional_forward_args=self.forward_args(batch),
            n_steps=cfg.n_steps,
            method=cfg.method,
            internal_batch_size=None if chunk is None else max(chunk, len(batch)),
            return_convergence_delta=cfg.return_delta,
        )
        return result if cfg.return_delta else (result, None)


class SaliencyConfig(EmbeddingGradientConfig):
    """Saliency (Simonyan et al., 2014): the gradient of the target score at the input embeddings.

    abs: take absolute values (Captum's default, True); with reduce `sum` a token's score is then the L1 norm
    of its gradient, with `l2` its L2 norm. The baseline is not used.
    """

    type: Literal["saliency"] = "saliency"
    abs: bool = True


@EXPLAINERS.register("saliency", SaliencyConfig)
class SaliencyExplainer(EmbeddingGradientExplainer):
    """Saliency (Simonyan et al., 2014): d f_target / d embedding, via Captum.

    Specials are scored like any token (their gradient). Cost per instance: 1 forward, 1 backward.
    """

    config: SaliencyConfig

    def attribute(self, inputs: Tensor, baselines: Tensor, batch: Batch) -> tuple[Tensor, Tensor | None]:
        result = Saliency(self.embeds_forward).attribute(
            inputs.requires_grad_(),
            target=batch.targets.tolist(),
            abs=self.config.abs,
            additional_forward_args=self.forward_args(batch),
        )
        return result, None


class InputXGradientConfig(EmbeddingGradientConfig):
    """Input x Gradient (Shrikumar et al., 2016): embedding times the gradient at it. The baseline is not used."""

    type: Literal["input_x_gradient"] = "input_x_gradient"


@EXPLAINERS.register("input_x_gradient", InputXGradientConfig)
class InputXGradientExplainer(EmbeddingGradientExplainer):
    """Input x Gradient (Shrikumar et al., 2016): embedding * d f_target / d embedding, via Captum.

    Specials are scored like any token. Cost per instance: 1 forward, 1 backward.
    """

    config: InputXGradientConfig

    def attribute(self, inputs: Tensor, baselines: Tensor, batch: Batch) -> tuple[Tensor, Tensor | None]:
        result = InputXGradient(self.embeds_forward).attribute(
            inputs.requires_grad_(),
            target=batch.targets.tolist(),
            additional_forward_args=self.forward_args(batch),
        )
        return result, None


class DeepLiftConfig(EmbeddingGradientConfig):
    """DeepLift with the Rescale rule (Shrikumar et al., 2017) on the word embeddings.

    return_delta: also return the summation-to-delta gap per instance (2 more forward passes).
    """

    type: Literal["deeplift"] = "deeplift"
    return_delta: bool = False


@EXPLAINERS.register("deeplift", DeepLiftConfig)
class DeepLiftExplainer(EmbeddingGradientExplainer):
    """DeepLift (Shrikumar et al., 2017), Rescale rule, on `inputs_embeds` via Captum's DeepLift.

    Captum runs the input and the baseline as one batch of 2G rows and replaces the gradient of every
    non-linearity it knows as a module (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Softmax, ...) by the ratio of output
    to input differences. Limitation on transformers: a BERT has one such module, the pooler's nn.Tanh; GELU
    (transformers' own GELUActivation class), the attention softmax (a function, not a module), LayerNorm and
    the products inside attention pass their ordinary gradients. DeepLift is then a gradient x (input -
    baseline) method with a Rescale step at the pooler, and its attributions do not sum to f(x) - f(baseline)
    (return_delta shows by how much). Summation-to-delta holds where every non-linearity is a supported
    module between linear maps (tested on such a model). Specials get exactly 0 (input = baseline there).
    Cost per instance: 2 forward rows (input and baseline) and a backward through both (+2 forward with
    return_delta).
    """

    config: DeepLiftConfig
    rows_per_instance = 2

    def attribute(self, inputs: Tensor, baselines: Tensor, batch: Batch) -> tuple[Tensor, Tensor | None]:
        result = DeepLift(self.module).attribute(
            inputs.requires_grad_(),
            baselines=baselines,
            target=batch.targets.tolist(),
            additional_forward_args=self.forward_args(batch),
            return_convergence_delta=self.config.return_delta,
        )
        return result if self.config.return_delta else (result, None)

    def explain(self, batch: Batch) -> Explanation:
        with warnings.catch_warnings():  # Captum warns on every call that it sets hooks (and removes them)
            warnings.filterwarnings("ignore", message=".*Setting forward, backward hooks.*")
            return super().explain(batch)


class GradientShapConfig(EmbeddingGradientConfig):
    """Gradient SHAP (Lundberg & Lee, 2017; expected gradients, Erion et al., 2021) on the word embeddings.

    n_samples (20): random points per instance, each at baseline + alpha * (input + noise - baseline) with
    alpha ~ U(0, 1); stdevs (0.0): standard deviation of the Gaussian noise added to the input embeddings;
    seed (0): with the batch's contents, fixes the random draws (see `seeded`).
    """

    type: Literal["gradient_shap"] = "gradient_shap"
    n_samples: int = Field(20, ge=1)
    stdevs: float = Field(0.0, ge=0.0)
    seed: int = 0


@EXPLAINERS.register("gradient_shap", GradientShapConfig)
class GradientShapExplainer(EmbeddingGradientExplainer):
    """Gradient SHAP (Lundberg & Lee, 2017) on `inputs_embeds` via Captum's GradientShap.

    Captum draws each sample's baseline at random from one baseline distribution shared by the whole batch,
    while here every instance has its own baseline (its specials sit at its own positions). So Captum is given
    the offset from the baseline, d = x - b, with baseline 0 for all, and the forward adds b back (b travels
    as an additional forward argument, expanded with the samples): the same estimator, one call per batch.
    With stdevs = 0 the expected attributions sum to f(x) - f(baseline) (a Monte Carlo Integrated Gradients);
    specials then get exactly 0, and with noise only the noise term. Stochastic: seeded per batch.
    Cost per instance: n_samples forward and backward passes.
    """

    deterministic = False
    config: GradientShapConfig

    @property
    def rows_per_instance(self) -> int:  # type: ignore[override]
        return self.config.n_samples

    def _offset_forward(
        self, offsets: Tensor, baselines: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> Tensor:
        # offsets, baselines [N, T, H] -> scores [N, C]
        return self.embeds_forward(offsets + baselines, attention_mask, token_type_ids)

    def attribute(self, inputs: Tensor, baselines: Tensor, batch: Batch) -> tuple[Tensor, Tensor | None]:
        offsets = inputs - baselines  # [G, T, H]
        with seeded(self.config.seed, batch):
            result = GradientShap(self._offset_forward).attribute(
                offsets,
                baselines=torch.zeros_like(offsets[:1]),
                n_samples=self.config.n_samples,
                stdevs=self.config.stdevs,
                target=batch.targets.tolist(),
                additional_forward_args=(baselines, batch.attention_mask, batch.token_type_ids),
            )
        return result, None
