"""Information Bottleneck Attribution for transformers (Jiang, Tang, Xin & Lin 2020, "Inserting Information
Bottlenecks for Attribution in Transformers", Findings of EMNLP; official code bazingagin/IBA), after the
per-sample bottleneck of Schulz, Sixt, Tombari & Landgraf (2020, "Restricting the Flow: Information
Bottlenecks for Attribution", ICLR).

A bottleneck replaces the output R of encoder layer l with Z = lambda * R + (1 - lambda) * eps, eps drawn
from a prior N(mu, sigma^2) of that layer's output, lambda = sigmoid(alpha) per token and hidden unit. The
mask alpha (initialised at 5, so almost everything passes) is optimised for a few Adam steps on several noise
samples to keep the target class while letting as little information through as possible:
loss = cross-entropy(target) + beta * mean capacity, where the capacity of an element is
KL(N(lambda r, (1 - lambda)^2) || N(0, 1)) in the standardised space r = (R - mu) / sigma. The token scores
are the capacities summed over the hidden units, min-max normalised per instance.

The model's weights are frozen: only alpha receives gradients (`torch.autograd.grad` with respect to alpha
alone, so no parameter ever gets a .grad) and the model is unchanged afterwards (tested). Prefix caching:
R does not depend on alpha, so the embeddings and layers 0..l run once per batch, and only the layers above
l (the last one at the [CLS] position only, the one the classifier reads) run in the optimisation loop, on
all instances and noise samples at once. `prefix_cache=False` runs the whole model at every step, as the
original does (same noise, same result; benchmarks/inside_explainers.py times both).

Prior (`prior`): `dataset` (default, the papers' definition) estimates a per-hidden-unit mean and standard
deviation of layer l's output over real tokens of training sentences: those of the download job named by
`prior_data` (its `prior_split`, first `prior_size` rows; estimated once when the explainer is built), or,
without `prior_data`, over the real tokens of the batch being explained (then an instance's scores depend on
its batch-mates; name a download job for dataset-level, batch-independent scores). `official` reproduces the
official code, which differs from its paper: its estimator is fed only the instance being explained, so the
prior mean is that instance's own hidden states, position by position, and the prior standard deviation is
the estimator's floor, sqrt(1e-5); and it reads those hidden states at the *input* of layer l while the
bottleneck sits at its output.

As in the official code (and Schulz et al.'s), the capacity returned is the one of the last optimisation
step's forward pass, the noise standard deviation is clipped to exp(+-5) when sampling, the batch of noise
samples shares one mask, and padding is excluded: capacity is averaged over real tokens only (the originals
explain one unpadded instance at a time). Batching is exact: every instance's loss involves only its own mask,
and Adam updates element by element.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from attexp.config.schema import Upstream
from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import Explainer, ExplainerConfig, Explanation, zero_padding
from attexp.explain.captum_base import instance_groups
from attexp.io.artifacts import MANIFEST, read_manifest, verify_file
from attexp.io.files import read_jsonl
from attexp.models.encoder import Encoder, layer_index
from attexp.models.inputs import Batch, batch_pad_id, length_sorted_batches, pad_features, tokenize_rows
from attexp.models.layouts import INSIDE_MODEL_TYPES
from attexp.registry import EXPLAINERS

log = logging.getLogger(__name__)

OFFICIAL_STD = 1e-5**0.5
"""The official estimator's standard deviation after one sample: sqrt(max(0, 1e-5) / 1)."""


def default_layer(num_layers: int) -> int:
    """IBA's default layer for a model of `num_layers` layers: two thirds of the way up, round(8 L / 12), as the
    paper's layer 8 of BERT-base's 12, but never the last layer when there is another: after the last layer only
    the token the head reads ([CLS], or a decoder's last token) reaches it, so the other tokens' bottlenecks could
    not depend on the class.
    2 layers -> 0, 4 -> 2, 6 -> 4, 12 -> 8 (a 1-layer model has only its last layer: 0)."""
    return max(0, min(round(8 * num_layers / 12), num_layers - 2))


