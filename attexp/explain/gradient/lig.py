"""`lig`: Layer Integrated Gradients on an embedding layer (the word embeddings or the whole embedding block);
Captum runs the model from the token ids and swaps the layer's output for the path points (see the package
docstring for baselines, batching and pass counts)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients
from captum.attr._utils.approximation_methods import approximation_parameters
from pydantic import field_validator
from torch import Tensor

from attexp.config.schema import NeutralDefault
from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import Explanation, Reduction, reduce_hidden, zero_padding
from attexp.explain.batching import rows_per_forward
from attexp.explain.captum_base import (
    CaptumConfig,
    CaptumExplainer,
    TokenBaseline,
    gradient_max_tokens,
    instance_groups,
    seeded,
)
from attexp.models.inputs import Batch
from attexp.registry import EXPLAINERS

CaptumRule = Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"]
"""The integration rules Captum offers (LIG and IG)."""
IntegrationMethod = CaptumRule | Literal["stratified"]
"""LIG's rules: Captum's, and attexp's `stratified` (`StratifiedIG`)."""


class StratifiedIG(IntegratedGradients):
    """Integrated Gradients with stratified Monte-Carlo points: with n steps, step i's point is drawn uniformly in
    [i/n, (i+1)/n) and weighs 1/n. The sum is an unbiased estimate of the exact path integral, where every fixed
    rule (Gauss-Legendre, Riemann) has a bias that does not shrink with more instances. A learned explainer trained
    on unbiased noisy labels converges to what the exact integral would teach it (stochastic amortization, Covert
    et al., NeurIPS 2024); on a rule's biased labels it learns the bias.

    The draws are made by `draw(n)` before each attribution (the caller seeds them) and shared by the rows of that
    call. Captum is called with the `gausslegendre` rule as the carrier (its riemann rules refuse one step): the
    i-th of its n points (also in the chunks it splits the steps into) is replaced by a draw in stratum i."""

    offsets: Tensor | None = None

    def draw(self, n_steps: int) -> None:
        self.offsets = torch.rand(n_steps, dtype=torch.float64)

    def _attribute(self, inputs, baselines, target=None, additional_forward_args=None, n_steps=50, method="", **kw):
        if self.offsets is None:
            raise AttexpError("StratifiedIG.draw(n_steps) must run before each attribution")
        total = len(self.offsets)  # all the steps; Captum's chunks pass fewer
        nodes = approximation_parameters("gausslegendre")[1](total)  # the carrier rule's points, in order
        given = kw.get("step_sizes_and_alphas")
        alphas = nodes if given is None else given[1]
        strata = [min(range(total), key=lambda i, a=alpha: abs(nodes[i] - a)) for alpha in alphas]
        points = [(i + float(self.offsets[i])) / total for i in strata]
        return super()._attribute(
            inputs,
            baselines,
            target,
            additional_forward_args,
            n_steps=len(points),
            step_sizes_and_alphas=([1.0 / total] * len(points), points),
        )


class LIGConfig(CaptumConfig):
    """Layer Integrated Gradients on the embedding layer (Sundararajan et al., 2017).

    n_steps: integration steps; method: Captum's approximation rule (`gausslegendre` converges fastest,
    `riemann_*` are the classic sums) or `stratified` (one random point in each of the n_steps equal strata of the
    path, seeded by `seed` and the batch's contents: unbiased for the exact integral, a teacher for learned
    explainers; `StratifiedIG`); internal_batch_size: rows per forward/backward chunk (None: all
    B * n_steps rows at once, or what `max_tokens_per_forward` allows; at least B otherwise); layer:
    `word_embeddings` (token embeddings only) or `embeddings` (the whole block: word + position + segment
    embeddings and LayerNorm); baseline: the token that replaces every real token in the reference input
    ([CLS]/[SEP]/padding are kept); reduce: how the hidden dimension becomes one score per token; output:
    explain the logit or the softmax probability of the target class; return_delta: also return Captum's
    convergence delta per instance (extras["convergence_delta"], costs 2 more forward passes).
    """

    type: Literal["lig"] = "lig"
    n_steps: int = 20
    method: IntegrationMethod = "gausslegendre"
    internal_batch_size: int | None = None
    layer: Literal["embeddings", "word_embeddings"] = "word_embeddings"
    baseline: TokenBaseline = "pad"
    reduce: Reduction = "sum"
    return_delta: bool = False
    seed: Annotated[int, NeutralDefault()] = 0

    @field_validator("n_steps")
    @classmethod
    def _some_steps(cls, n_steps: int) -> int:
        if n_steps < 1:
            raise ConfigError(f"lig: n_steps must be at least 1, got {n_steps}.")
        return n_steps

    def check_batch_size(self, batch_size: int) -> None:
        if self.internal_batch_size is not None and self.internal_batch_size < batch_size:
            raise ValueError(
                f"{self.type}: internal_batch_size={self.internal_batch_size} is smaller than batch_size={batch_size}; "
                f"Captum needs at least one row per instance. Raise internal_batch_size or lower batch_size."
            )


