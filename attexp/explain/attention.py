"""Attention-based explainers: raw attention, attention rollout and ALTI.

They read the model's attention probabilities (and for ALTI its value vectors, output projection and first
LayerNorm) layer by layer through `attexp.models.encoder.Encoder`, so they work on every layout it describes
(the BERT family, the Llama-style decoders, ModernBERT) and whatever attention implementation the model was
loaded with: the explain stage loads the model with eager attention (`needs_attentions = True`), and the encoder
routes attention through attexp's own eager-equivalent function for the duration of `explain` anyway, so an
sdpa model works too and is left as it was. Each costs one forward pass per instance.

Every method scores tokens by the row of the position the classification head reads (`LayerContext.read`): [CLS]
for the BERT family and ModernBERT (`classifier_pooling="cls"`), the last real token for decoders (the token the
`*ForSequenceClassification` head reads; earlier rows cannot see later tokens under the causal mask), the mean of
the real tokens' rows for ModernBERT with `classifier_pooling="mean"`. Causal attention needs nothing else: its
probabilities above the diagonal are 0, so rollout and ALTI give no later token a share of an earlier one.

- Raw attention: the attention paid by the read position in one layer, averaged over heads.
- Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers", ACL): per layer
  average the heads, add the identity for the residual connection, renormalise the rows, and multiply the
  layers' matrices from the first to the last; the token scores are the read row of the product.
- ALTI (Ferrando, Gállego & Costa-jussà 2022, "Measuring the Mixing of Contextual Information in the
  Transformer", EMNLP; official code mt-upc/transformer-contributions): each layer's attention block,
  up to and including its first LayerNorm, is an affine map of the layer's input once the LayerNorm's
  standard deviation is frozen per token, so its output decomposes exactly into one transformed vector per
  input token, y_i = sum_j T_i(x_j) + L_i(b_O) + beta, with
  T_i(x_j) = g_i * centre(sum_h A^h_ij (x_j W_V^h + b_V^h) W_O^h + [i = j] x_j), g_i = gamma / sigma_i.
  Token j's contribution to token i is c_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1), normalised over j;
  the layers' contribution matrices are rolled out (multiplied, no identity added: the residual is already
  inside T) and the token scores are the read row of the last layer's product. `measure="alti_l2"` uses L2
  distances and norms instead; `measure="norm"` is the norm-based analysis of Kobayashi et al. (2021,
  "Incorporating Residual and Normalization Layers into Analysis of Masked Language Models", EMNLP):
  c_ij = ||T_i(x_j)||_2, normalised and rolled out the same way.
  Pre-norm layouts (the Llama-style decoders, ModernBERT; Ferrando, Gállego, Tsiamas & Costa-jussà 2023,
  "Explaining How Transformers Use Context to Build Predictions", ACL, which extends ALTI to such models):
  the norm before attention (LayerNorm or RMSNorm, with or without bias) sees token j alone, so no
  linearisation is needed: T_i(x_j) = sum_h A^h_ij v^h_j W_O^h + [i = j] x_j with v^h_j the value vector of
  norm(x_j) (bias included), y_i = x_i + the attention output (the residual stream the next block reads), and
  the remainder is b_O. Grouped-query attention enters through each query head's own (shared) value vectors.
  `std` has no effect there.

Efficiency of ALTI: heads are contracted in the same matrix product that applies the attention
(sum_h A^h_ij u^h_j for all i, j at once, u = values projected by W_O), so the heads x n x n x d tensor of
the official code never exists; layer by layer; instances are processed unpadded, grouped by length (length
bucketing makes most groups large), so padding never enters a normalisation; the n x n x d transformed
vectors are produced in tiles of query rows that stay cache-sized.

Specials: [CLS], [SEP] (RoBERTa's <s>, </s>) are scored like any token (attention to them is often large);
padding gets exactly 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from attexp.explain.base import Explainer, ExplainerConfig, Explanation, zero_padding
from attexp.models.encoder import Encoder, layer_index
from attexp.models.inputs import Batch
from attexp.models.layouts import INSIDE_MODEL_TYPES, Layer
from attexp.models.precision import accumulation_dtype
from attexp.registry import EXPLAINERS

_TILE_ELEMENTS = 1 << 20
"""Elements of one tile of transformed vectors [instances, n, rows, H] (4 MiB in float32, near cache size)."""


def rollout(matrices: Tensor) -> Tensor:
    """Cumulative products of per-layer row-stochastic matrices [B, L, T, T]: out[:, l] = M_l ... M_1 M_0."""
    products = [matrices[:, 0]]
    for index in range(1, matrices.shape[1]):
        products.append(torch.matmul(matrices[:, index], products[-1]))
    return torch.stack(products, dim=1)


def _pad_mask(attention_mask: Tensor) -> Tensor:
    """[B, T] -> [B, 1, T, T]: True where both the query and the key are real tokens."""
    real = attention_mask.bool()
    return (real[:, :, None] & real[:, None, :])[:, None]


class _InsideExplainer(Explainer):
    """Shared set-up: the encoder view of the model."""

    needs_attentions = True
    architectures = INSIDE_MODEL_TYPES

    def __init__(self, config: ExplainerConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]):
        super().__init__(config, model, tokenizer, upstream)
        self.encoder = Encoder(model)

    def _explanation(self, scores: Tensor, batch: Batch, extras: dict[str, Tensor] | None = None) -> Explanation:
        size = len(batch)
        scores = zero_padding(scores.float(), batch.attention_mask)
        return Explanation(
            attributions=scores, forward_passes=[1] * size, backward_passes=[0] * size, extras=extras or {}
        )


class RawAttentionConfig(ExplainerConfig):
    """Raw attention: the read position's attention in one layer ([CLS], or a decoder's last token), averaged
    over heads.

    layer: which layer (0-based; negative counts from the end; default -1, the last).
    """

    type: Literal["raw_attention"] = "raw_attention"
    layer: int = -1


@EXPLAINERS.register("raw_attention", RawAttentionConfig)
class RawAttention(_InsideExplainer):
    """Raw attention: mean over heads of the read row of one layer's attention probabilities.

    Scores are probabilities: each instance's scores sum to 1 over its tokens. Cost: 1 forward pass.
    """

    config: RawAttentionConfig

    def __init__(self, config: RawAttentionConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping):
        super().__init__(config, model, tokenizer, upstream)
        self.layer = layer_index(config.layer, self.encoder.num_layers, "raw_attention: layer")

    def explain(self, batch: Batch) -> Explanation:
        with torch.inference_mode():
            trace = self.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids, stop=self.layer + 1)
            read = trace.context.read  # [B, T]: the head's read weights over query positions
            scores = torch.einsum("bq,bqk->bk", read, trace.probs[self.layer].float().mean(dim=1))  # [B, T]
        return self._explanation(scores, batch)


class RolloutConfig(ExplainerConfig):
    """Attention rollout (Abnar & Zuidema 2020).

    return_matrices: also return the per-layer rollout matrices as extras["rollout"] [B, L, T, T] (row i of
    layer l: how much of token i at layer l's output comes from each input token; zero at padding).
    """

    type: Literal["rollout"] = "rollout"
    return_matrices: bool = False


@EXPLAINERS.register("rollout", RolloutConfig)
class Rollout(_InsideExplainer):
    """Attention rollout (Abnar & Zuidema 2020): read row of prod_l normalise(mean_h A_l + I).

    Scores sum to 1 over each instance's tokens. Cost: 1 forward pass.
    """

    config: RolloutConfig

    def explain(self, batch: Batch) -> Explanation:
        with torch.inference_mode():
            trace = self.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            width = batch.input_ids.shape[1]
            eye = torch.eye(width, device=batch.input_ids.device)
            # per layer: heads averaged, identity added, rows renormalised -> [B, L, T, T]
            mixed = torch.stack([probs.mean(dim=1) + eye for probs in trace.probs], dim=1)
            mixed = mixed / mixed.sum(dim=-1, keepdim=True)
            # padding rows would mix only with themselves; zero them so they never enter a product
            mixed = mixed * _pad_mask(batch.attention_mask)
            products = rollout(mixed)  # [B, L, T, T]
            scores = torch.einsum("bq,bqk->bk", trace.context.read, products[:, -1].float())
        extras = {"rollout": products} if self.config.return_matrices else {}
        return self._explanation(scores, batch, extras)


class ALTIConfig(ExplainerConfig):
    """ALTI (Ferrando et al. 2022) and its variants.

    measure: `alti` (L1 distances, the paper's), `alti_l2` (L2 distances and norms) or `norm` (Kobayashi et
    al. 2021: norms of the transformed vectors). std: the per-token standard deviation that linearises the
    LayerNorm; `layernorm` (default) is exactly the LayerNorm's own, sqrt(biased variance + eps), so the
    decomposition reproduces the LayerNorm output; `official` reproduces the official code, which uses the
    unbiased (n - 1) standard deviation and no eps (its `(x + eps).std(-1)` adds eps to the states, not the
    variance). return_matrices: also return the per-layer contribution matrices as extras["contributions"]
    [B, L, T, T] (rows over real tokens sum to 1; zero at padding).
    """

    type: Literal["alti"] = "alti"
    measure: Literal["alti", "alti_l2", "norm"] = "alti"
    std: Literal["layernorm", "official"] = "layernorm"
    return_matrices: bool = Field(False, description="return per-layer contribution matrices in extras")


def decompose(
    layer: Layer,
    inputs: Tensor,
    probs: Tensor,
    values: Tensor,
    std: Literal["layernorm", "official"] = "layernorm",
    pre_norm: bool = False,
) -> tuple[Tensor, Tensor]:
    """ALTI's decomposition of one layer's attention block for unpadded instances of one length n.

    inputs [G, n, H] (the layer's input), probs [G, h, n, n], values [G, h, n, d] (value vectors with their
    bias). Returns the transformed vectors T_i(x_j) [G, n, n, H] (query i, key j) and the remainder [G, n, H],
    so that sum_j T_i(x_j) + remainder = the block's output y: post-norm layouts, the first LayerNorm's output
    (remainder L_i(b_O) + beta); `pre_norm` layouts, the residual stream after attention (remainder b_O).
    """
    stats = _LayerStats(layer, inputs, probs, values, std, pre_norm)
    transformed = stats.mixed(slice(None), slice(None)).transpose(1, 2) * stats.scale[:, :, None, :]
    return transformed, stats.scale * stats.bias + stats.beta


class _LayerStats:
    """One layer's decomposition, shared by all tiles.

    Post-norm: centring is linear, so the centred transformed vectors are sum_h A^h_ij centre(u^h_j) +
    [i = j] centre(x_j) with u^h_j = v^h_j W_O^h, scaled by g_i afterwards. Pre-norm: the same sum without
    centring or scaling (scale 1, beta 0). Either way the residual enters as one more "head" whose attention is
    the identity, and the whole sum is one batched matrix product per tile, contracting the heads (h + 1 of
    them) directly.
    """

    def __init__(
        self, layer: Layer, inputs: Tensor, probs: Tensor, values: Tensor, std: str, pre_norm: bool = False
    ) -> None:
        groups, heads, n, head_size = values.shape
        hidden = inputs.shape[-1]
        # the decomposition and its distances in float32 for bf16/fp16 weights (`accumulation_dtype`)
        wide = accumulation_dtype(inputs.dtype)
        inputs, probs, values = inputs.to(wide), probs.to(wide), values.to(wide)
        weight = layer.output.weight.to(wide).view(hidden, heads, head_size)  # W_O: [H_out, h, d]
        bias = layer.output.bias.to(wide) if layer.output.bias is not None else inputs.new_zeros(hidden)
        projected = torch.einsum("ghjd,ehd->gjhe", values, weight)  # u^h_j: [G, n, h, H]
        parts = torch.cat([projected, inputs[:, :, None, :]], dim=2)  # [G, n, h + 1, H]
        eye = torch.eye(n, dtype=probs.dtype, device=probs.device).expand(groups, 1, n, n)
        self.weights = torch.cat([probs, eye], dim=1)  # [G, h + 1, n, n]
        context = torch.matmul(probs, values).transpose(1, 2).reshape(groups, n, heads * head_size)
        attended = torch.einsum("gnhd,ehd->gne", context.view(groups, n, heads, head_size), weight) + bias + inputs
        # attended [G, n, H]: the residual stream after attention
        if pre_norm:  # y_i = attended: nothing to linearise
            self.parts = parts
            self.scale = torch.ones_like(attended)
            self.output = attended
            self.bias, self.beta = bias, inputs.new_zeros(hidden)
            return
        self.parts = parts - parts.mean(dim=-1, keepdim=True)  # centred
        if std == "official":
            sigma = attended.std(dim=-1, keepdim=True)  # unbiased, no eps
        else:
            sigma = (attended.var(dim=-1, unbiased=False, keepdim=True) + layer.norm.eps).sqrt()
        gamma, beta = layer.norm.weight.to(wide), layer.norm.bias.to(wide)
        self.scale = gamma / sigma  # g_i = gamma / sigma_i: [G, n, H]
        self.output = self.scale * (attended - attended.mean(dim=-1, keepdim=True)) + beta  # y_i
        self.bias = bias - bias.mean()  # centre(b_O): [H]
        self.beta = beta

    def mixed(self, groups: slice, rows: slice) -> Tensor:
        """Centred, unscaled T_i(x_j) for the instances in `groups`, queries i in `rows`: [g, n_j, r_i, H]."""
        weights = self.weights[groups, :, rows, :].permute(0, 3, 2, 1)  # [g, n_j, r_i, h + 1]
        return torch.matmul(weights, self.parts[groups])  # [g, n_j, r_i, H]


def alti_contributions(
    layer: Layer,
    inputs: Tensor,
    probs: Tensor,
    values: Tensor,
    measure: Literal["alti", "alti_l2", "norm"] = "alti",
    std: Literal["layernorm", "official"] = "layernorm",
    pre_norm: bool = False,
) -> Tensor:
    """Row-normalised contribution matrix [G, n, n] (query i, key j) of one layer, for unpadded instances of one
    length n: inputs [G, n, H], probs [G, h, n, n], values [G, h, n, d]; `pre_norm` for pre-norm layouts."""
    stats = _LayerStats(layer, inputs, probs, values, std, pre_norm)
    count, n, hidden = inputs.shape
    p = 1 if measure == "alti" else 2
    # tiles of whole instances, or of query rows when one instance is larger than a tile
    rows = max(1, min(n, _TILE_ELEMENTS // (n * hidden)))
    per_tile = max(1, _TILE_ELEMENTS // (rows * n * hidden))
    result = torch.empty(count, n, n, dtype=stats.parts.dtype, device=inputs.device)
    for g in range(0, count, per_tile):
        groups = slice(g, g + per_tile)
        for r in range(0, n, rows):
            queries = slice(r, r + rows)
            vectors = stats.mixed(groups, queries)  # [g, n_j, r_i, H]
            scale = stats.scale[groups, None, queries]  # [g, 1, r_i, H]
            if measure == "norm":  # ||T_i(x_j)||_2
                tile = torch.linalg.vector_norm(vectors.mul_(scale), ord=2, dim=-1)
            else:  # max(0, ||y_i|| - ||y_i - T_i(x_j)||)
                output = stats.output[groups, None, queries]  # [g, 1, r_i, H]
                distance = torch.linalg.vector_norm(torch.addcmul(output, vectors, scale, value=-1, out=vectors), p, -1)
                tile = (torch.linalg.vector_norm(output, ord=p, dim=-1) - distance).clamp_min(0)
            result[groups, queries] = tile.transpose(1, 2)  # [g, r_i, n_j]
    return result / result.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(result.dtype).tiny)


@EXPLAINERS.register("alti", ALTIConfig)
class ALTI(_InsideExplainer):
    """ALTI (Ferrando et al. 2022): read row of the rolled-out per-layer token-to-token contributions.

    Precision: the decomposition, its distances and the rollout are taken in float32 for bfloat16 and float16
    weights (`accumulation_dtype`; the model's forward stays in its dtype). Measured against float32 weights in
    benchmarks/dtype_attributions.py.

    Scores sum to 1 over each instance's tokens. Cost: 1 forward pass (plus the decomposition, which is
    arithmetic on what that pass recorded).

    Parity with the official code (mt-upc/transformer-contributions): contributions, clipping at 0,
    normalisation (its `min_sum` scaling with the L1 norm of y_i) and rollout (its `compute_joint_attention`)
    follow it; it linearises the LayerNorm with the unbiased standard deviation and without eps, where the
    paper uses the LayerNorm's own: `std="official"` reproduces that.
    """

    config: ALTIConfig

    def explain(self, batch: Batch) -> Explanation:
        cfg = self.config
        with torch.inference_mode():
            trace = self.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids, values=True)
            size, width = batch.input_ids.shape
            lengths = batch.attention_mask.sum(dim=1)
            scores = torch.zeros(size, width, device=batch.input_ids.device)
            matrices = (
                torch.zeros(size, self.encoder.num_layers, width, width, device=scores.device)
                if cfg.return_matrices
                else None
            )
            for n in lengths.unique().tolist():
                group = (lengths == n).nonzero().flatten()  # instances of length n, processed unpadded
                per_layer = [
                    alti_contributions(
                        layer,
                        trace.inputs[index][group, :n],
                        trace.probs[index][group, :, :n, :n],
                        trace.values[index][group, :, :n],
                        cfg.measure,
                        cfg.std,
                        self.encoder.layout.pre_norm,
                    )
                    for index, layer in enumerate(self.encoder.layers)
                ]
                stacked = torch.stack(per_layer, dim=1)  # [G, L, n, n]
                # float32 (float64 for a float64 model) until here, whatever the weights; the scores are float32
                # like every explainer's
                read = trace.context.read[group, :n].to(stacked.dtype)  # [G, n]: the head's read weights
                scores[group, :n] = torch.einsum("gq,gqk->gk", read, rollout(stacked)[:, -1]).to(scores.dtype)
                if matrices is not None:
                    matrices[group, :, :n, :n] = stacked.to(matrices.dtype)
        extras = {"contributions": matrices} if matrices is not None else {}
        return self._explanation(scores, batch, extras)
