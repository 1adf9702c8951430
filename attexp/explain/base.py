"""The one interface every explainer implements, and the small pieces explainers share.

An explainer turns a padded batch of token ids into one score per token for each instance (for the target
class the caller chose), plus optional extra maps and what it cost. Keeping this to one verb, `explain`,
lets the explain stage, the tests and the evaluation metrics treat gradient, perturbation, attention,
bottleneck and learned methods alike; the batching engine (`attexp.explain.batching`) does the
tokenising, padding, prediction and record writing around it.

Contract every explainer keeps (the table-driven tests in tests/test_explainers.py check it):

- Padding never receives attribution: `Explanation.attributions` is exactly 0 where `attention_mask == 0`.
- Special tokens ([CLS], [SEP]) are scored as the method naturally scores them, and each explainer's
  docstring says how (e.g. Integrated Gradients keeps them in its baseline, so they get exactly 0).
- Passes are counted per instance and honestly: the model forward and backward passes the method really
  spent on that instance, measured where a library runs them for us.
- No hook is left on any module of the model after `explain` returns (or raises).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from attexp.config.schema import ComponentConfig
from attexp.errors import ConfigError
from attexp.models.inputs import Batch

Reduction = Literal["sum", "l2", "mean"]
"""How per-hidden-unit attributions [B, T, H] become token scores [B, T]: `sum` (signed; keeps
completeness for Integrated Gradients), `l2` (unsigned magnitude), `mean` (signed, scale-free in H)."""


@dataclass
class Explanation:
    """What an explainer returns for a batch.

    attributions [B, T] float, exactly 0 at padding; forward_passes / backward_passes: one count per instance
    (model passes spent on it, the prediction forward of the engine not included); extras: optional named
    maps, e.g. `convergence_delta` [B] or per-layer token-to-token matrices [B, L, T, T].
    """

    attributions: Tensor
    forward_passes: list[int]
    backward_passes: list[int]
    extras: dict[str, Tensor] = field(default_factory=dict)


class ExplainerConfig(ComponentConfig):
    """Base of every explainer config; a concrete one sets `type: Literal["name"] = "name"`.

    Checks of one config are pydantic validators on it; `check_batch_size` is the check that needs the explain
    job's batch size too (the job config calls it), so that every config error is found before anything runs.
    """

    def check_batch_size(self, batch_size: int) -> None:
        """Raise ValueError if this explainer cannot explain batches of `batch_size` instances (default: any)."""


class Explainer(abc.ABC):
    """Base class of all explainers: construct once with `Cls(config, model, tokenizer, upstream)`, then
    call `explain(batch)` for each batch.

    `model` is the classifier being explained, in eval mode and on its device; `tokenizer` is its tokenizer
    (for special-token ids); `upstream` maps job names to their artifact folders, for explainers that load
    something (e.g. a distilled empirical explainer).

    Capability flags (class attributes) tell the engine and the tests what to expect:
    `needs_gradients` (the engine runs `explain` with autograd on, otherwise under inference mode),
    `needs_attentions` (the explainer switches the model to eager attention itself), `deterministic`
    (same input, same output, whatever the batch it sits in; stochastic methods seed from torch's RNG),
    `architectures` (the `model_type`s it supports, None for any classifier; the config loader checks it against
    the model's config.json before any job runs), `mixed_precision` (the engine runs `explain` under the job's
    `precision` autocast; False, the default, keeps it in float32 whatever the job's precision: gradient methods).
    `predicts` (instance attribute): the explainer gives the prediction with the explanation from one forward of
    the classifier, `predict_and_explain(input_ids, attention_mask, token_type_ids, targets) -> (logits [B, C],
    Explanation)`, and the engine uses that forward instead of its own prediction forward (e.g. a `shared`
    empirical explainer); `targets` is the engine's target policy as a function of the logits ([B, C] -> [B]).
    """

    architectures: ClassVar[frozenset[str] | None] = None
    architecture_note: ClassVar[str] = ""  # why the architectures left out are refused
    mixed_precision: ClassVar[bool] = False  # True: `explain` runs under the job's precision (autocast)
    needs_gradients: ClassVar[bool] = False
    needs_attentions: ClassVar[bool] = False
    deterministic: ClassVar[bool] = True
    registered_name: ClassVar[str]
    predicts: bool = False

    def __init__(self, config: ExplainerConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]):
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        self.upstream = upstream
        self.max_tokens_per_pass: int | None = None  # the job's memory budget (set by the engine), see `budget`

    def budget(self, field: str) -> int | None:
        """The memory budget of this explainer's passes, in padded token positions (rows x width) per pass: its own
        config's `field` where the config sets it, else the job's `max_tokens_per_pass`, else the field's default.
        One budget per job thus sizes every family: the gradient methods' chunks, the perturbation batches,
        AttAttr's rows per pass and IBA's instances x noise samples per pass."""
        if field in self.config.model_fields_set or self.max_tokens_per_pass is None:
            return getattr(self.config, field)
        return self.max_tokens_per_pass

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abc.abstractmethod
    def explain(self, batch: Batch) -> Explanation:
        """Scores [B, T] for `batch.targets`, exactly 0 at padding, with per-instance pass counts."""

    def upstream_dir(self, job: str, field_name: str) -> Path:
        """The artifact folder of upstream job `job` (named by config field `field_name`)."""
        try:
            return Path(self.upstream[job])
        except KeyError:
            given = ", ".join(sorted(self.upstream)) or "none"
            raise ConfigError(
                f"explainer {self.config.type!r}: {field_name}={job!r} names an upstream job whose artifact was not "
                f"given (upstream artifacts given: {given}). Run job {job!r} first or fix {field_name}."
            ) from None


def reduce_hidden(attributions: Tensor, how: Reduction) -> Tensor:
    """Per-hidden attributions [B, T, H] -> token scores [B, T]."""
    if how == "sum":
        return attributions.sum(dim=-1)
    if how == "l2":
        return attributions.norm(p=2, dim=-1)
    if how == "mean":
        return attributions.mean(dim=-1)
    raise ValueError(f"unknown reduction {how!r}; expected one of 'sum', 'l2', 'mean'")


def zero_padding(scores: Tensor, attention_mask: Tensor) -> Tensor:
    """`scores` [B, T] with padding positions set to exactly 0 (not merely small)."""
    return torch.where(attention_mask.bool(), scores, torch.zeros((), dtype=scores.dtype, device=scores.device))
