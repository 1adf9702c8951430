"""Generic access to the inside of transformer sequence classifiers, one layout description per architecture.

Why this module exists: raw attention, attention rollout, ALTI, Self-Attention Attribution, IBA and the analyses
all need what a plain forward pass does not hand out — each layer's input, its attention probabilities and value
vectors, the attention output projection — and some need to run only a slice of the layers or to replace one
layer's attention probabilities. The papers' official code reached into transformers 2.x-4.x model classes by
hard-coded attribute paths and `output_attentions`; in transformers 5 attention runs through
`AttentionInterface`, sdpa attention returns no probabilities, and `output_attentions=True` installs permanent
capture hooks on the model. So attexp describes the module layout of each architecture once (`LAYOUTS`, names as
in transformers 5.23) and drives the model layer by layer itself:

- `Encoder.embed` / `Encoder.run` / `Encoder.classify` reproduce `model(**inputs).logits` (tested per layout),
  and any slice of layers can run on its own (prefix caching: run the layers below once, only the rest per step);
- `Encoder.context` builds what every layer needs besides its input, once per batch: its attention mask (padding;
  causal for decoders; the sliding window of local-attention layers) and rotary position embeddings, and where the
  classification head reads (`LayerContext.read`: [CLS], the last real token, or the mean over real tokens);
- inside `with encoder.attention(handler):` every self-attention call of the model goes through one function
  registered with `transformers.AttentionInterface` (name "attexp"), which asks `handler` for the attention
  probabilities: compute them as eager attention does and record them, or substitute other ones. The model
  config's attention implementation is switched for the duration of the block and restored afterwards, so
  the explainers work whether the model was loaded with eager or sdpa attention. Grouped-query attention
  (fewer key/value heads than query heads) is expanded before the handler sees it: every handler works on one
  key and value per query head;
- `Encoder.read_last` computes the last layer's output only where the head reads it (BERT family: position 0
  alone; used in optimisation loops).

No hook is ever registered on the model, and nothing of it is modified beyond the temporary switch above.

The layouts themselves (`LAYOUTS`, one per architecture) are described in `attexp.models.layouts`; the attention
function the layers call is in `attexp.models.attention`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from transformers import AttentionInterface

from attexp.errors import AttexpError, ConfigError
from attexp.models.layouts import LAYOUTS, Reads

ATTENTION_NAME = "attexp"
"""The name attexp's attention function is registered under in `transformers.AttentionInterface`."""


def layer_index(value: int, num_layers: int, where: str) -> int:
    """A Python-style layer index (negative counts from the end) checked against the model's depth."""
    if not -num_layers <= value < num_layers:
        raise ConfigError(
            f"{where}={value} is out of range for a model with {num_layers} layers; use 0..{num_layers - 1} "
            f"(or -1 for the last layer)."
        )
    return value % num_layers


class AttentionHandler(Protocol):
    """Decides a layer's attention probabilities inside `Encoder.attention(handler)`.

    Called once per self-attention call with the layer index and the module's tensors: query and key
    [B, heads, T, d], value [B, heads, T, d] (grouped key/value heads already expanded to one per query head),
    the additive mask [B, 1, 1 or T, T] (or None) and the scaling. Returns the probabilities [B, heads, T, T] to
    use (`eager_probabilities(...)` for the model's own).
    """

    def __call__(
        self, index: int, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scaling: float
    ) -> Tensor: ...