def embedding_layer(model: torch.nn.Module, which: Literal["embeddings", "word_embeddings"]) -> torch.nn.Module:
    """The module LIG attributes to, for any Hugging Face sequence classifier (`embeddings`: the base model's
    embeddings block where it has one, else the word embeddings)."""
    if which == "word_embeddings":
        return model.get_input_embeddings()
    block = getattr(getattr(model, "base_model", None), "embeddings", None)
    if not isinstance(block, torch.nn.Module):
        raise ConfigError(
            f"layer='embeddings' needs a model with an embedding block at model.base_model.embeddings; "
            f"{type(model).__name__} has none. Use layer='word_embeddings'."
        )
    return block


@EXPLAINERS.register("lig", LIGConfig)
class LayerIntegratedGradientsExplainer(CaptumExplainer):
    """Layer Integrated Gradients (Sundararajan et al., 2017) on the embedding layer, via Captum.

    Specials: the baseline keeps [CLS], [SEP] and padding and replaces every other token with the
    baseline token, so [CLS]/[SEP] get exactly 0 and the attributions of the real tokens sum to
    f(x)_target - f(baseline)_target up to the integration error (completeness).

    Cost per instance: Captum runs n_steps forward + n_steps backward passes along the path plus two
    forward passes to read the layer at the input and at the baseline (two more with return_delta).
    Forward passes are counted as they run, so chunking by internal_batch_size changes nothing.
    """

    needs_gradients = True
    config: LIGConfig

    def __init__(self, config: LIGConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]):
        super().__init__(config, model, tokenizer, upstream)
        self.layer = embedding_layer(model, config.layer)
        self.lig = LayerIntegratedGradients(self._forward, self.layer)
        if config.method == "stratified":
            self.lig.ig = StratifiedIG(self._forward, multiply_by_inputs=True)

    def _forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
        # input_ids [N, T] (N = B, or a chunk of the B * n_steps path rows) -> scores [N, C]
        return self.scores(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def explain(self, batch: Batch) -> Explanation:
        cfg = self.config
        size, width = batch.input_ids.shape
        if cfg.internal_batch_size is not None and cfg.internal_batch_size < size:
            raise ConfigError(
                f"lig: internal_batch_size={cfg.internal_batch_size} is smaller than the batch size {size}; Captum "
                f"needs at least one row per instance. Raise internal_batch_size or lower the batch size."
            )
        self.check_autograd()
        chunk = cfg.internal_batch_size or rows_per_forward(
            gradient_max_tokens(self.model, self.budget("max_tokens_per_forward")), width
        )
        scores = torch.zeros(size, width, device=batch.input_ids.device)
        forwards, deltas = [0] * size, torch.zeros(size, device=batch.input_ids.device)
        for index in instance_groups(size, 1, width, None if chunk is None else chunk * width):
            part = batch.subset(index)
            self.rows_forwarded = 0
            if isinstance(self.lig.ig, StratifiedIG):
                with seeded(cfg.seed, part):
                    self.lig.ig.draw(cfg.n_steps)
            with torch.enable_grad():
                result = self.lig.attribute(
                    inputs=part.input_ids,
                    baselines=self.baseline_ids(part),
                    target=part.targets.tolist(),
                    additional_forward_args=(part.attention_mask, part.token_type_ids),
                    n_steps=cfg.n_steps,
                    method="gausslegendre" if cfg.method == "stratified" else cfg.method,
                    internal_batch_size=None if chunk is None else max(chunk, len(index)),
                    return_convergence_delta=cfg.return_delta,
                )
            attributions, delta = result if cfg.return_delta else (result, None)
            # attributions [G, T, H] -> scores [G, T]
            scores[index] = reduce_hidden(attributions.detach(), cfg.reduce).to(scores.dtype)
            for i in index.tolist():
                forwards[i] = self.rows_forwarded // len(index)
            if delta is not None:
                deltas[index] = delta.detach().reshape(len(index)).to(deltas.dtype)
        extras = {"convergence_delta": deltas} if cfg.return_delta else {}
        return Explanation(
            attributions=zero_padding(scores, batch.attention_mask),
            forward_passes=forwards,
            backward_passes=[cfg.n_steps] * size,
            extras=extras,
        )
