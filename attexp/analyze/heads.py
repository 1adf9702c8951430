"""Attention-head importance and head pruning without `head_mask` (Hao, Dong, Wei & Xu 2021, "Self-Attention
Attribution: Interpreting Information Interactions Inside Transformer", AAAI, Sec. 4.1; code YRdddream/attattr;
the Taylor baseline of Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?", NeurIPS).

Why this module exists: the papers prune heads with the `head_mask` argument of pytorch_pretrained_bert /
transformers 4, which transformers 5 removed (with `prune_heads`). A head's output is its slice of the input of
the layer's attention output projection (heads are concatenated, `context[..., h*d:(h+1)*d]`), so masking a head
is multiplying that slice by 0 before the projection. `head_gates` does exactly that with a forward pre-hook on
each layer's output projection (`Encoder.layers[l].output`: BERT's `attention.output.dense`, a decoder's `o_proj`,
ModernBERT's `Wo`), for every layout `Encoder` reads and any attention
implementation, and removes the hooks when its block ends (also on an exception). The gates may be per instance
and may require gradients, which gives the Taylor importance for free.

Importance of head h of layer l, over N instances with their gold labels as targets:

- `attattr` (Hao et al.): sum over instances of max_{i,j} Attr_h(A)[i, j], the largest entry of the head's
  Self-Attention Attribution map (m Riemann steps, `attexp.explain.attattr`), over real tokens only;
- `taylor` (Michel et al.; the baseline the AttAttr paper names): sum over instances of
  |sum_t <context_h(t), dL/dcontext_h(t)>| with L the cross-entropy of the gold label (the gradient of L with
  respect to a gate of 1 on the head; the absolute value is taken per instance, as their Eq. 2 writes E_x|.|),
  then L2-normalised within each layer. `taylor="official"` reproduces the AttAttr code's baseline
  (prune_head_with_taylor.py) instead: it differentiates the *sum of the logits* over the classes (no label, no
  loss: a direction that moves no class probability) and takes the absolute value per token,
  sum_t |<context_h(t), dF/dcontext_h(t)>|, before the same normalisation. The paper describes Michel et al.'s
  criterion, so that is the default.

Pruning: heads are masked in ascending order of importance (least important first; ties: lower layer, then
lower head first), at rates 0, 10, ..., 100% of all heads (k = round(rate * L * H / 100), half up; the official
code floors, which differs by one head at some rates, e.g. 22 vs 21 of 72 at 30%), plus a seeded random order;
accuracy is measured on a whole evaluation split. The paper's claim is that the attribution order keeps accuracy
longest. Masking a head here zeroes its output before the output projection, as the official code's
`att_head_mask` on the attention probabilities does (the projection's bias stays).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from attexp import distributed as dist
from attexp.errors import AttexpError
from attexp.explain.attattr import AttentionAttribution
from attexp.models.encoder import Encoder
from attexp.models.inputs import Batch, batch_pad_id, length_sorted_batches, pad_features, tokenize_rows

ORDERS = ("attattr", "taylor", "random")
TAYLOR_DEFINITIONS = ("michel", "official")


@contextmanager
def head_gates(encoder: Encoder, gates: Tensor) -> Iterator[None]:
    """Scale each head's output by a gate inside the block: gates [L, heads] (all instances), [B, L, heads]
    (per instance) or [B, T, L, heads] (per instance and token).

    A forward pre-hook on every layer's attention output projection multiplies the head slices of its input
    [B, T, heads * d] by the gates (0 masks a head, 1 keeps it); gradients flow into `gates` when it requires
    them. The hooks are removed when the block ends, whatever happens inside it.
    """
    layers, heads, size = encoder.num_layers, encoder.num_heads, encoder.head_size
    if gates.shape[-2:] != (layers, heads) or gates.dim() not in (2, 3, 4):
        raise AttexpError(
            f"head gates of shape {tuple(gates.shape)} do not fit a model with {layers} layers of {heads} heads; "
            f"expected [{layers}, {heads}], [B, {layers}, {heads}] or [B, T, {layers}, {heads}]."
        )
    handles = []

    def hook_for(index: int):
        def scale(module: torch.nn.Module, args: tuple) -> tuple:
            context, *rest = args  # [B, T, heads * d]
            gate = gates[..., index, :].to(context.dtype)  # [heads], [B, heads] or [B, T, heads]
            factor = gate.repeat_interleave(size, dim=-1)  # [(B, (T,)) heads * d]
            if factor.dim() >= 2 and tuple(factor.shape[:-1]) != tuple(context.shape[: factor.dim() - 1]):
                expected = [*context.shape[: factor.dim() - 1], layers, heads]
                raise AttexpError(
                    f"head gates of shape {tuple(gates.shape)}, but the model ran a batch of shape "
                    f"{tuple(context.shape[:2])}; pass gates of shape {expected}."
                )
            if factor.dim() == 2:
                factor = factor[:, None, :]  # [B, 1, heads * d]
            return (context * factor, *rest)

        return scale

    try:
        for index, layer in enumerate(encoder.layers):
            handles.append(layer.output.register_forward_pre_hook(hook_for(index)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def head_mask(encoder: Encoder, masked: Tensor) -> Iterator[None]:
    """Mask the heads where `masked` [L, heads] (bool) is True inside the block (see `head_gates`)."""
    with head_gates(encoder, (~masked.bool()).float().to(encoder.layers[0].output.weight.device)):
        yield


# ------------------------------------------------------------------------------------------- importance


def attattr_head_maxima(explainer: AttentionAttribution, batch: Batch) -> Tensor:
    """Per instance, each head's largest attribution-map entry over real tokens: [B, L, heads].

    `explainer` must attribute every layer and return its maps (AttAttrConfig(return_maps=True)); the
    attribution target is `batch.targets`.
    """
    if not explainer.config.return_maps or len(explainer.layers) != explainer.encoder.num_layers:
        raise AttexpError(
            "attattr_head_maxima needs an attattr explainer with return_maps=True over all layers (layers=None)."
        )
    with torch.enable_grad():
        maps = explainer.explain(batch).extras["maps"].detach()  # [B, L, heads, T, T]
    real = batch.attention_mask.bool()  # [B, T]
    pairs = real[:, None, None, :, None] & real[:, None, None, None, :]  # [B, 1, 1, T, T]
    return maps.masked_fill(~pairs, float("-inf")).amax(dim=(-2, -1))  # [B, L, heads]


def taylor_head_scores(encoder: Encoder, batch: Batch, definition: str = "michel") -> Tensor:
    """Per instance, each head's Taylor importance at gate 1: [B, L, heads].

    `definition="michel"` (Michel et al. 2019): |dL/dgate_h| = |sum_t <context_h(t), dL/dcontext_h(t)>| with L the
    cross-entropy of `batch.targets`. `"official"` (the AttAttr code's baseline): sum_t |<context_h(t),
    dF/dcontext_h(t)>| with F the sum of the logits over the classes, the absolute value taken per token. Each
    instance's objective reaches only its own gates, so one backward pass gives all instances' scores.
    """
    if definition not in TAYLOR_DEFINITIONS:
        raise AttexpError(f"unknown Taylor definition {definition!r}; choose one of {TAYLOR_DEFINITIONS}.")
    per_token = definition == "official"
    shape = (len(batch), *((batch.input_ids.shape[1],) if per_token else ()), encoder.num_layers, encoder.num_heads)
    gates = torch.ones(shape, device=batch.input_ids.device, requires_grad=True)
    with torch.enable_grad(), head_gates(encoder, gates):
        logits = encoder.model(**batch.model_inputs()).logits.float()  # [B, C]
        if per_token:
            objective = logits.sum()
        else:
            objective = F.cross_entropy(logits, batch.targets, reduction="sum")
        (gradient,) = torch.autograd.grad(objective, gates)
    if not per_token:
        return gradient.abs()
    real = batch.attention_mask.to(gradient.dtype)[:, :, None, None]  # [B, T, 1, 1]: padding rows add nothing
    return (gradient.abs() * real).sum(dim=1)


def normalise_per_layer(importance: Tensor) -> Tensor:
    """Divide each layer's head scores [L, heads] by their L2 norm (Michel et al.'s normalisation)."""
    return importance / importance.norm(p=2, dim=-1, keepdim=True).clamp_min(1e-20)


def pruning_order(importance: Tensor) -> list[tuple[int, int]]:
    """(layer, head) pairs in ascending importance [L, heads] (ties: lower layer, then lower head, first)."""
    flat = importance.flatten().double().cpu()
    order = torch.sort(flat, stable=True).indices.tolist()
    heads = importance.shape[-1]
    return [(i // heads, i % heads) for i in order]


def random_order(layers: int, heads: int, seed: int) -> list[tuple[int, int]]:
    """All (layer, head) pairs in a seeded random order."""
    permutation = np.random.default_rng(seed).permutation(layers * heads)
    return [(int(i) // heads, int(i) % heads) for i in permutation]


def pruned_count(rate: float, total: int) -> int:
    """Heads masked at `rate` percent of `total` (rounded half up)."""
    return min(total, int(np.floor(rate * total / 100 + 0.5)))


def mask_of(order: Sequence[tuple[int, int]], count: int, layers: int, heads: int) -> Tensor:
    """bool [L, heads]: True for the first `count` heads of `order`."""
    masked = torch.zeros(layers, heads, dtype=torch.bool)
    for layer, head in order[:count]:
        masked[layer, head] = True
    return masked


# ------------------------------------------------------------------------------------------- evaluation


class Batches:
    """Dataset rows tokenised once and cut into length-sorted padded batches (longest first), on `device`.

    Each batch's targets are the rows' gold labels. `labels` [N] follow the batches' order (`order[k]` is the
    row of the k-th instance), so accuracy is a comparison of concatenated predictions with `labels`.
    `features` (token ids per row, e.g. with a trigger inserted) replaces tokenising the rows' text. Batches pad
    with `model`'s pad id (`batch_pad_id`: a decoder's head skips exactly its config's pad id).
    """

    def __init__(
        self,
        rows: Sequence[dict],
        model: Any,
        tokenizer: Any,
        batch_size: int,
        max_length: int,
        device: torch.device,
        features: list[dict] | None = None,
    ) -> None:
        features = features if features is not None else tokenize_rows(tokenizer, rows, max_length)
        chunks = length_sorted_batches([len(f["input_ids"]) for f in features], batch_size)
        pad = batch_pad_id(model, tokenizer)
        self.order = [i for chosen in chunks for i in chosen]
        self.batches: list[Batch] = []
        self.rows: list[list[dict]] = []
        for chosen in chunks:
            ids, mask, types = pad_features([features[i] for i in chosen], pad)
            labels = torch.tensor([int(rows[i]["label"]) for i in chosen], dtype=torch.long)
            self.batches.append(Batch(ids, mask, types, labels).to(device))
            self.rows.append([rows[i] for i in chosen])
        self.labels = torch.cat([b.targets.cpu() for b in self.batches]) if self.batches else torch.zeros(0)

    def __len__(self) -> int:
        return len(self.order)


def predictions(model: torch.nn.Module, batches: Batches) -> Tensor:
    """The model's predicted classes [N] for the instances of `batches`, in their order."""
    out = []
    with torch.inference_mode():
        for batch in batches.batches:
            out.append(model(**batch.model_inputs()).logits.argmax(dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(
    model: torch.nn.Module,
    batches: Batches,
    encoder: Encoder | None = None,
    masked: Tensor | None = None,
    over_ranks: bool = False,
):
    """Accuracy on `batches` against their labels, with the heads in `masked` [L, heads] masked (if given).
    `over_ranks`: `batches` is this rank's share of the instances; the counts are summed over the ranks (every
    rank calls this with the same mask), so every rank gets the accuracy on all the instances."""
    if masked is None or not bool(masked.any()):
        predicted = predictions(model, batches)
    else:
        with head_mask(encoder or Encoder(model), masked):
            predicted = predictions(model, batches)
    counts = torch.tensor([float((predicted == batches.labels).sum()), float(len(batches))], dtype=torch.float64)
    if over_ranks:
        counts = dist.sum_over_ranks(counts)
    return float(counts[0] / counts[1]) if counts[1] > 0 else float("nan")


def pruning_curves(
    model: torch.nn.Module,
    batches: Batches,
    orders: dict[str, list[tuple[int, int]]],
    rates: Sequence[float],
    progress: bool = False,
    over_ranks: bool = False,
) -> dict[str, list[float]]:
    """Accuracy at each pruning rate for each order: {order name: [accuracy per rate]}.

    Masks shared by several orders (0% and 100% always are) are evaluated once; `progress` shows a bar.
    `over_ranks`: `batches` is this rank's share, the accuracies are of all ranks' instances (`accuracy`).
    """
    encoder = Encoder(model)
    layers, heads = encoder.num_layers, encoder.num_heads
    seen: dict[bytes, float] = {}
    curves: dict[str, list[float]] = {}
    bar = tqdm(total=len(orders) * len(rates), desc="pruning", unit="mask", disable=not progress)
    for name, order in orders.items():
        values = []
        for rate in rates:
            masked = mask_of(order, pruned_count(rate, layers * heads), layers, heads)
            key = masked.numpy().tobytes()
            if key not in seen:
                seen[key] = accuracy(model, batches, encoder, masked, over_ranks)
            values.append(seen[key])
            bar.update(1)
        curves[name] = values
    bar.close()
    return curves