def eager_probabilities(query: Tensor, key: Tensor, mask: Tensor | None, scaling: float) -> Tensor:
    """softmax(q k^T * scaling + mask), as transformers' eager attention computes it. q [B,h,Tq,d] -> [B,h,Tq,T]."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if mask is not None:
        scores = scores + mask
    return scores.softmax(dim=-1)


def _model_probabilities(
    index: int, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scaling: float
) -> Tensor:
    return eager_probabilities(query, key, mask, scaling)


@dataclass(frozen=True)
class _Active:
    handler: AttentionHandler
    index_of: dict[int, int]  # id(self-attention module) -> layer index


_ACTIVE: contextvars.ContextVar[_Active | None] = contextvars.ContextVar("attexp_attention", default=None)


def _attention_function(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[Tensor, Tensor]:
    """The `AttentionInterface` function: eager attention whose probabilities come from the active handler."""
    active = _ACTIVE.get()
    if active is None or id(module) not in active.index_of:
        raise AttexpError(
            f"attexp's attention function was called for a {type(module).__name__} outside an "
            f"`Encoder.attention()` block of its model; the model's config still names attention "
            f"implementation {ATTENTION_NAME!r}. Set model.config._attn_implementation back to 'eager' or 'sdpa'."
        )
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    if key.shape[1] != query.shape[1]:  # grouped-query attention: query head h reads key/value head h // groups
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    if attention_mask is not None and attention_mask.dtype == torch.bool:  # a boolean mask: True = attend
        attention_mask = torch.zeros_like(attention_mask, dtype=query.dtype).masked_fill(
            ~attention_mask, torch.finfo(query.dtype).min
        )
    probs = active.handler(active.index_of[id(module)], query, key, value, attention_mask, scaling)  # [B,h,T,T]
    probs_dropped = nn.functional.dropout(probs, p=dropout, training=module.training)
    # a handler may hand float32 probabilities to a bfloat16/float16 model (e.g. scaled by float32 alphas)
    output = torch.matmul(probs_dropped.to(value.dtype), value).transpose(1, 2).contiguous()  # [B, T, h, d]
    return output, probs


AttentionInterface.register(ATTENTION_NAME, _attention_function)


# ------------------------------------------------------------------------------------------------- a batch


@dataclass
class LayerContext:
    """What the layers of one batch need besides their input, built once by `Encoder.context`.

    masks[l]: layer l's additive attention mask, [B, 1, 1, T] (padding only) or [B, 1, T, T] (causal, or a
    sliding window); positions[l]: layer l's rotary (cos, sin), or None; read: [B, T], the weights with which
    the head reads the last layer's positions (one-hot at [CLS] or at the last real token, or uniform over the
    real tokens), zero at padding; read_index: [B], the read position where the read is one position (else None).
    """

    masks: list[Tensor]
    positions: list[tuple[Tensor, Tensor] | None]
    read: Tensor
    read_index: Tensor | None

    def pool(self, hidden: Tensor) -> Tensor:
        """[B, T, H] -> [B, H], where the head reads."""
        if self.read_index is not None:
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), self.read_index]
        return torch.einsum("bt,bth->bh", self.read.to(hidden.dtype), hidden)


def read_positions(reads: Reads, input_ids: Tensor | None, attention_mask: Tensor, pad: int | None) -> Tensor:
    """[B] positions the head reads: 0 ("first"); "last": the rightmost token whose id is not `pad`, the rule of
    transformers' decoder `*ForSequenceClassification` (right or left padding alike), or, without ids or a pad id,
    the last real token of `attention_mask`."""
    size, width = attention_mask.shape
    if reads == "first":
        return torch.zeros(size, dtype=torch.long, device=attention_mask.device)
    real = attention_mask.bool() if input_ids is None or pad is None else input_ids != pad
    index = torch.arange(width, device=attention_mask.device)
    return (index * real.long()).argmax(dim=-1)


@dataclass
class Trace:
    """What one recorded pass saw, per layer l: `inputs[l]` [B,T,H] (the layer's input hidden states),
    `probs[l]` [B,heads,T,T], `values[l]` [B,heads,T,d] (value vectors, bias included, one per query head; empty
    unless asked for); `output` [B,T,H], the last traced layer's output; `context`, the batch's `LayerContext`."""

    inputs: list[Tensor]
    probs: list[Tensor]
    values: list[Tensor]
    output: Tensor
    context: LayerContext


def classifier_logits(model: nn.Module, **inputs: Tensor) -> Tensor:
    """`model(**inputs).logits`, also right for a decoder classifier given `inputs_embeds` (e.g. by captum).

    transformers' decoder `*ForSequenceClassification` (a `score` head: Llama, Mistral, Qwen, Gemma, GPT-2, ...)
    reads the last token whose *id* is not the pad id; given embeddings it has no ids and reads the last position,
    which in a right-padded batch is padding. Here it then reads the last real token of `attention_mask`, which is
    what it reads given the ids (attexp pads on the right)."""
    embeds, mask = inputs.get("inputs_embeds"), inputs.get("attention_mask")
    if embeds is None or mask is None or not isinstance(getattr(model, "score", None), nn.Linear):
        return model(**inputs).logits
    base = getattr(model, model.base_model_prefix)
    rest = {k: v for k, v in inputs.items() if k not in ("inputs_embeds", "attention_mask", "token_type_ids")}
    hidden = base(inputs_embeds=embeds, attention_mask=mask, **rest).last_hidden_state  # [B, T, H]
    last = read_positions("last", None, mask, None)  # [B]
    return model.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """A model's stack of transformer layers: the one `nn.ModuleList` as long as `config.num_hidden_layers` (BERT's
    `encoder.layer`, DistilBERT's `transformer.layer`, ModernBERT's and the Llama-style decoders' `layers`, ...).
    The one finder of it: `Encoder` and the empirical explainer's student mode read it."""
    count = model.config.num_hidden_layers
    stacks = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) == count]
    if len(stacks) != 1:
        raise AttexpError(
            f"cannot find the layer stack of a {model.config.model_type!r} model ({len(stacks)} module lists of "
            f"{count} layers)"
        )
    return stacks[0]


