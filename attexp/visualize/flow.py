"""IBA's per-layer view: the information flow through the layers as a layer x token heatmap (Jiang, Tang, Xin &
Lin 2020, "Inserting Information Bottlenecks for Attribution in Transformers", Findings of EMNLP, Sec. 4 and
their per-layer figures; code bazingagin/IBA).

Why: one bottleneck shows which tokens a single layer needs; a bottleneck after each layer in turn shows where
in the network each token's information is still needed for the prediction, e.g. that the sentiment words
keep their information up to the top while function words lose it early. Each layer's row is the token scores
of the `iba` explainer (`attexp.explain.bottleneck`, unchanged) with its bottleneck after that layer: the
per-token capacity, min-max normalised within the row (`scores`), and the raw capacity in nats (`capacity`,
comparable across layers).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
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
        explainer = InformationBottleneck(settings.model_copy(update={"layer": layer}), model, tokenizer, upstream)
        with torch.enable_grad():
            explanation = explainer.explain(batch)
        scores.append(explanation.attributions.detach())  # [B, T]
        capacity.append(explanation.extras["capacity"].detach())  # [B, T]
    return torch.stack(scores, dim=1), torch.stack(capacity, dim=1)


def flow_plot(values: np.ndarray, tokens: list[str], path: Path, title: str, label: str) -> Path:
    """A PNG heatmap of `values` [L, T]: layers as rows (the last on top), tokens as columns."""
    from matplotlib.figure import Figure

    from attexp.evaluate.plots import _label, _save

    layers, width = values.shape
    fig = Figure(figsize=(max(4.0, 0.45 * width + 1.5), 0.45 * layers + 1.6))
    ax = fig.subplots()
    image = ax.imshow(values[::-1], aspect="auto", cmap="Reds", vmin=0)
    ax.set_xticks(range(width), [_label(t) for t in tokens], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(layers), [str(layers - 1 - k) for k in range(layers)])
    ax.set_ylabel("bottleneck after layer")
    ax.set_title(_label(title), fontsize=9)
    fig.colorbar(image, ax=ax, label=_label(label), fraction=0.03)
    return _save(fig, path)


def heatmap_cells(values: np.ndarray) -> list[list[dict[str, Any]]]:
    """Rows (last layer first) of cells {"value", "style"} for an HTML table: red with opacity value / row max."""
    rows = []
    for layer in range(len(values) - 1, -1, -1):
        row = values[layer]
        scale = float(np.max(np.abs(row))) if row.size else 0.0
        cells = []
        for value in row:
            alpha = min(abs(float(value)) / scale, 1.0) if scale > 0 else 0.0
            text = "#fff" if alpha > 0.6 else "#111"
            cells.append(
                {"value": float(value), "style": f"background-color: rgba(215, 48, 39, {alpha:.3f}); color: {text}"}
            )
        rows.append({"layer": layer, "cells": cells})
    return rows


def section(values: np.ndarray, tokens: list[str], quantity: str, png: Path | None = None) -> dict[str, Any]:
    """What the `_flow.html.j2` partial draws: the table rows of values [L, T] and, given a PNG, the plot inline."""
    plot = "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii") if png else None
    return {"kind": "flow", "tokens": list(tokens), "rows": heatmap_cells(values), "quantity": quantity, "plot": plot}