class IBAConfig(ExplainerConfig):
    """IBA for transformers (Jiang et al. 2020).

    layer: the bottleneck sits on this encoder layer's output (0-based, negative from the end); None (default)
    puts it two thirds of the way up as the paper's default does for BERT-base (layer 8 of 12), never on the
    last layer (`default_layer`): 4 of MiniLM's 6 layers, 0 of a 2-layer model. The last layer asked for
    explicitly is run, with a warning. beta: weight of the capacity term (1e-5). steps: Adam
    steps (10). lr: Adam learning rate (1). samples: noise samples per step (10). init: initial alpha (5).
    prior: `dataset` or `official` (module docstring). prior_data: a download job whose `prior_split` rows
    (first `prior_size`, tokenised up to `prior_max_length` tokens) estimate the dataset prior; None: the
    batch being explained. prefix_cache: run the layers up to l once per batch (False: the whole model at
    every step, as the original; same result, slower).
    """

    type: Literal["iba"] = "iba"
    layer: int | None = None
    beta: float = Field(1e-5, ge=0)
    steps: int = Field(10, ge=1)
    lr: float = Field(1.0, gt=0)
    samples: int = Field(10, ge=1)
    init: float = 5.0
    prior: Literal["dataset", "official"] = "dataset"
    prior_data: Annotated[str | None, Upstream(("download",))] = None
    prior_split: Literal["train", "validation", "test"] = "train"
    prior_size: int = Field(1000, ge=1)
    prior_max_length: int = Field(128, ge=8)
    prefix_cache: bool = True

    @model_validator(mode="after")
    def _prior_data_for_dataset_prior(self) -> IBAConfig:
        if self.prior == "official" and self.prior_data is not None:
            raise ConfigError(
                f"iba: prior='official' uses each instance's own hidden states, so prior_data="
                f"{self.prior_data!r} would be ignored; remove prior_data or use prior='dataset'."
            )
        return self


