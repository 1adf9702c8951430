"""Generic access to the inside of BERT-family sequence classifiers: BERT, RoBERTa, DistilBERT, ELECTRA.

Why this module exists: raw attention, attention rollout, ALTI, Self-Attention Attribution and IBA all need
what a plain forward pass does not hand out — each layer's input, its attention probabilities and value
vectors, the attention output projection and the LayerNorm after it — and some need to run only a slice of
the layers or to replace one layer's attention probabilities. The papers' official code reached into
transformers 2.x-4.x model classes by hard-coded attribute paths and `output_attentions`; in transformers 5
attention runs through `AttentionInterface`, sdpa attention returns no probabilities, and
`output_attentions=True` installs permanent capture hooks on the model. So attexp reads the module layout of
the four families once (names as in transformers 5.23) and drives the model layer by layer itself:

- `Encoder.embed` / `Encoder.run` / `Encoder.classify` reproduce `model(**inputs).logits` (tested), and any
  slice of layers can run on its own (prefix caching: run the layers below once, only the rest per step);
- inside `with encoder.attention(handler):` every self-attention call of the model goes through one function
  registered with `transformers.AttentionInterface` (name "attexp"), which asks `handler` for the attention
  probabilities: compute them as eager attention does and record them, or substitute other ones. The model
  config's attention implementation is switched for the duration of the block and restored afterwards, so
  the explainers work whether the model was loaded with eager or sdpa attention;
- `Encoder.cls_layer` computes a layer's output at the [CLS] position only. Every supported head reads
  position 0 of the last layer, so the last layer needs nothing else (used in optimisation loops).

No hook is ever registered on the model, and nothing of it is modified beyond the temporary switch above.

Layout (transformers 5.23), per family: layers; query/key/value; attention output projection; LayerNorm after
attention; feed-forward block.
- BERT, RoBERTa, ELECTRA (also XLM-R, CamemBERT): `encoder.layer`; `attention.self.{query,key,value}`;
  `attention.output.dense`; `attention.output.LayerNorm`; `intermediate` + `output`.
- DistilBERT: `transformer.layer`; `attention.{q,k,v}_lin`; `attention.out_lin`; `sa_layer_norm`;
  `ffn` + `output_layer_norm`.
Heads: BERT `classifier(dropout(pooler(h)))`; RoBERTa and ELECTRA `classifier(h)` (a head that reads `h[:, 0]`);
DistilBERT `classifier(dropout(relu(pre_classifier(h[:, 0]))))`. ELECTRA's `embeddings_project` is applied when
the embedding size differs from the hidden size.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from transformers import AttentionInterface

from attexp.errors import AttexpError, ConfigError

ENCODER_MODEL_TYPES = frozenset({"bert", "roberta", "distilbert", "electra", "xlm-roberta", "camembert"})
"""The `model_type`s whose module layout `Encoder` reads: what the inside-the-model explainers and analyses
support (they declare it as `architectures`; the config loader checks it before any job runs)."""

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
    [B, heads, T, d], value [B, heads, T, d], the additive mask [B, 1, 1 or T, T] (or None) and the scaling.
    Returns the probabilities [B, heads, T, T] to use (`eager_probabilities(...)` for the model's own).
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


@dataclass(frozen=True)
class Layer:
    """The parts of one encoder layer that the explainers read.

    module: the whole layer (`module(hidden [B,T,H], mask) -> [B,T,H]`); attention: the module that calls the
    attention function (owns query/key/value); output: the attention output projection (heads -> hidden);
    norm: the LayerNorm applied to output + residual; feed_forward: LayerNorm output -> layer output (the
    feed-forward block with its residual and second LayerNorm), whose parts are `ffn_in` (hidden -> intermediate,
    before the activation), `ffn_out` (intermediate -> hidden) and `ffn_norm` (the LayerNorm after its residual).
    """

    module: nn.Module
    attention: nn.Module
    query: nn.Linear
    key: nn.Linear
    value: nn.Linear
    output: nn.Linear
    norm: nn.LayerNorm
    feed_forward: Callable[[Tensor], Tensor]
    ffn_in: nn.Linear
    ffn_out: nn.Linear
    ffn_norm: nn.LayerNorm


def _bert_layer(layer: nn.Module) -> Layer:
    attention = layer.attention
    return Layer(
        module=layer,
        attention=attention.self,
        query=attention.self.query,
        key=attention.self.key,
        value=attention.self.value,
        output=attention.output.dense,
        norm=attention.output.LayerNorm,
        feed_forward=lambda x: layer.output(layer.intermediate(x), x),
        ffn_in=layer.intermediate.dense,
        ffn_out=layer.output.dense,
        ffn_norm=layer.output.LayerNorm,
    )


def _distilbert_layer(layer: nn.Module) -> Layer:
    attention = layer.attention
    return Layer(
        module=layer,
        attention=attention,
        query=attention.q_lin,
        key=attention.k_lin,
        value=attention.v_lin,
        output=attention.out_lin,
        norm=layer.sa_layer_norm,
        feed_forward=lambda x: layer.output_layer_norm(layer.ffn(x) + x),
        ffn_in=layer.ffn.lin1,
        ffn_out=layer.ffn.lin2,
        ffn_norm=layer.output_layer_norm,
    )


@dataclass
class Trace:
    """What one recorded pass saw, per layer l: `inputs[l]` [B,T,H] (the layer's input hidden states),
    `probs[l]` [B,heads,T,T], `values[l]` [B,heads,T,d] (value vectors, bias included; empty unless asked
    for); `output` [B,T,H], the last traced layer's output."""

    inputs: list[Tensor]
    probs: list[Tensor]
    values: list[Tensor]
    output: Tensor


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


class Encoder:
    """Layer-by-layer access to a BERT-family sequence classifier (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        base = getattr(model, "base_model", None)
        if base is None or base is model:
            raise AttexpError(
                f"{type(model).__name__} is not a sequence classifier with a base model; the inside-the-model "
                f"explainers need an AutoModelForSequenceClassification of the BERT family (BERT, RoBERTa, "
                f"DistilBERT, ELECTRA)."
            )
        self.base = base
        unknown = AttexpError(
            f"{type(model).__name__} (model_type {getattr(model.config, 'model_type', '?')!r}) does not have the "
            f"module layout of BERT, RoBERTa, DistilBERT or ELECTRA (encoder.layer[i].attention.self.query ... or "
            f"transformer.layer[i].attention.q_lin ...), which the inside-the-model explainers read. Use one of "
            f"those families, or a gradient or perturbation explainer."
        )
        try:
            layers = layer_stack(base)
        except AttexpError:
            raise unknown from None
        if hasattr(getattr(layers[0], "attention", None), "self"):
            make = _bert_layer
        elif hasattr(getattr(layers[0], "attention", None), "q_lin"):
            make = _distilbert_layer
        else:
            raise unknown
        try:
            self.layers = [make(layer) for layer in layers]
        except AttributeError:
            raise unknown from None
        self._head = self._find_head(model, base)
        first = self.layers[0].attention
        self.num_heads = int(getattr(first, "num_attention_heads", getattr(first, "n_heads", 0)))
        self.head_size = int(first.attention_head_size)
        self.scaling = float(getattr(first, "scaling", self.head_size**-0.5))
        self._index_of = {id(layer.attention): i for i, layer in enumerate(self.layers)}
        self._types = "token_type_ids" in inspect.signature(base.embeddings.forward).parameters

    @staticmethod
    def _find_head(model: nn.Module, base: nn.Module) -> Callable[[Tensor], Tensor]:
        classifier = getattr(model, "classifier", None)
        if isinstance(getattr(model, "pre_classifier", None), nn.Linear):  # DistilBERT

            def head(hidden: Tensor) -> Tensor:
                pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
                return model.classifier(model.dropout(pooled))

            return head
        if isinstance(classifier, nn.Linear) and getattr(base, "pooler", None) is not None:  # BERT
            return lambda hidden: model.classifier(model.dropout(base.pooler(hidden)))
        if isinstance(getattr(classifier, "out_proj", None), nn.Linear):  # RoBERTa, ELECTRA: reads hidden[:, 0]
            return classifier
        raise AttexpError(
            f"{type(model).__name__}: unknown classification head (expected BERT's pooler + classifier, "
            f"RoBERTa's/ELECTRA's classifier.out_proj, or DistilBERT's pre_classifier + classifier)."
        )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights (float32, bfloat16, ...)."""
        return next(self.model.parameters()).dtype

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Token ids [B, T] -> the first layer's input [B, T, H]."""
        kwargs = {"input_ids": input_ids}
        if token_type_ids is not None and self._types:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.base.embeddings(**kwargs)
        project = getattr(self.base, "embeddings_project", None)  # ELECTRA with embedding_size != hidden_size
        return project(hidden) if project is not None else hidden

    @staticmethod
    def mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
        """Padding mask [B, T] (1 = token) -> additive attention mask [B, 1, 1, T] (0 or dtype's minimum)."""
        keep = attention_mask[:, None, None, :].bool()
        return torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device).masked_fill(
            ~keep, torch.finfo(dtype).min
        )

    def run(self, hidden: Tensor, mask: Tensor, start: int = 0, stop: int | None = None) -> Tensor:
        """Run layers start..stop-1 (the model's own modules): hidden [B, T, H] -> [B, T, H]. `hidden` is cast to
        the model's dtype (an explainer may build it in float32, e.g. IBA's noisy bottleneck)."""
        hidden = hidden.to(self.dtype)
        for layer in self.layers[start:stop]:
            hidden = layer.module(hidden, mask)
        return hidden

    def cls_layer(self, index: int, hidden: Tensor, mask: Tensor, probs: Tensor | None = None) -> Tensor:
        """Layer `index`'s output at position 0 only: hidden [B, T, H] -> [B, 1, H].

        Keys and values come from all positions; the query, the output projection and the feed-forward block
        run for position 0 alone. `probs` [B, heads, T, T] (only row 0 is read) replaces the attention.
        """
        layer = self.layers[index]
        hidden = hidden.to(self.dtype)
        size, width, _ = hidden.shape
        first = hidden[:, :1]
        if probs is None:
            query = self._split(layer.query(first))  # [B, h, 1, d]
            probs = eager_probabilities(query, self._split(layer.key(hidden)), mask, self.scaling)  # [B, h, 1, T]
        else:
            probs = probs[:, :, :1]
        value = self._split(layer.value(hidden))
        context = torch.matmul(probs.to(value.dtype), value)  # [B, h, 1, d]
        context = context.transpose(1, 2).reshape(size, 1, -1)  # [B, 1, H]
        return layer.feed_forward(layer.norm(layer.output(context) + first))

    def _split(self, states: Tensor) -> Tensor:
        """[B, T, heads * d] -> [B, heads, T, d]."""
        return states.view(*states.shape[:2], self.num_heads, self.head_size).transpose(1, 2)

    def classify(self, hidden: Tensor) -> Tensor:
        """Last layer output [B, T, H] (or just position 0: [B, 1, H]) -> logits [B, C]."""
        return self._head(hidden)

    def logits(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """The model's logits [B, C], computed layer by layer (equal to `model(**inputs).logits`)."""
        hidden = self.embed(input_ids, token_type_ids)
        with self.attention():
            return self.classify(self.run(hidden, self.mask(attention_mask, hidden.dtype)))

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
        mask = self.mask(attention_mask, hidden.dtype)
        inputs = []
        with self.attention(record):
            for index in range(count):
                inputs.append(hidden)
                hidden = self.run(hidden, mask, index, index + 1)
        return Trace(inputs=inputs, probs=probs, values=kept if values else [], output=hidden)