def _unknown_layout(model: nn.Module) -> AttexpError:
    names = ", ".join(f"{layout.name} ({', '.join(sorted(layout.model_types))})" for layout in LAYOUTS)
    return AttexpError(
        f"{type(model).__name__} (model_type {getattr(model.config, 'model_type', '?')!r}) does not have a module "
        f"layout that the inside-the-model explainers read: {names}. Use one of those architectures, or a "
        f"gradient or perturbation explainer."
    )


class Encoder:
    """Layer-by-layer access to a sequence classifier of one of the `LAYOUTS` (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        base = getattr(model, "base_model", None)
        if isinstance(getattr(getattr(model, "config", None), "prompt", None), dict):
            raise AttexpError(
                "a prompted classifier (a causal LM read through label words) has no classification head of its own: "
                "the explain stage runs the inside-the-model explainers on its `classifier` over the whole prompt "
                "(attexp.explain.prompted); the model analyses and the shared empirical explainer do not read it yet"
            )
        if base is None or base is model:
            raise AttexpError(
                f"{type(model).__name__} is not a sequence classifier with a base model; the inside-the-model "
                f"explainers need an AutoModelForSequenceClassification of a supported architecture "
                f"({', '.join(layout.name for layout in LAYOUTS)})."
            )
        self.base = base
        try:
            layers = layer_stack(base)
        except AttexpError:
            raise _unknown_layout(model) from None
        layout = next((layout for layout in LAYOUTS if layout.matches(model, layers[0])), None)
        if layout is None:
            raise _unknown_layout(model)
        self.layout = layout
        try:
            self.layers = [layout.layer(layer) for layer in layers]
            self._head = layout.head(model, base)
            self._final_norm = layout.final_norm(base)
        except AttributeError:
            raise _unknown_layout(model) from None
        first = self.layers[0].attention
        config = model.config
        self.num_heads = int(
            getattr(first, "num_attention_heads", getattr(first, "n_heads", 0)) or config.num_attention_heads
        )
        self.head_size = int(getattr(first, "attention_head_size", getattr(first, "head_dim", 0)))
        self.scaling = float(getattr(first, "scaling", self.head_size**-0.5))
        self.reads = layout.reads(config)
        self._index_of = {id(layer.attention): i for i, layer in enumerate(self.layers)}

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights (float32, bfloat16, ...)."""
        return next(self.model.parameters()).dtype

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Token ids [B, T] -> the first layer's input [B, T, H]."""
        return self.layout.embed(self.base, input_ids, token_type_ids)

    def context(self, attention_mask: Tensor, dtype: torch.dtype, input_ids: Tensor | None = None) -> LayerContext:
        """Every layer's attention mask (additive, in `dtype`) and rotary positions, and where the head reads, for
        a batch with padding mask `attention_mask` [B, T] (1 = token). `input_ids` [B, T] place a decoder's read
        position as the model does (the last id that is not the pad id); without them, the last real token.

        Positions are 0..T-1 for every row, as the models' own forward computes them: with attexp's right padding
        every real token has the position it has alone, so a batch gives each instance's unpadded result."""
        size, width = attention_mask.shape
        device = attention_mask.device
        keys = attention_mask[:, None, None, :].bool()  # [B, 1, 1, T]
        config = self.model.config
        index = torch.arange(width, device=device)
        offset = index[None, :] - index[:, None]  # [T_q, T_k]: key - query
        masks, cache = [], {}
        for layer in range(self.num_layers):
            window = self.layout.window(config, layer)
            if (window, self.layout.causal) not in cache:
                allowed = keys
                if self.layout.causal:
                    allowed = allowed & (offset <= 0)
                    if window is not None:
                        allowed = allowed & (offset > -window)  # transformers: kv > q - window
                elif window is not None:
                    allowed = allowed & (offset.abs() <= window)  # transformers: |q - kv| <= window
                cache[(window, self.layout.causal)] = torch.zeros(
                    allowed.shape, dtype=dtype, device=device
                ).masked_fill(~allowed, torch.finfo(dtype).min)
            masks.append(cache[(window, self.layout.causal)])
        positions: list[tuple[Tensor, Tensor] | None] = [None] * self.num_layers
        if self.layout.rotary is not None:
            probe = torch.zeros(1, width, 1, dtype=dtype, device=device)  # rotary reads only device and dtype
            position_ids = index[None, :]
            positions = [self.layout.rotary(self.base, probe, position_ids, i) for i in range(self.num_layers)]
        pad = getattr(config, "pad_token_id", None)
        if self.reads == "mean":
            read = attention_mask.float() / attention_mask.sum(dim=1, keepdim=True).clamp_min(1).float()
            read_index = None
        else:
            read_index = read_positions(self.reads, input_ids, attention_mask, pad)
            read = torch.zeros(size, width, device=device).scatter_(1, read_index[:, None], 1.0)
        return LayerContext(masks=masks, positions=positions, read=read, read_index=read_index)

    def run(self, hidden: Tensor, context: LayerContext, start: int = 0, stop: int | None = None) -> Tensor:
        """Run layers start..stop-1 (the model's own modules): hidden [B, T, H] -> [B, T, H]. `hidden` is cast to
        the model's dtype (an explainer may build it in float32, e.g. IBA's noisy bottleneck)."""
        hidden = hidden.to(self.dtype)
        stop = self.num_layers if stop is None else stop
        for index in range(start, stop):
            module = self.layers[index].module
            hidden = self.layout.call(module, hidden, context.masks[index], context.positions[index])
        return hidden

    def final(self, hidden: Tensor) -> Tensor:
        """The last layer's output [B, T, H] as the head sees it, at every position (the final norm applied where the
        layout has one: pre-norm decoders, ModernBERT)."""
        return hidden if self._final_norm is None else self._final_norm(hidden)

    def features(self, hidden: Tensor, context: LayerContext) -> Tensor:
        """The last layer's output [B, T, H] -> what the head reads [B, H] (final norm applied, pooled)."""
        return context.pool(self.final(hidden))

    def head(self, features: Tensor) -> Tensor:
        """The classification head: read features [B, H] -> logits [B, C]."""
        return self._head(features)

    def classify(self, hidden: Tensor, context: LayerContext) -> Tensor:
        """The last layer's output [B, T, H] -> logits [B, C]."""
        return self.head(self.features(hidden, context))

    def read_last(self, hidden: Tensor, context: LayerContext, probs: Tensor | None = None) -> Tensor:
        """The last layer's output where the head reads it: its input `hidden` [B, T, H] -> features [B, H] (for
        `head`). `probs` [B, heads, T, T] replaces the last layer's attention.

        Post-norm layouts that read position 0 (the BERT family) compute position 0 alone: keys and values come
        from all positions; the query, the output projection and the feed-forward block run for position 0 only.
        The others run the whole layer and pool it."""
        last = self.num_layers - 1
        layer = self.layers[last]
        if self.layout.pre_norm or self.reads != "first":
            handler = None if probs is None else (lambda index, q, k, v, mask, scaling: probs)
            with self.attention(handler):
                return self.features(self.run(hidden, context, last), context)
        hidden = hidden.to(self.dtype)
        size, width, _ = hidden.shape
        first = hidden[:, :1]
        if probs is None:
            query = self._split(layer.query(first))  # [B, h, 1, d]
            probs = eager_probabilities(query, self._split(layer.key(hidden)), context.masks[last], self.scaling)
        else:
            probs = probs[:, :, :1]  # [B, h, 1, T]
        value = self._split(layer.value(hidden))
        attended = torch.matmul(probs.to(value.dtype), value)  # [B, h, 1, d]
        attended = attended.transpose(1, 2).reshape(size, 1, -1)  # [B, 1, H]
        return layer.feed_forward(layer.norm(layer.output(attended) + first))[:, 0]

    def _split(self, states: Tensor) -> Tensor:
        """[B, T, heads * d] -> [B, heads, T, d]."""
        return states.view(*states.shape[:2], self.num_heads, self.head_size).transpose(1, 2)

    def logits(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """The model's logits [B, C], computed layer by layer (equal to `model(**inputs).logits`)."""
        hidden = self.embed(input_ids, token_type_ids)
        context = self.context(attention_mask, hidden.dtype, input_ids)
        with self.attention():
            return self.classify(self.run(hidden, context), context)

    @contextmanager
    def attention(self, handler: AttentionHandler | None = None) -> Iterator[None]:
        """Route every self-attention call of the model through `handler` (default: the model's own
        probabilities, computed as eager attention) for the duration of the block."""
        configs = {id(layer.attention.config): layer.attention.config for layer in self.layers}
        configs[id(self.model.config)] = self.model.config
        previous = {key: config._attn_implementation for key, config in configs.items()}
        token = _ACTIVE.set(_Active(handler or _model_probabilities, self._index_of))
        try:
            for config in configs.values():
                config._attn_implementation = ATTENTION_NAME
            yield
        finally:
            for key, config in configs.items():
                config._attn_implementation = previous[key]
            _ACTIVE.reset(token)

    def trace(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
        values: bool = False,
        stop: int | None = None,
    ) -> Trace:
        """One pass through the layers (all, or those before `stop`) recording each layer's input and attention
        probabilities (and value vectors when `values`)."""
        count = self.num_layers if stop is None else stop
        probs: list[Tensor | None] = [None] * count
        kept: list[Tensor | None] = [None] * count

        def record(index: int, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scaling: float):
            probs[index] = eager_probabilities(query, key, mask, scaling)
            if values:
                kept[index] = value
            return probs[index]

        hidden = self.embed(input_ids, token_type_ids)
        context = self.context(attention_mask, hidden.dtype, input_ids)
        inputs = []
        with self.attention(record):
            for index in range(count):
                inputs.append(hidden)
                hidden = self.run(hidden, context, index, index + 1)
        return Trace(inputs=inputs, probs=probs, values=kept if values else [], output=hidden, context=context)
