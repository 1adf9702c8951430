"""Attribution trees (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution: Interpreting Information
Interactions Inside Transformer", AAAI, Sec. 4.2, Algorithm 1; code YRdddream/attattr, `attribution_tree.py`).

Why: an instance's Self-Attention Attribution maps say which token pairs (i attends to j) carry the prediction
in each layer; linking the strong ones layer by layer, from the top down, shows how the model composes the
tokens into its decision: a tree whose root is the token that gathers most, whose children are what it
gathers from, and so on down the layers.

`build_tree(maps)` takes one instance's maps summed over heads, [L, T, T] (row i = the attending token), for
any number of layers L, and follows the official code:

1. Per layer, the map is divided by |max| over its non-[CLS] rows (rows 1..T-1) and entries below
   `threshold` (0.4) are dropped.
2. The root: the maps summed over layers, divided by |max|, with the diagonal, the negative entries and row 0
   ([CLS]) zeroed; the token with the largest row sum (the [CLS] position never).
3. Layer L-2 (the official code starts one below the last layer, whose non-[CLS] rows the classifier never
   reads; a 1-layer model starts at its only layer): an edge root -> j for every other j above the threshold.
4. Layers L-3 down to 0: every edge i -> j above the threshold (i not [CLS]) where i is already in the tree
   and j is new, or i is a leaf and j is new; i then becomes an inner node. Edges between two nodes already
   in the tree, or into an inner node, are skipped, so every token enters the tree once.

A node's level (for drawing) is the layer of the edge that brought it in (the root: one above its first
layer); edges are returned as `Edge(layer, parent, child, weight)` with the normalised weight. `Tree.to_json`
is the record the attribution_tree job writes (`trees.jsonl`); `attexp.visualize.tree` draws it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

THRESHOLD = 0.4

ABSENT, LEAF, INNER = -1, 0, 1


@dataclass(frozen=True)
class Edge:
    """In layer `layer`, token `parent` attends to token `child` with normalised attribution `weight`."""

    layer: int
    parent: int
    child: int
    weight: float


@dataclass
class Tree:
    """root: the root token's position; edges in the order they were added; levels: position -> level."""

    root: int
    edges: list[Edge]
    levels: dict[int, int]

    def to_json(self, tokens: list[str] | None = None) -> dict[str, Any]:
        """A JSON-ready dict: root, edges (with their tokens when given) and node levels."""
        edges = []
        for edge in self.edges:
            item = asdict(edge)
            if tokens is not None:
                item.update(parent_token=tokens[edge.parent], child_token=tokens[edge.child])
            edges.append(item)
        return {"root": self.root, "edges": edges, "levels": {str(k): v for k, v in sorted(self.levels.items())}}


def normalise_layers(maps: np.ndarray) -> np.ndarray:
    """Each layer of maps [L, T, T] divided by |max| over its non-[CLS] rows (step 1, before the threshold)."""
    maps = np.asarray(maps, dtype=np.float64)
    rows = maps[:, 1:, :] if maps.shape[1] > 1 else maps
    scale = np.abs(rows.reshape(len(maps), -1).max(axis=1))  # [L]
    return maps / np.where(scale > 0, scale, 1.0)[:, None, None]


def find_root(maps: np.ndarray) -> int:
    """The root token (step 2) of maps [L, T, T]."""
    combined = np.asarray(maps, dtype=np.float64).sum(axis=0)  # [T, T]
    peak = abs(combined.max())
    combined = combined / (peak if peak > 0 else 1.0)
    combined = combined * (1 - np.eye(len(combined))) * (combined > 0)
    combined[0] = 0
    order = np.argsort(-combined.sum(axis=-1), kind="stable")  # ties: the earlier position
    return int(order[0]) if order[0] != 0 or len(order) == 1 else int(order[1])


def build_tree(maps: np.ndarray, threshold: float = THRESHOLD) -> Tree:
    """The attribution tree of one instance's head-summed maps [L, T, T] (see the module docstring)."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[1] != maps.shape[2]:
        raise ValueError(f"build_tree expects maps of shape [layers, T, T], got {maps.shape}")
    layers, width = maps.shape[0], maps.shape[1]
    proportion = normalise_layers(maps)
    strong = proportion > threshold  # the official code zeroes entries <= threshold, then skips those < threshold
    state = [ABSENT] * width
    root = find_root(maps)
    first = max(layers - 2, 0)
    levels = {root: first + 1}
    state[root] = LEAF
    edges: list[Edge] = []
    for j in range(width):
        if j != root and proportion[first, root, j] > threshold:
            state[j], state[root] = LEAF, INNER
            levels[j] = first
            edges.append(Edge(first, root, j, float(proportion[first, root, j])))
    present = {(e.parent, e.child) for e in edges}
    for layer in range(first - 1, -1, -1):
        for i in range(1, width):
            for j in range(width):
                if not strong[layer, i, j] or state[i] == ABSENT or state[j] == INNER or (i, j) in present:
                    continue
                if state[j] == LEAF:  # both already in the tree (a leaf, or an inner node with a leaf)
                    continue
                state[i], state[j] = INNER, LEAF
                levels[j] = layer
                edges.append(Edge(layer, i, j, float(proportion[layer, i, j])))
                present.add((i, j))
    return Tree(root=root, edges=edges, levels=levels)


def tree_from_json(record: dict[str, Any]) -> Tree:
    """A Tree back from its `to_json` form (e.g. a line of an attribution_tree job's trees.jsonl)."""
    edges = [Edge(e["layer"], e["parent"], e["child"], e["weight"]) for e in record["edges"]]
    return Tree(root=int(record["root"]), edges=edges, levels={int(k): int(v) for k, v in record["levels"].items()})
