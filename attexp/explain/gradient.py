"""Gradient-based explainers, computed with Captum.

Layer Integrated Gradients attributes to the embedding layer rather than to the token ids: ids are
discrete, so the path from baseline to input runs through embedding space (Sundararajan et al., 2017,
"Axiomatic Attribution for Deep Networks", ICML). The whole batch goes into one Captum `attribute` call,
which stacks the integration steps of every instance into one large forward/backward pass (or chunks of
`internal_batch_size` rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from captum.attr import LayerIntegratedGradients
from torch import Tensor

from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import (
    Batch,
    Explainer,
    ExplainerConfig,
    Explanation,
    Reduction,
    reduce_hidden,
    structural_positions,
    zero_padding,
)
from attexp.registry import EXPLAINERS


class LIGConfig(ExplainerConfig):
    """Layer Integrated Gradients on the embedding layer (Sundararajan et al., 2017).

    n_steps: integration steps; method: Captum's approximation rule (`gausslegendre` converges fastest,
    `riemann_*` are the classic sums); internal_batch_size: rows per forward/backward chunk (None: all
    B * n_steps rows at once; at least B otherwise); layer: `word_embeddings` (token embeddings only) or
    `embeddings` (the whole block: word + position + segment embeddings and LayerNorm); baseline: the token
    that replaces every real token in the reference input ([CLS]/[SEP]/padding are kept); reduce: how the
    hidden dimension becomes one score per token; output: explain the logit or the softmax probability of
    the target class; return_delta: also return Captum's convergence delta per instance
    (extras["convergence_delta"], costs 2 more forward passes).
    """

    type: Literal["lig"] = "lig"
    n_steps: int = 20
    method: Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"] = (
        "gausslegendre"
    )
    internal_batch_size: int | None = None
    layer: Literal["embeddings", "word_embeddings"] = "word_embeddings"
    baseline: Literal["pad", "mask", "unk"] = "pad"
    reduce: Reduction = "sum"
    output: Literal["logits", "probabilities"] = "logits"
    return_delta: bool = False


def embedding_layer(model: torch.nn.Module, which: Literal["embeddings", "word_embeddings"]) -> torch.nn.Module:
    """The module LIG attributes to, for any BERT-family Hugging Face model."""
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
class LayerIntegratedGradientsExplainer(Explainer):
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
        if config.n_steps < 1:
            raise ConfigError(f"lig: n_steps must be at least 1, got {config.n_steps}.")
        name = f"{config.baseline}_token_id"
        self.baseline_id = getattr(tokenizer, name, None)
        if self.baseline_id is None:
            raise ConfigError(
                f"lig: baseline={config.baseline!r} needs the tokenizer's {name}, but "
                f"{type(tokenizer).__name__} has none. Choose another baseline."
            )
        self.layer = embedding_layer(model, config.layer)
        self._rows_forwarded = 0
        self.lig = LayerIntegratedGradients(self._forward, self.layer)

    def _forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None) -> Tensor:
        # input_ids [N, T] (N = B, or a chunk of the B * n_steps path rows) -> scores [N, C]
        self._rows_forwarded += int(input_ids.shape[0])
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        logits = self.model(**kwargs).logits
        return logits.softmax(dim=-1) if self.config.output == "probabilities" else logits

    def baseline_ids(self, batch: Batch) -> Tensor:
        """Reference ids [B, T]: the baseline token at every real non-special position, the input elsewhere."""
        keep = structural_positions(batch.input_ids, batch.attention_mask, self.tokenizer)
        return torch.where(keep, batch.input_ids, torch.full_like(batch.input_ids, self.baseline_id))

    def explain(self, batch: Batch) -> Explanation:
        cfg = self.config
        size = len(batch)
        if cfg.internal_batch_size is not None and cfg.internal_batch_size < size:
            raise ConfigError(
                f"lig: internal_batch_size={cfg.internal_batch_size} is smaller than the batch size {size}; Captum "
                f"needs at least one row per instance. Raise internal_batch_size or lower the batch size."
            )
        if torch.is_inference_mode_enabled():
            raise AttexpError("lig needs autograd, but explain() was called under torch.inference_mode().")
        self._rows_forwarded = 0
        with torch.enable_grad():
            result = self.lig.attribute(
                inputs=batch.input_ids,
                baselines=self.baseline_ids(batch),
                target=batch.targets.tolist(),
                additional_forward_args=(batch.attention_mask, batch.token_type_ids),
                n_steps=cfg.n_steps,
                method=cfg.method,
                internal_batch_size=cfg.internal_batch_size,
                return_convergence_delta=cfg.return_delta,
            )
        attributions, delta = result if cfg.return_delta else (result, None)
        # attributions [B, T, H] -> scores [B, T]
        scores = zero_padding(reduce_hidden(attributions.detach(), cfg.reduce), batch.attention_mask)
        forwards = self._rows_forwarded // size
        extras = {} if delta is None else {"convergence_delta": delta.detach().reshape(size)}
        return Explanation(
            attributions=scores,
            forward_passes=[forwards] * size,
            backward_passes=[cfg.n_steps] * size,
            extras=extras,
        )
