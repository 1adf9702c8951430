"""Mixed precision, one switch for every forward attexp runs: `precision: fp32 | bf16 | fp16` (None = fp32).

`autocast(device, precision)` is torch's automatic mixed precision for that device (bf16 or fp16 matmuls,
float32 reductions and softmax where torch keeps them), a no-op for fp32. Training with fp16 also needs loss
scaling (`grad_scaler`), since small fp16 gradients underflow to zero; bf16 has float32's exponent range and needs
none. Gradient explainers (IG, LIG, ...) always run in float32: attributions are sums of many small gradient
terms, and the jobs apply precision only to prediction forwards, training, the faithfulness scorer and the
empirical explainer (explainers opt in with `Explainer.mixed_precision`). On a CPU, bf16 autocast runs the same
code paths (tests use it), usually slower than float32.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype an explainer's sums and distances are taken in for a model whose weights are `dtype`: float32 for
    bfloat16 and float16 weights (8 and 11 bits of mantissa lose the small terms of a sum), the weights' own dtype
    otherwise (float32, or float64 where a test asks for it)."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


@contextlib.contextmanager
def frozen_weights(model: torch.nn.Module) -> Iterator[None]:
    """The model's parameters without `requires_grad` for the duration, then as they were.

    An explainer differentiates the output with respect to its inputs (embeddings, attention maps, a bottleneck),
    never the weights; with the weights trainable, autograd also keeps what each weight's gradient would need (every
    linear layer's input) for the whole pass. Frozen, LIG-20 on a Qwen2.5-0.5B-sized model at 64 tokens peaks at
    5.73 GiB instead of 6.69 and runs in 11.7 s instead of 14.1 (float32, this CPU; AttAttr 5.69 against 6.75 GiB).
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def autocast(device: torch.device | str, precision: Precision | None) -> contextlib.AbstractContextManager:
    """torch.autocast for `device` in `precision` (fp32 / None: no autocast)."""
    if precision in (None, "fp32"):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=DTYPES[precision])


def grad_scaler(device: torch.device | str, precision: Precision | None) -> torch.amp.GradScaler:
    """A loss scaler, enabled for fp16 only (a disabled one passes losses and steps through unchanged)."""
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
