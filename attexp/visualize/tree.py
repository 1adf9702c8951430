"""Drawing attribution trees (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution", AAAI, Sec. 4.2): the
layout of a tree record as inline SVG coordinates, and the section an instance page shows.

A tree record is what the attribution_tree job writes per instance (`trees.jsonl`, built by
`attexp.analyze.trees`): `root` (a token position), `edges` (`layer, parent, child, weight`, in the order
they were added) and `levels` (position -> level; the root on top). This module reads that record only; it
computes no attribution.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def layout(
    tree: Any, tokens: list[str], width: float = 900.0, row: float = 70.0, margin: float = 50.0, radius: float = 10.0
) -> dict:
    """Coordinates for drawing: nodes (in the tree) along x by position, along y by level (root on top).

    `tree`: a tree record (see the module docstring), or an object with `to_json(tokens)` that gives one.

    Returns {"width", "height", "radius", "nodes": [{"x", "y", "token", "position", "root"}], "edges": [{"x1", "y1",
    "x2", "y2", "layer", "weight", "opacity"}]} with plain strings and numbers (the template escapes tokens).
    """
    record = _record(tree, tokens)
    levels_of = {int(k): int(v) for k, v in record["levels"].items()}
    root = int(record["root"])
    positions = sorted(levels_of)
    top = max(levels_of.values()) if levels_of else 0
    bottom = min(levels_of.values()) if levels_of else 0
    step = (width - 2 * margin) / max(len(positions) - 1, 1)
    x_of = {p: margin + k * step for k, p in enumerate(positions)}
    y_of = {p: margin + (top - levels_of[p]) * row for p in positions}
    nodes = [
        {"x": round(x_of[p], 1), "y": round(y_of[p], 1), "token": tokens[p], "position": p, "root": p == root}
        for p in positions
    ]
    edges = []
    for e in record["edges"]:  # from the parent's centre to the rim of the child's circle, where the arrow head sits
        parent, child, weight = int(e["parent"]), int(e["child"]), float(e["weight"])
        x1, y1, x2, y2 = x_of[parent], y_of[parent], x_of[child], y_of[child]
        length = max(float(np.hypot(x2 - x1, y2 - y1)), 1e-9)
        x2, y2 = x2 - (x2 - x1) * radius / length, y2 - (y2 - y1) * radius / length
        edges.append(
            {
                "x1": round(x1, 1),
                "y1": round(y1, 1),
                "x2": round(x2, 1),
                "y2": round(y2, 1),
                "layer": int(e["layer"]),
                "weight": round(weight, 4),
                "opacity": round(min(max(weight, 0.2), 1.0), 3),
                "parent": tokens[parent],
                "child": tokens[child],
            }
        )
    levels = [{"level": level, "y": round(margin + (top - level) * row, 1)} for level in range(top, bottom - 1, -1)]
    return {
        "width": width,
        "radius": radius,
        "height": round(2 * margin + (top - bottom) * row + 20, 1),
        "nodes": nodes,
        "edges": edges,
        "levels": levels,
    }


def section(tree: Any, tokens: list[str], threshold: float) -> dict[str, Any]:
    """What the `_tree.html.j2` partial draws: the layout, the edges with their tokens and the threshold the tree
    was built with. `tree`: a tree record or an object with `to_json(tokens)`."""
    record = _record(tree, tokens)
    edges = [
        {**e, "parent_token": tokens[int(e["parent"])], "child_token": tokens[int(e["child"])]} for e in record["edges"]
    ]
    return {"kind": "tree", "layout": layout(record, tokens), "edges": edges, "threshold": threshold}


def _record(tree: Any, tokens: list[str]) -> dict[str, Any]:
    return tree.to_json(tokens) if hasattr(tree, "to_json") else tree
