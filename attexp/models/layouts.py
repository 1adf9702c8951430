"""One description per architecture of where things are inside a sequence classifier (`LAYOUTS`), read by
`attexp.models.encoder.Encoder` and so by every inside-the-model explainer and analysis; and the one answer to where a
classifier's head reads (`head_reads`), which decides how its batches are padded (`attexp.models.inputs`).

The layouts (`LAYOUTS`; adding one is one entry there plus a tiny config in tests/test_layouts.py):
- `bert` (BERT, RoBERTa, ELECTRA, XLM-R, CamemBERT): post-LayerNorm; `encoder.layer`;
  `attention.self.{query,key,value}`; `attention.output.dense`; `attention.output.LayerNorm`; `intermediate` +
  `output`. Heads read position 0: BERT `classifier(dropout(pooler(h)))`; RoBERTa and ELECTRA `classifier(h)`.
  ELECTRA's `embeddings_project` is applied when the embedding size differs from the hidden size.
- `distilbert`: post-LayerNorm; `transformer.layer`; `attention.{q,k,v}_lin`; `attention.out_lin`;
  `sa_layer_norm`; `ffn` + `output_layer_norm`; head `classifier(dropout(relu(pre_classifier(h[:, 0]))))`.
- `llama` (Llama, Mistral, Qwen2, Qwen3, Gemma): decoders, pre-RMSNorm residual blocks; `model.layers`;
  `self_attn.{q,k,v,o}_proj` with grouped-query attention; `input_layernorm` before attention,
  `post_attention_layernorm` before the gated MLP; rotary positions (`model.rotary_emb`); causal attention, a
  sliding window where the config gives the layer one (Mistral's `sliding_window`, Qwen's "sliding_attention"
  layer types); final `model.norm`; head `score(h)` read at the last token whose id is not the pad id (as
  transformers' `*ForSequenceClassification`).
- `modernbert`: pre-LayerNorm (no biases by default; the first layer's attention norm is the identity);
  `model.layers`; fused `attn.Wqkv`, `attn.Wo`; `attn_norm`, `mlp_norm` and a gated MLP; rotary positions per
  layer type; every third layer global, the others local (bidirectional window of +-`sliding_window` tokens);
  final `model.final_norm`; head `classifier(drop(head(h)))` read at position 0 (`classifier_pooling="cls"`) or
  averaged over the real tokens (`"mean"`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from attexp.errors import AttexpError


@dataclass(frozen=True)
class Layer:
    """The parts of one transformer layer that the explainers read.

    module: the whole layer, run through `Layout.call`; attention: the module that calls the attention function;
    output: the attention output projection (heads -> hidden; its input is the heads' outputs concatenated, which
    is where head pruning gates them); norm: post-norm layouts, the LayerNorm applied to output + residual;
    pre-norm layouts, the norm applied to the layer's input before attention (the identity in ModernBERT's first
    layer).

    Post-norm layouts only (None elsewhere): query/key/value, the projections; feed_forward: LayerNorm output ->
    layer output (the feed-forward block with its residual and second LayerNorm), whose parts are `ffn_in`
    (hidden -> intermediate, before the activation), `ffn_out` (intermediate -> hidden) and `ffn_norm`.
    """

    module: nn.Module
    attention: nn.Module
    output: nn.Linear
    norm: nn.Module
    query: nn.Linear | None = None
    key: nn.Linear | None = None
    value: nn.Linear | None = None
    feed_forward: Callable[[Tensor], Tensor] | None = None
    ffn_in: nn.Linear | None = None
    ffn_out: nn.Linear | None = None
    ffn_norm: nn.LayerNorm | None = None


Reads = Literal["first", "last", "mean"]


@dataclass(frozen=True)
class Layout:
    """One architecture's anatomy, read by every inside-the-model explainer and analysis.

    name: the layout's name (the README's architecture table); model_types: the `model_type`s it describes (what
    the config loader checks before anything runs); family: "encoder" or "decoder"; pre_norm: the residual
    stream is normalised before each block (else after, BERT-style); causal: each token attends to itself and the
    tokens before it only; matches(model, first layer): whether a loaded model has this layout; layer: one layer
    module -> its parts; call(layer module, hidden, mask, positions) -> the layer's output; embed(base, input_ids,
    token_type_ids) -> the first layer's input; final_norm(base): the per-token norm before the head (None: no
    norm); head(model, base): the head as a function of the read features [B, H] -> logits [B, C]; reads(config):
    where the head reads the last layer ("first": position 0, "last": the last real token, "mean": the mean over
    real tokens); rotary(base, hidden, positions, layer index): the layer's rotary (cos, sin), or None where
    positions are embedded at the input; window(config, layer index): the layer's sliding-window size (None:
    global attention).
    """

    name: str
    model_types: frozenset[str]
    family: Literal["encoder", "decoder"]
    pre_norm: bool
    causal: bool
    matches: Callable[[nn.Module, nn.Module], bool]
    layer: Callable[[nn.Module], Layer]
    call: Callable[[nn.Module, Tensor, Tensor, tuple[Tensor, Tensor] | None], Tensor]
    embed: Callable[[nn.Module, Tensor, Tensor | None], Tensor]
    final_norm: Callable[[nn.Module], nn.Module | None]
    head: Callable[[nn.Module, nn.Module], Callable[[Tensor], Tensor]]
    reads: Callable[[object], Reads]
    rotary: Callable[[nn.Module, Tensor, Tensor, int], tuple[Tensor, Tensor]] | None = None
    window: Callable[[object, int], int | None] = lambda config, index: None


def _bert_layer(layer: nn.Module) -> Layer:
    attention = layer.attention
    return Layer(
        module=layer,
        attention=attention.self,
        output=attention.output.dense,
        norm=attention.output.LayerNorm,
        query=attention.self.query,
        key=attention.self.key,
        value=attention.self.value,
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
        output=attention.out_lin,
        norm=layer.sa_layer_norm,
        query=attention.q_lin,
        key=attention.k_lin,
        value=attention.v_lin,
        feed_forward=lambda x: layer.output_layer_norm(layer.ffn(x) + x),
        ffn_in=layer.ffn.lin1,
        ffn_out=layer.ffn.lin2,
        ffn_norm=layer.output_layer_norm,
    )


def _llama_layer(layer: nn.Module) -> Layer:
    return Layer(module=layer, attention=layer.self_attn, output=layer.self_attn.o_proj, norm=layer.input_layernorm)


def _modernbert_layer(layer: nn.Module) -> Layer:
    return Layer(module=layer, attention=layer.attn, output=layer.attn.Wo, norm=layer.attn_norm)


def _bert_embed(base: nn.Module, input_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
    kwargs = {"input_ids": input_ids}
    if token_type_ids is not None and "token_type_ids" in inspect.signature(base.embeddings.forward).parameters:
        kwargs["token_type_ids"] = token_type_ids
    hidden = base.embeddings(**kwargs)
    project = getattr(base, "embeddings_project", None)  # ELECTRA with embedding_size != hidden_size
    return project(hidden) if project is not None else hidden


def _bert_head(model: nn.Module, base: nn.Module) -> Callable[[Tensor], Tensor]:
    """BERT's pooler + classifier, or RoBERTa's/ELECTRA's classifier (both read position 0 of [B, T, H]: they get
    the read features as [B, 1, H])."""
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear) and getattr(base, "pooler", None) is not None:  # BERT
        return lambda read: model.classifier(model.dropout(base.pooler(read[:, None])))
    if isinstance(getattr(classifier, "out_proj", None), nn.Linear):  # RoBERTa, ELECTRA
        return lambda read: classifier(read[:, None])
    raise AttexpError(
        f"{type(model).__name__}: unknown classification head (expected BERT's pooler + classifier, "
        f"RoBERTa's/ELECTRA's classifier.out_proj, or DistilBERT's pre_classifier + classifier)."
    )


def _distilbert_head(model: nn.Module, base: nn.Module) -> Callable[[Tensor], Tensor]:
    return lambda read: model.classifier(model.dropout(torch.relu(model.pre_classifier(read))))


def _decoder_window(config: object, index: int) -> int | None:
    """Mistral: `sliding_window` on every layer (when set); Qwen2/Qwen3: on the "sliding_attention" layer types."""
    types = getattr(config, "layer_types", None)
    window = getattr(config, "sliding_window", None)
    if types is not None and getattr(config, "model_type", "") != "mistral":
        return window if types[index] == "sliding_attention" else None
    return window


def _modernbert_window(config: object, index: int) -> int | None:
    return config.sliding_window if config.layer_types[index] == "sliding_attention" else None


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        name="bert",
        model_types=frozenset({"bert", "roberta", "electra", "xlm-roberta", "camembert"}),
        family="encoder",
        pre_norm=False,
        causal=False,
        matches=lambda model, layer: hasattr(getattr(layer, "attention", None), "self"),
        layer=_bert_layer,
        call=lambda module, hidden, mask, positions: module(hidden, mask),
        embed=_bert_embed,
        final_norm=lambda base: None,
        head=_bert_head,
        reads=lambda config: "first",
    ),
    Layout(
        name="distilbert",
        model_types=frozenset({"distilbert"}),
        family="encoder",
        pre_norm=False,
        causal=False,
        matches=lambda model, layer: hasattr(getattr(layer, "attention", None), "q_lin"),
        layer=_distilbert_layer,
        call=lambda module, hidden, mask, positions: module(hidden, mask),
        embed=_bert_embed,
        final_norm=lambda base: None,
        head=_distilbert_head,
        reads=lambda config: "first",
    ),
    Layout(
        name="llama",
        model_types=frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma"}),
        family="decoder",
        pre_norm=True,
        causal=True,
        matches=lambda model, layer: model.config.model_type in {"llama", "mistral", "qwen2", "qwen3", "gemma"},
        layer=_llama_layer,
        call=lambda module, hidden, mask, positions: module(hidden, attention_mask=mask, position_embeddings=positions),
        embed=lambda base, input_ids, token_type_ids: base.embed_tokens(input_ids),
        final_norm=lambda base: base.norm,
        head=lambda model, base: model.score,
        reads=lambda config: "last",
        rotary=lambda base, hidden, positions, index: base.rotary_emb(hidden, positions),
        window=_decoder_window,
    ),
    Layout(
        name="modernbert",
        model_types=frozenset({"modernbert"}),
        family="encoder",
        pre_norm=True,
        causal=False,
        matches=lambda model, layer: model.config.model_type == "modernbert",
        layer=_modernbert_layer,
        call=lambda module, hidden, mask, positions: module(hidden, attention_mask=mask, position_embeddings=positions),
        embed=lambda base, input_ids, token_type_ids: base.embeddings(input_ids=input_ids),
        final_norm=lambda base: base.final_norm,
        head=lambda model, base: lambda read: model.classifier(model.drop(model.head(read))),
        reads=lambda config: "mean" if config.classifier_pooling == "mean" else "first",
        rotary=lambda base, hidden, positions, index: base.rotary_emb(
            hidden, positions, base.config.layer_types[index]
        ),
        window=_modernbert_window,
    ),
)
"""Every layout `Encoder` reads, in the order they are tried."""

INSIDE_MODEL_TYPES: frozenset[str] = frozenset().union(*(layout.model_types for layout in LAYOUTS))
"""The `model_type`s whose module layout `Encoder` reads: what the inside-the-model explainers and analyses
support unless they declare fewer (`architectures`; the config loader checks it before any job runs)."""

ENCODER_MODEL_TYPES: frozenset[str] = frozenset().union(
    *(layout.model_types for layout in LAYOUTS if layout.family == "encoder")
)
"""The bidirectional encoders among them (BERT family and ModernBERT)."""

BERT_FAMILY_TYPES: frozenset[str] = frozenset().union(
    *(layout.model_types for layout in LAYOUTS if layout.name in ("bert", "distilbert"))
)
"""The post-LayerNorm BERT family (BERT, RoBERTa, ELECTRA, XLM-R, CamemBERT, DistilBERT)."""


def layout_of_type(model_type: str) -> Layout | None:
    """The layout describing `model_type` (from a config.json, nothing loaded), or None."""
    return next((layout for layout in LAYOUTS if model_type in layout.model_types), None)


def head_reads(model: Any) -> Reads:
    """Where `model`'s classification head reads its last layer: "first" (position 0, [CLS]), "last" (the last
    token whose id is not the config's pad id) or "mean" (over the real tokens). The one answer attexp gives
    (padding, the explainers' read rows, the trainer): the layout's for a model of `LAYOUTS`; for another model, a
    decoder `*ForSequenceClassification` (a `score` head, e.g. GPT-2) reads its last token, anything else position
    0."""
    config = getattr(model, "config", None)
    layout = layout_of_type(getattr(config, "model_type", "") or "")
    if layout is not None:
        return layout.reads(config)
    return "last" if isinstance(getattr(model, "score", None), nn.Linear) else "first"
