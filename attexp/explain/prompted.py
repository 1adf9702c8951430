"""Explainers on a prompted classifier (`attexp.models.prompted`): which model each one runs on.

Gradient, perturbation, baseline and learned explainers take the prompted classifier as it is: it takes the text's
tokens and inserts the template itself, so they attribute and perturb the text only. The explainers that read inside
the model (`architectures` set: raw attention, rollout, ALTI, AttAttr, IBA) follow the model's layers, attention and
head, which a prompted classifier has over the whole prompt: they run on `PromptedClassifier.classifier` (the LM with
the label words' rows of its head as a classification head, same weights) over the whole prompt, and their token
scores (and the positional dimensions of their extras: rollout and contribution matrices, AttAttr's maps, IBA's
capacities) are read back at the text's positions. Texts such an explainer feeds the model itself (IBA's prior data)
get the template too (`prompt`). The template's tokens thus take part in the computation (they
are in the sequence the LM reads) and stay out of the records, as with every other explainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attexp.explain.base import Explainer, ExplainerConfig, Explanation
from attexp.models.inputs import Batch
from attexp.models.prompted import PromptedClassifier


def build_explainer(
    cls: type[Explainer], config: ExplainerConfig, model: Any, tokenizer: Any, upstream: Mapping[str, Path]
) -> Explainer:
    """`cls(config, model, tokenizer, upstream)`, or, for an inside-the-model explainer on a prompted classifier,
    the same explainer over the whole prompt read back at the text (`OverPrompt`). The one place an explainer is
    built for a classifier (the explain stage, `attexp.explain`)."""
    if isinstance(model, PromptedClassifier) and cls.architectures is not None:
        return OverPrompt(cls(config, model.classifier, tokenizer, upstream), model)
    return cls(config, model, tokenizer, upstream)


class OverPrompt(Explainer):
    """An inside-the-model explainer run over a prompted classifier's whole prompt, its scores read at the text."""

    def __init__(self, inner: Explainer, model: PromptedClassifier) -> None:
        super().__init__(inner.config, model, inner.tokenizer, inner.upstream)
        self.inner = inner
        self.registered_name = getattr(inner, "registered_name", type(inner).__name__)
        self.needs_gradients = inner.needs_gradients
        self.needs_attentions = inner.needs_attentions
        self.deterministic = inner.deterministic
        self.mixed_precision = inner.mixed_precision
        self.predicts = False
        if hasattr(inner, "prompt"):  # texts it feeds the model itself (IBA's prior data) get the template too
            inner.prompt = self.whole_prompt

    def whole_prompt(self, batch: Batch) -> Batch:
        """The text batch `batch` as the whole prompt the LM reads (token ids)."""
        model: PromptedClassifier = self.model  # type: ignore[assignment]
        return model.prompt_batch(batch, int(model.config.pad_token_id))[0]

    @property
    def max_tokens_per_pass(self) -> int | None:
        return self.inner.max_tokens_per_pass

    @max_tokens_per_pass.setter
    def max_tokens_per_pass(self, value: int | None) -> None:
        if "inner" in self.__dict__:
            self.inner.max_tokens_per_pass = value

    def explain(self, batch: Batch) -> Explanation:
        model: PromptedClassifier = self.model  # type: ignore[assignment]
        whole, where = model.prompt_batch(batch, int(model.config.pad_token_id))
        result = self.inner.explain(whole)
        width = whole.input_ids.shape[1]
        extras = {name: at_text(value, where, width) for name, value in result.extras.items()}
        return Explanation(
            attributions=at_text(result.attributions, where, width),
            forward_passes=result.forward_passes,
            backward_passes=result.backward_passes,
            extras=extras,
        )


def at_text(values: Tensor, where: Tensor, width: int) -> Tensor:
    """`values` [B, ..., W, W] over the whole prompt -> [B, ..., T, T] at the text's positions `where` [B, T] (-1:
    padding and trailing specials, which get 0). Every trailing dimension of size W (the prompt's width) is read
    back (at most two: token scores [B, W], token-to-token matrices [..., W, W]); a tensor with none ([B], e.g. a
    convergence delta) is returned as it is."""
    dims = 0
    while dims < min(2, values.dim() - 1) and values.shape[values.dim() - 1 - dims] == width:
        dims += 1
    if dims == 0:
        return values
    valid = where >= 0  # [B, T]
    index = where.clamp(min=0)
    out = values
    for k in range(dims):
        dim = values.dim() - 1 - k
        shape = [index.shape[0]] + [1] * (dim - 1) + [index.shape[1]] + [1] * (values.dim() - 1 - dim)
        gather_index = index.view(shape).expand(*out.shape[:dim], index.shape[1], *out.shape[dim + 1 :])
        keep = valid.view(shape)
        out = torch.where(keep, out.gather(dim, gather_index), torch.zeros((), dtype=out.dtype, device=out.device))
    return out
