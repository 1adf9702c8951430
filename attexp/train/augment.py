"""Fine-tuning with random masking (`mask_augment`), so that deletion metrics measure the explanation and not the
distribution shift (F-Fidelity: Zheng et al., 2025, "F-Fidelity: A Robust Framework for Faithfulness Evaluation of
Explainable AI", ICLR; code AslanDing/Finetune-Fidelity).

Deleting or masking the tokens an explanation ranks first puts the input out of the distribution the classifier was
trained on; a deletion curve then partly measures how the classifier copes with masked inputs. F-Fidelity fine-tunes
a copy of the classifier on inputs with random parts removed, then measures deletion on the copy while the
explanations still come from the original model. Here: a train job continues the explained classifier (`model:
{type: 'trained', job: <its train job>}`) with `mask_augment: {rates, token}`: in every training batch, each text
gets one rate drawn uniformly from `rates` and that fraction of its content tokens (ceil, at least one; never the
structural specials) replaced by `token`, chosen at random. An evaluate job whose `model` is that train job then runs
its deletion metrics on the copy (`configs/pipelines/rotten_tomatoes.ffidelity.jsonnet`).

The paper's settings (its released code is for images): the fine-tuning removes a random 10% of the input
(beta = 0.1, `rates: [0.1]`, the default here) on every training example; at evaluation it removes, from the top-s
(or bottom-s) fraction of the explanation, each feature with probability alpha = 0.5 but at most beta of the input,
over N = 50 samples, s from 5% to 100%. attexp's rule for text: the rates of the evaluate job's deletion bins (e.g.
ERASER's [0.01, 0.05, 0.1, 0.2, 0.5]) cover what the copy will be shown, and the deletion metrics themselves are the
evaluate job's (ERASER, normalised AOPC, ...), run on the copy. Validation (model selection) is on unmasked texts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from attexp.config.schema import StrictModel
from attexp.errors import AttexpError
from attexp.models.inputs import structural_ids
from attexp.train.batches import model_inputs


class MaskAugment(StrictModel):
    """rates: fractions of the content tokens masked, one drawn per text per step (default [0.1], F-Fidelity's beta);
    token: what replaces them: the tokenizer's `mask` (default), `pad` or `unk` token."""

    rates: list[float] = Field(default_factory=lambda: [0.1], min_length=1)
    token: Literal["mask", "pad", "unk"] = "mask"

    @field_validator("rates")
    @classmethod
    def _fractions(cls, rates: list[float]) -> list[float]:
        if any(not 0 < r <= 1 for r in rates):
            raise ValueError(f"mask_augment.rates are fractions in (0, 1], got {rates}")
        return rates


def replacement_id(tokenizer: Any, token: Literal["mask", "pad", "unk"]) -> int:
    """The id that replaces masked tokens; an error naming the fix when the tokenizer has none."""
    value = getattr(tokenizer, f"{token}_token_id", None)
    if value is None:
        raise AttexpError(
            f"mask_augment.token={token!r}: {type(tokenizer).__name__} has no {token} token; use another token "
            f"(decoder vocabularies have no [MASK]: 'pad' or 'unk')"
        )
    return int(value)


def mask_randomly(
    input_ids: Tensor, attention_mask: Tensor, specials: set[int], rates: list[float], token: int
) -> Tensor:
    """`input_ids` [B, T] with, per row, ceil(rate * n) of its n content tokens replaced by `token` (rate drawn from
    `rates`; structural specials and padding never), from torch's random generator."""
    content = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(sorted(specials), device=input_ids.device))
    counts = content.sum(dim=1)
    rate = torch.tensor(rates, dtype=torch.float64, device=input_ids.device)[
        torch.randint(len(rates), (len(input_ids),))
    ]
    k = torch.ceil(rate * counts - 1e-9).clamp(max=counts).long()  # at least one where a row has content
    noise = torch.rand(input_ids.shape, device=input_ids.device).masked_fill(~content, math.inf)
    rank = noise.argsort(dim=1).argsort(dim=1)  # each content position's place in a random order
    chosen = rank < k[:, None]
    return torch.where(chosen & content, torch.full_like(input_ids, token), input_ids)


def masked_loss(augment: MaskAugment, tokenizer: Any) -> Callable[[torch.nn.Module, Mapping[str, Tensor]], Tensor]:
    """The train step's loss on randomly masked copies of the batch (see the module docstring)."""
    token = replacement_id(tokenizer, augment.token)
    specials = structural_ids(tokenizer)

    def loss(model: torch.nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        inputs = model_inputs(batch)
        inputs["input_ids"] = mask_randomly(
            inputs["input_ids"], inputs["attention_mask"], specials, augment.rates, token
        )
        return model(**inputs, labels=batch["labels"]).loss

    return loss
