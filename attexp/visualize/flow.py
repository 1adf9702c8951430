"""Drawing IBA's per-layer view (Jiang, Tang, Xin & Lin 2020, "Inserting Information Bottlenecks for Attribution in
Transformers", Findings of EMNLP, Sec. 4): a layer x token heatmap of a layer_flow record (`flow.jsonl`, made by
`attexp.analyze.flow`), as a PNG and as an HTML table. Layers are rows, the last on top; each row is that
layer's per-token scores (min-max normalised capacity) or capacities in nats.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np


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