def _moments(hidden: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Count, sum and sum of squares (float64) over real tokens: hidden [B, T, H] -> [], [H], [H]."""
    real = hidden[attention_mask.bool()].double()  # [tokens, H]
    return torch.tensor(real.shape[0], dtype=torch.float64), real.sum(dim=0), real.square().sum(dim=0)


def _mean_std(count: Tensor, total: Tensor, squares: Tensor) -> tuple[Tensor, Tensor]:
    """Per-unit mean and standard deviation [H] (floored at sqrt(1e-5) like the official estimator)."""
    mean = total / count
    variance = (squares / count - mean.square()).clamp_min(1e-5)
    return mean.float(), variance.sqrt().float()


@EXPLAINERS.register("iba", IBAConfig)
class InformationBottleneck(Explainer):
    """IBA (Jiang et al. 2020): capacity of a per-token bottleneck after encoder layer l, min-max normalised.

    Specials: [CLS]/[SEP] pass through the bottleneck like any token and are scored by their capacity;
    padding gets exactly 0. Scores lie in [0, 1] (min-max over each instance's tokens); the raw per-token
    capacities (nats, >= 0) are in extras["capacity"]. Cost per instance: 1 forward pass up to layer l, then
    steps x samples forward and backward passes (with prefix caching only through the layers above l).
    """

    needs_gradients = True
    architectures = INSIDE_MODEL_TYPES
    deterministic = False  # the noise samples come from torch's RNG
    config: IBAConfig

    def __init__(
        self,
        config: IBAConfig,
        model: torch.nn.Module,
        tokenizer: Any,
        upstream: Mapping[str, Path],
        *,
        warn_last_layer: bool = True,
    ):
        super().__init__(config, model, tokenizer, upstream)
        self.encoder = Encoder(model)
        count = self.encoder.num_layers
        if config.layer is None:
            self.layer = default_layer(count)
        else:
            self.layer = layer_index(config.layer, count, "iba: layer")
        if self.layer == count - 1 and warn_last_layer:
            log.warning(
                "iba: the bottleneck sits after the last layer (%d of %d). The head reads one token there ([CLS], "
                "or a decoder's last token), so every other token's capacity does not depend on the explained class: "
                "the heatmap shows nothing about the prediction. Pick a lower layer (default: %d).",
                self.layer,
                count,
                default_layer(count),
            )
        self.prompt: Callable[[Batch], Batch] | None = None  # set by `attexp.explain.prompted` (module docstring)
        self._prior: tuple[Tensor, Tensor] | None = None
        if config.prior == "dataset" and config.prior_data is not None:
            self.upstream_dir(config.prior_data, "prior_data")  # named and given: checked now, read at first use

    @property
    def prior(self) -> tuple[Tensor, Tensor] | None:
        """The dataset prior (mean, std [H]) from `prior_data`, estimated at first use; None without `prior_data`."""
        if self._prior is None and self.config.prior == "dataset" and self.config.prior_data is not None:
            self._prior = self._dataset_prior()
        return self._prior

    def _dataset_prior(self) -> tuple[Tensor, Tensor]:
        """Mean and std [H] of layer l's output over real tokens of the prior data rows (through `prompt` where set:
        a prompted classifier's template around each text, as the explained texts have it)."""
        cfg = self.config
        folder = self.upstream_dir(cfg.prior_data, "prior_data")
        path = folder / f"{cfg.prior_split}.jsonl"
        if (folder / MANIFEST).is_file():  # the file its job finished with, not a cut or edited one
            verify_file(folder, path.name, read_manifest(folder / MANIFEST))
        rows = read_jsonl(path, required=("text",))[: cfg.prior_size]
        if not rows:
            raise AttexpError(f"iba: {path} has no rows to estimate the prior from; use another prior_split.")
        features = tokenize_rows(self.tokenizer, rows, cfg.prior_max_length)
        sums = None
        with torch.no_grad():
            for chosen in length_sorted_batches([len(f["input_ids"]) for f in features], 32):  # little padding
                ids, mask, types = pad_features([features[i] for i in chosen], batch_pad_id(self.model, self.tokenizer))
                ids, mask = ids.to(self.device), mask.to(self.device)
                if self.prompt is not None:
                    whole = self.prompt(Batch(ids, mask, None, torch.zeros(len(ids), dtype=torch.long)))
                    ids, mask, types = whole.input_ids, whole.attention_mask, None
                hidden, _ = self.bottleneck_input(ids, mask, None if types is None else types.to(self.device))
                moments = _moments(hidden, mask)
                sums = moments if sums is None else tuple(a + b for a, b in zip(sums, moments, strict=True))
        return _mean_std(*sums)

    def bottleneck_input(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Layer l's output R and its input (the official prior's mean), both [B, T, H]."""
        encoder = self.encoder
        hidden = encoder.embed(input_ids, token_type_ids)
        context = encoder.context(attention_mask, hidden.dtype, input_ids)
        with encoder.attention():
            below = encoder.run(hidden, context, 0, self.layer)
            return encoder.run(below, context, self.layer, self.layer + 1), below

    def explain(self, batch: Batch) -> Explanation:
        if torch.is_inference_mode_enabled():
            raise AttexpError("iba needs autograd, but explain() was called under torch.inference_mode().")
        cfg = self.config
        with torch.no_grad():
            hidden, below = self.bottleneck_input(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            if cfg.prior == "official":
                mean, std = below, torch.full_like(below, OFFICIAL_STD)
            else:
                batch_prior = self.prior is None  # no prior_data: the batch's own tokens
                mean, std = _mean_std(*_moments(hidden, batch.attention_mask)) if batch_prior else self.prior
            mean, std = mean.expand_as(hidden), std.expand_as(hidden)  # [B, T, H] views
            standardised = (hidden - mean) / std  # r: [B, T, H]
        # the job's memory budget: groups of instances whose noise samples fit one pass, one instance at least (each
        # instance's mask is trained on its own, so groups give the same optimisation; the noise is drawn per group)
        width = batch.input_ids.shape[1]
        budget = self.max_tokens_per_pass
        groups = instance_groups(len(batch), cfg.samples, width, budget) if budget else []
        if len(groups) > 1:
            parts = [self.optimise(batch.subset(g), standardised[g], mean[g], std[g]) for g in groups]
            capacity = torch.cat(parts)  # [B, T, H]
        else:
            capacity = self.optimise(batch, standardised, mean, std)  # [B, T, H]
        real = batch.attention_mask.bool()
        per_token = zero_padding(capacity.sum(dim=-1), batch.attention_mask)  # [B, T]
        low = per_token.masked_fill(~real, float("inf")).amin(dim=1, keepdim=True)
        high = per_token.masked_fill(~real, float("-inf")).amax(dim=1, keepdim=True)
        scores = (per_token - low) / (high - low).clamp_min(torch.finfo(per_token.dtype).tiny)
        size = len(batch)
        passes = cfg.steps * cfg.samples
        return Explanation(
            attributions=zero_padding(scores, batch.attention_mask),
            forward_passes=[1 + passes] * size,
            backward_passes=[passes] * size,
            extras={"capacity": per_token},
        )

    def optimise(self, batch: Batch, standardised: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """Train the mask; return the per-element capacity [B, T, H] of the last step (0 at padding).

        standardised: r = (R - mean) / std [B, T, H]; mean, std: the prior, [B, T, H] (broadcast views).
        """
        cfg = self.config
        size, width, hidden_size = standardised.shape
        samples = cfg.samples
        real = batch.attention_mask.bool()
        tokens = real.sum(dim=1) * hidden_size  # elements the capacity is averaged over: [B]
        alpha = torch.full_like(standardised, cfg.init, requires_grad=True)
        optimizer = torch.optim.Adam([alpha], lr=cfg.lr)
        instance = torch.arange(size, device=alpha.device).repeat_interleave(samples)  # [B * S], instance-major
        targets = batch.targets[instance]
        capacity = torch.zeros_like(standardised)
        for _ in range(cfg.steps):
            keep = torch.sigmoid(alpha)  # lambda: [B, T, H]
            log_var = 2 * F.logsigmoid(-alpha)  # log (1 - lambda)^2
            capacity = -0.5 * (1 + log_var - (keep * standardised).square() - log_var.exp())  # KL to N(0, 1)
            noise = torch.randn(size, samples, width, hidden_size, device=alpha.device, dtype=alpha.dtype)
            noise_std = (log_var.clamp(-10, 10) / 2).exp()
            if cfg.prefix_cache:
                signal = standardised[:, None]  # [B, 1, T, H]
            else:  # the original recomputes R with the whole model below the bottleneck at every step
                hidden, _ = self.bottleneck_input(
                    batch.input_ids[instance],
                    batch.attention_mask[instance],
                    None if batch.token_type_ids is None else batch.token_type_ids[instance],
                )
                signal = ((hidden - mean[instance]) / std[instance]).view(size, samples, width, hidden_size)
            sampled = (keep[:, None] * signal + noise_std[:, None] * noise) * std[:, None] + mean[:, None]
            logits = self.upper(batch, sampled.flatten(0, 1), instance)  # [B * S, C]
            cross_entropy = F.cross_entropy(logits.float(), targets, reduction="none").view(size, samples).mean(1)
            information = (capacity * real[..., None]).sum(dim=(1, 2)) / tokens  # [B]
            loss = (cross_entropy + cfg.beta * information).sum()  # instances do not interact
            (alpha.grad,) = torch.autograd.grad(loss, alpha)
            optimizer.step()
        return (capacity * real[..., None]).detach()

    def upper(self, batch: Batch, bottleneck: Tensor, instance: Tensor) -> Tensor:
        """Logits [rows, C] from layer l's (bottlenecked) output `bottleneck` [rows, T, H] of instances
        `instance` [rows]: the layers above l, the last one only where the head reads (`Encoder.read_last`), and
        the head."""
        encoder, last = self.encoder, self.encoder.num_layers - 1
        context = encoder.context(batch.attention_mask[instance], bottleneck.dtype, batch.input_ids[instance])
        if not self.config.prefix_cache:  # the original: the full layers
            with encoder.attention():
                return encoder.classify(encoder.run(bottleneck, context, self.layer + 1), context)
        if self.layer == last:
            return encoder.classify(bottleneck, context)
        with encoder.attention():
            hidden = encoder.run(bottleneck, context, self.layer + 1, last)
        return encoder.head(encoder.read_last(hidden, context))
