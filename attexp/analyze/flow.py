"""IBA's per-layer view: the information flow through the layers as a layer x token heatmap (Jiang, Tang, Xin &
Lin 2020, "Inserting Information Bottlenecks for Attribution in Transformers", Findings of EMNLP, Sec. 4 and
their per-layer figures; code bazingagin/IBA).

Why: one bottleneck shows which tokens a single layer needs; a bottleneck after each layer in turn shows where
in the network each token's information is still needed for the prediction, e.g. that the sentiment words
keep their information up to the top while function words lose it early. Each layer's row is the token scores
of the `iba` explainer (`attexp.explain.bottleneck`, unchanged) with its bottleneck after that layer: the
per-token capacity, min-max normalised within the row (`scores`), and the raw capacity in nats (`capacity`,
comparable across layers). The layer_flow job writes both per instance (`flow.jsonl`); `attexp.visualize.flow`
draws them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from attexp.explain.bottleneck import IBAConfig, InformationBottleneck
from attexp.models.encoder import Encoder
from attexp.models.inputs import Batch


def layer_flow(
    model: torch.nn.Module, tokenizer: Any, batch: Batch, settings: IBAConfig, upstream: Mapping[str, Path]
) -> tuple[Tensor, Tensor]:
    """Per-layer IBA of `batch`: scores and capacities, both [B, L, T] (0 at padding).

    `settings.layer` is ignored: layer l of the result has its bottleneck after layer l, l = 0..L-1.
    """
    layers = Encoder(model).num_layers
    scores, capacity = [], []
    for layer in range(layers):
        settings_here = settings.model_copy(update={"layer": layer})  # every layer, the last one too: no warning
        explainer = InformationBottleneck(settings_here, model, tokenizer, upstream, warn_last_layer=False)
        with torch.enable_grad():
            explanation = explainer.explain(batch)
        scores.append(explanation.attributions.detach())  # [B, T]
        capacity.append(explanation.extras["capacity"].detach())  # [B, T]
    return torch.stack(scores, dim=1), torch.stack(capacity, dim=1)
