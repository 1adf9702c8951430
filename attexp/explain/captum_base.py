"""What every Captum explainer shares (gradient and perturbation families): the config fields (which output is
explained, the memory budget), the baseline token and the reference ids built from it, the counted forward, the
grouping of a batch's instances under the memory budget, and the seeded random stream of stochastic methods.

Baselines (what "absent" means): `pad`, `mask`, `unk` put that token at every real token; structural specials
([CLS], [SEP]) and padding keep their own ids, so methods that multiply by (input - baseline) give them exactly 0.
Passes are counted honestly: every row that goes through the model is counted by `scores`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from attexp.config.schema import NeutralDefault
from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import Explainer, ExplainerConfig
from attexp.explain.batching import rows_per_forward
from attexp.models.encoder import classifier_logits
from attexp.models.inputs import Batch, structural_positions

Output = Literal["logits", "probabilities"]
TokenBaseline = Literal["pad", "mask", "unk"]


class CaptumConfig(ExplainerConfig):
    """Fields every Captum explainer has.

    output: explain the logit (default) or the softmax probability of the target class.
    max_tokens_per_forward: memory budget, in padded token positions (rows x width) per model call. None (the
    default for gradient methods) sizes it from the model and the sequence length (`gradient_max_tokens`: about
    4 GiB of activations per forward and backward), so short texts go into one pass and long ones (a ModernBERT
    at 4,096 tokens) are cut into as few rows per pass as fit, down to one.
    mixed_precision: run under the explain job's `precision` (bf16/fp16 autocast) instead of float32 (the
    default: attributions sum many small gradient terms). Measured against float32 on the MiniLM fine-tuned on RT
    (`benchmarks/gradient_precision.py`, CPU bf16 autocast, 32 test sentences; gradient_shap 8), as mean per-instance
    Spearman / mean |difference| over mean |score| / share of instances whose top token changes: lig (20 steps)
    0.9996 / 0.7% / 3.1%, saliency 0.9997 / 0.5% / 0%, input_x_gradient 0.9985 / 1.7% / 3.1%, deeplift
    0.9989 / 1.7% / 6.2%, gradient_shap (10 samples) 0.9979 / 0.9% / 0%. On a GPU, rerun the script there.
    """

    output: Output = "logits"
    max_tokens_per_forward: int | None = Field(None, ge=1)
    mixed_precision: Annotated[bool, NeutralDefault()] = False


GRADIENT_MEMORY_BYTES = 4 << 30
"""The activation memory one forward and backward of a gradient explainer may take when its config sets no budget."""

ACTIVATION_BYTES = 128
"""Peak activation memory of one forward and backward in float32, in bytes per token position, hidden unit and
layer: measured 104-125 on CPU for ModernBERT (hidden 256-512, 4-8 layers, 1,024-2,048 tokens; it grows slowly
with the length); benchmarks/long_inputs.py measures it for the model it runs."""


def gradient_max_tokens(model: torch.nn.Module, configured: int | None) -> int | None:
    """Token positions per forward of a gradient explainer: `configured` where set, else what keeps one forward and
    backward near `GRADIENT_MEMORY_BYTES` for this model (hidden size x layers x `ACTIVATION_BYTES` per position;
    e.g. 14,563 positions for MiniLM, 1,985 for ModernBERT-base: one row of 4,096 tokens per pass). A model without
    a transformers config (no sizes to go by) gets no budget: None."""
    config = getattr(model, "config", None)
    if configured is not None or config is None:
        return configured
    hidden = int(getattr(config, "hidden_size", None) or getattr(config, "dim", None) or 768)
    layers = int(getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers", None) or 12)
    return max(1, GRADIENT_MEMORY_BYTES // (ACTIVATION_BYTES * hidden * layers))


def instance_groups(size: int, rows_each: int, width: int, max_tokens: int | None) -> list[Tensor]:
    """Split a batch of `size` instances into groups whose `rows_each` rows per instance fit the budget."""
    cap = rows_per_forward(max_tokens, width)
    per_group = size if cap is None else max(1, min(size, cap // max(rows_each, 1)))
    return list(torch.arange(size).split(per_group))


@contextmanager
def seeded(seed: int, batch: Batch) -> Iterator[None]:
    """Run a stochastic Captum method on a random stream fixed by `seed` and the batch's contents.

    Torch's and numpy's global generators (Captum draws from both) are seeded from a hash of (`seed`, token ids,
    targets) and restored afterwards, so a batch gets the same samples whatever ran before it: a rerun, or a
    resumed job (which redoes the same length buckets), writes identical records, and the job's own seed
    stream is left untouched.
    """
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(seed).encode())
    digest.update(batch.input_ids.detach().cpu().numpy().tobytes())
    digest.update(batch.targets.detach().cpu().numpy().tobytes())
    value = int.from_bytes(digest.digest(), "little") & (2**63 - 1)
    devices = [batch.input_ids.device] if batch.input_ids.device.type == "cuda" else []
    state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(value)
        np.random.seed(value % 2**32)
        try:
            yield
        finally:
            np.random.set_state(state)


class CaptumExplainer(Explainer):
    """Base of the Captum explainers: the baseline token, the counted forward and the output transform."""

    config: CaptumConfig

    def __init__(self, config: CaptumConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]):
        super().__init__(config, model, tokenizer, upstream)
        self.mixed_precision = config.mixed_precision  # opt in to the job's precision
        self.rows_forwarded = 0  # rows run through the model since the last reset
        baseline = getattr(config, "baseline", None)
        self.baseline_id: int | None = None
        if baseline is not None and baseline != "zero":
            name = f"{baseline}_token_id"
            self.baseline_id = getattr(tokenizer, name, None)
            if self.baseline_id is None:
                raise ConfigError(
                    f"{config.type}: baseline={baseline!r} needs the tokenizer's {name}, but "
                    f"{type(tokenizer).__name__} has none. Choose another baseline."
                )

    def baseline_ids(self, batch: Batch) -> Tensor:
        """Reference ids [B, T]: the baseline token at every real non-special position, the input elsewhere."""
        if self.baseline_id is None:
            raise AttexpError(f"{self.config.type}: the 'zero' baseline has no token ids.")
        keep = structural_positions(batch.input_ids, batch.attention_mask, self.tokenizer)
        return torch.where(keep, batch.input_ids, torch.full_like(batch.input_ids, self.baseline_id))

    def scores(self, **model_inputs: Tensor | None) -> Tensor:
        """Model scores [N, C] (logits or probabilities) for N rows, counting the rows."""
        first = next(v for v in model_inputs.values() if v is not None)
        self.rows_forwarded += int(first.shape[0])
        logits = classifier_logits(self.model, **{k: v for k, v in model_inputs.items() if v is not None})
        return logits.softmax(dim=-1) if self.config.output == "probabilities" else logits

    def check_autograd(self) -> None:
        if torch.is_inference_mode_enabled():
            raise AttexpError(
                f"{self.config.type} needs autograd, but explain() was called under torch.inference_mode()."
            )
