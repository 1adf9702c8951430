"""Self-Attention Attribution (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution: Interpreting
Information Interactions Inside Transformer", AAAI; official code YRdddream/attattr).

Integrated gradients over one layer's attention probabilities at a time: with A_l the probabilities of layer
l (all heads), F(alpha * A_l) the target class probability when layer l attends with alpha * A_l instead
(every other layer computes its own attention as usual), the attribution of the edge i -> j in head h is

    Attr_l[h, i, j] = A_l[h, i, j] * integral_0^1 dF(alpha A_l) / dA_l[h, i, j] d alpha,

approximated by a Riemann sum over m steps (zero baseline). Per layer the attributions sum to
F(A_l) - F(0) up to the approximation error (completeness), which the tests check.

How it runs on transformers 5: the scaled probabilities are substituted through the function attexp registers
with `transformers.AttentionInterface` (see `attexp.models.encoder`), inside the model's own layer modules.
Prefix caching: the layers below l do not depend on alpha, so they run once per batch (one recorded forward
pass gives every layer's input and attention) and only layers l..L run for the m steps, all instances and
steps stacked into one batch; for the BERT family the last layer computes only the [CLS] position, the only one
the classifier reads. Any softmax attention is attributed the same way: causal (decoders), local or global
(ModernBERT), grouped-query (each query head's probabilities are attributed). The results equal the naive
computation (`prefix_cache=False`: every step runs the whole model from the embeddings, as the original code
does), which the tests check and benchmarks/inside_explainers.py times.

Token scores (the paper attributes edges, not tokens; attexp documents its aggregation): `aggregate="received"`
(default) sums, per layer, the attributions of all edges that attend *to* token j (over heads and query
tokens i) and averages over the attributed layers, so each layer's share keeps completeness;
`aggregate="cls"` keeps only the edges from the position the classifier reads ([CLS], i = 0; a decoder's last
token; ModernBERT's mean pooling: the mean of the real tokens' rows).

Parity with the official code: zero baseline, a class's probability as F and the left Riemann rule
(alpha = 0, 1/m, ..., (m-1)/m) are the official code's; the paper's Eq. (3) is the right rule
(alpha = 1/m, ..., 1): `rule="right"`. The class is the prediction in its attribution-map and trigger scripts
(generate_attrscore.py, run_adver_connection.py; attexp explains `batch.targets`, which the explain stage sets to
the prediction by default) and the gold label in its head-pruning script (prune_head_with_attr.py; attexp's
`head_pruning` job does the same). Its attribution-map script defaults to m = 64 (16 x 4 batches), its pruning
script to m = 20; attexp to 20.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import Explainer, ExplainerConfig, Explanation, zero_padding
from attexp.models.encoder import Encoder, eager_probabilities, layer_index
from attexp.models.inputs import Batch
from attexp.models.layouts import INSIDE_MODEL_TYPES
from attexp.registry import EXPLAINERS


class AttAttrConfig(ExplainerConfig):
    """Self-Attention Attribution (Hao et al. 2021).

    steps: m, the Riemann steps per layer (the official code uses 64). rule: `left` (alpha = k/m, k = 0..m-1,
    the official code) or `right` (k = 1..m, the paper's Eq. 3). layers: which layers to attribute (0-based,
    negative from the end; default: all). aggregate: how edge attributions become token scores, `received`
    or `cls` (see the module docstring). prefix_cache: run the layers below the attributed one once per batch
    (False: the whole model at every step, as the original; same result, slower). internal_batch_size: rows
    (instances x steps) per forward/backward chunk (None: all B x m rows of a layer at once); the default 64
    keeps a chunk's activations small enough to stay in cache on a CPU (about 20% faster than all 320 rows of
    a batch of 16 at m = 20 for MiniLM); raise it on a GPU. return_maps:
    also return the per-head maps as extras["maps"] [B, layers, heads, T, T].
    """

    type: Literal["attattr"] = "attattr"
    steps: int = Field(20, ge=1)
    rule: Literal["left", "right"] = "left"
    layers: list[int] | None = None
    aggregate: Literal["received", "cls"] = "received"
    prefix_cache: bool = True
    internal_batch_size: int | None = Field(64, ge=1)
    return_maps: bool = False

    @field_validator("layers")
    @classmethod
    def _some_layer(cls, layers: list[int] | None) -> list[int] | None:
        if layers is not None and not layers:
            raise ConfigError("attattr: layers=[] attributes nothing; list at least one layer or leave it unset.")
        return layers


@EXPLAINERS.register("attattr", AttAttrConfig)
class AttentionAttribution(Explainer):
    """Self-Attention Attribution (Hao et al. 2021): integrated gradients of the target probability over
    each layer's attention probabilities, aggregated into token scores.

    Specials: edges to [CLS]/[SEP] are attributed like any other; padding gets exactly 0 (its attention is 0).
    Cost per instance: 1 recording forward pass + m forward and m backward passes per attributed layer
    (with prefix caching a step's pass runs only the layers from the attributed one up; without it, one more
    forward per layer to read its attention, as the original).
    """

    needs_gradients = True
    needs_attentions = True
    architectures = INSIDE_MODEL_TYPES
    config: AttAttrConfig

    def __init__(self, config: AttAttrConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]):
        super().__init__(config, model, tokenizer, upstream)
        self.encoder = Encoder(model)
        count = self.encoder.num_layers
        chosen = range(count) if config.layers is None else config.layers
        self.layers = sorted({layer_index(i, count, "attattr: layers[...]") for i in chosen})

    def alphas(self, device: torch.device) -> Tensor:
        """The m scales of the Riemann sum [m]."""
        steps = self.config.steps
        start = 1 if self.config.rule == "right" else 0
        return torch.arange(start, start + steps, device=device, dtype=torch.float32) / steps

    def explain(self, batch: Batch) -> Explanation:
        if torch.is_inference_mode_enabled():
            raise AttexpError("attattr needs autograd, but explain() was called under torch.inference_mode().")
        cfg = self.config
        with torch.no_grad():
            trace = self.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        maps = [self.attribute_layer(batch, layer, trace.probs[layer], trace.inputs[layer]) for layer in self.layers]
        stacked = torch.stack(maps, dim=1)  # [B, layers, h, T, T]
        if cfg.aggregate == "cls":
            read = trace.context.read.to(stacked.dtype)  # [B, T]: the head's read weights
            scores = torch.einsum("bq,blhqk->bk", read, stacked) / stacked.shape[1]  # edges from the read row
        else:
            scores = stacked.sum(dim=(2, 3)).mean(dim=1)  # edges into each token: [B, T]
        size = len(batch)
        steps = len(self.layers) * cfg.steps
        forwards = 1 + steps + (0 if cfg.prefix_cache else len(self.layers))
        return Explanation(
            attributions=zero_padding(scores, batch.attention_mask),
            forward_passes=[forwards] * size,
            backward_passes=[steps] * size,
            extras={"maps": stacked} if cfg.return_maps else {},
        )

    def attribute_layer(self, batch: Batch, layer: int, probs: Tensor, inputs: Tensor) -> Tensor:
        """Attributions [B, h, T, T] of layer `layer`, whose probabilities are `probs` [B, h, T, T] and input
        hidden states `inputs` [B, T, H] (recorded by one forward pass)."""
        cfg = self.config
        if not cfg.prefix_cache:  # the original reads each layer's attention with a forward pass of its own
            with torch.no_grad():
                probs = self.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids).probs[layer]
        size, steps = len(batch), cfg.steps
        alphas = self.alphas(probs.device)
        probs = probs.float()  # the sum over steps in float32, whatever the model's dtype
        gradients = torch.zeros_like(probs)  # sum over steps of dF/dA at alpha A: [B, h, T, T]
        total = size * steps
        if "internal_batch_size" in cfg.model_fields_set or self.max_tokens_per_pass is None:
            chunk = cfg.internal_batch_size or total
        else:  # the job's budget: rows of this width per pass
            chunk = max(1, self.max_tokens_per_pass // probs.shape[-1])
        for start in range(0, total, chunk):
            rows = torch.arange(start, min(start + chunk, total), device=probs.device)
            instance, alpha = rows // steps, alphas[rows % steps]  # instance-major rows
            scaled = (probs[instance] * alpha[:, None, None, None]).requires_grad_(True)  # [rows, h, T, T]
            cached = inputs[instance] if cfg.prefix_cache else None
            probability = self.target_probability(batch, layer, scaled, instance, cached)
            (gradient,) = torch.autograd.grad(probability.sum(), scaled)
            gradients.index_add_(0, instance, gradient.float())
        return probs * gradients / steps

    def target_probability(
        self, batch: Batch, layer: int, attention: Tensor, instance: Tensor, inputs: Tensor | None = None
    ) -> Tensor:
        """F: the target class probability [rows] (arguments as for `logits`)."""
        logits = self.logits(batch, layer, attention, instance, inputs)  # [rows, C]
        return logits.float().softmax(dim=-1).gather(1, batch.targets[instance][:, None])[:, 0]

    def logits(
        self, batch: Batch, layer: int, attention: Tensor, instance: Tensor, inputs: Tensor | None = None
    ) -> Tensor:
        """Logits [rows, C] of the instances `instance` [rows] of `batch` when layer `layer` attends with
        `attention` [rows, h, T, T]. `inputs` [rows, T, H], the layer's input hidden states, enables prefix
        caching (otherwise the whole model runs from the embeddings)."""
        encoder, last = self.encoder, self.encoder.num_layers - 1
        context = encoder.context(batch.attention_mask[instance], attention.dtype, batch.input_ids[instance])

        def substitute(index: int, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scaling: float):
            return attention if index == layer else eager_probabilities(query, key, mask, scaling)

        if inputs is not None:  # prefix caching: start at the attributed layer
            if layer == last:
                return encoder.head(encoder.read_last(inputs, context, probs=attention))
            with encoder.attention(substitute):
                hidden = encoder.run(inputs, context, layer, last)
            return encoder.head(encoder.read_last(hidden, context))
        types = None if batch.token_type_ids is None else batch.token_type_ids[instance]
        hidden = encoder.embed(batch.input_ids[instance], types)
        with encoder.attention(substitute):
            hidden = encoder.run(hidden, context)
        return encoder.classify(hidden, context)
