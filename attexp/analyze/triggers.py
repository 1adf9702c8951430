"""Adversarial triggers from attribution patterns (Hao, Dong, Wei & Xu 2021, "Self-Attention Attribution:
Interpreting Information Interactions Inside Transformer", AAAI, Sec. 4.3; code YRdddream/attattr,
`run_adver_connection.py` and `run_adver_evaluate.py`).

Why: the strongest attention edges of an instance (by Self-Attention Attribution) are the token interactions
the model leans on; inserting those tokens into other inputs, at the same relative positions, is an attack
that needs no gradient of the victim input. The steps, as the official code does them:

1. Pattern extraction (`extract_pattern`), per source instance (the first 500 training instances by default,
   explaining the predicted class): the head whose attribution map holds the largest entry over all layers
   and heads (ties: the lower layer, then the lower head); in that map the largest entry (i, j) and the second
   largest; the pattern is the tokens at those positions and its score the sum of the two entries.
2. Patterns are sorted by score (descending); those below `threshold` (0.02) are dropped.
3. A trigger (`Trigger.from_pattern`) is the pattern's positions without the specials ([CLS], [SEP], ...):
   those of the top edge only when the second entry is less than `ratio` (0.2) times the first, else of both
   edges (`both=True` always takes both, the official `--if_all`). Each position becomes (segment, relative
   position) with relative position = (offset in its segment + 1) / segment length; segments are the runs of
   content tokens between specials (one for a single text, two for a pair).
4. Insertion (`Trigger.insert`) into every evaluation instance: per segment, with n its length and c the
   number of trigger tokens for it, each token (in position order) goes to index round((n + c) * relative
   position) of the growing segment (Python's round, half to even, as the official code), one further when
   it equals the previous index. Inputs longer than `max_length` afterwards lose tokens from the end of their
   longest segment. Segment ids follow the segment.
5. Accuracy per gold class before and after, and the drop (before - after) per class; a trigger's `drop` is
   its largest per-class drop (a sentiment trigger attacks one class), `mean_drop` the mean over classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def segments(ids: Sequence[int], specials: set[int]) -> list[tuple[int, int]]:
    """The runs of content tokens of `ids`, as (start, stop) index pairs in order."""
    runs, start = [], None
    for position, token in enumerate(ids):
        if int(token) in specials:
            if start is not None:
                runs.append((start, position))
                start = None
        elif start is None:
            start = position
    if start is not None:
        runs.append((start, len(ids)))
    return runs


def extract_pattern(maps: Tensor, length: int) -> dict:
    """The strongest edge and its second of one instance's maps [L, heads, T, T] over its first `length` tokens.

    Returns {"layer", "head", "scores": [top, second], "top1": [i, j], "top2": [i, j]}.
    """
    real = maps[:, :, :length, :length].detach().double().cpu()  # [L, heads, n, n]
    layers, heads = real.shape[:2]
    best = real.flatten(2).amax(dim=-1).flatten()  # [L * heads]
    chosen = int(torch.nonzero(best == best.max())[0, 0])  # ties: first in (layer, head) order
    layer, head = chosen // heads, chosen % heads
    values, positions = torch.sort(real[layer, head].flatten(), descending=True, stable=True)
    first, second = int(positions[0]), int(positions[1]) if positions.numel() > 1 else int(positions[0])
    return {
        "layer": layer,
        "head": head,
        "scores": [float(values[0]), float(values[1] if values.numel() > 1 else values[0])],
        "top1": [first // length, first % length],
        "top2": [second // length, second % length],
    }


@dataclass(frozen=True)
class Trigger:
    """Tokens to insert: `token_ids`, each with its `segment` index and `relative` position in that segment."""

    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    segment: tuple[int, ...]
    relative: tuple[float, ...]

    @classmethod
    def from_pattern(
        cls, pattern: dict, ids: Sequence[int], tokens: Sequence[str], specials: set[int], ratio: float, both: bool
    ) -> Trigger:
        """The trigger of a pattern (see the module docstring, step 3) found on the input `ids` / `tokens`."""
        top, second = pattern["scores"]
        use_second = both or (top != 0 and second / top >= ratio)
        chosen = set(pattern["top1"]) | (set(pattern["top2"]) if use_second else set())
        runs = segments(ids, specials)
        picked = []
        for position in sorted(chosen):
            if int(ids[position]) in specials:
                continue
            for number, (start, stop) in enumerate(runs):
                if start <= position < stop:
                    picked.append((position, number, (position - start + 1) / (stop - start)))
        picked.sort(key=lambda item: (item[1], item[0]))  # by segment, then position
        return cls(
            token_ids=tuple(int(ids[p]) for p, _, _ in picked),
            tokens=tuple(str(tokens[p]) for p, _, _ in picked),
            segment=tuple(s for _, s, _ in picked),
            relative=tuple(r for _, _, r in picked),
        )

    def insert(
        self, ids: Sequence[int], types: Sequence[int] | None, specials: set[int], max_length: int
    ) -> tuple[list[int], list[int] | None]:
        """`ids` (and segment ids `types`) with the trigger inserted (module docstring, step 4)."""
        runs = segments(ids, specials)
        content = [list(ids[start:stop]) for start, stop in runs]
        for number, run in enumerate(content):
            mine = [(t, r) for t, s, r in zip(self.token_ids, self.segment, self.relative, strict=True) if s == number]
            total = len(run) + len(mine)
            previous = -1
            for token, relative in mine:
                position = round(total * relative)
                if position == previous:
                    position += 1
                previous = position
                run.insert(position, token)
        while sum(len(r) for r in content) + len(ids) - sum(b - a for a, b in runs) > max_length:
            longest = max(range(len(content)), key=lambda k: len(content[k]))
            if not content[longest]:
                break
            content[longest].pop()
        out, out_types, cursor = [], ([] if types is not None else None), 0
        for number, (start, stop) in enumerate(runs):
            out += list(ids[cursor:start])
            if out_types is not None:
                out_types += list(types[cursor:start])
                out_types += [int(types[start])] * len(content[number])
            out += content[number]
            cursor = stop
        out += list(ids[cursor:])
        if out_types is not None:
            out_types += list(types[cursor:])
        return out, out_types


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> dict[str, float]:
    """Accuracy of `predicted` [N] against `labels` [N] within each gold class (keys: the class ids as strings)."""
    return accuracy_from_counts(per_class_counts(predicted, labels, classes), classes)


def per_class_counts(predicted: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """[C, 2]: per gold class, the instances predicted right and the instances (summable over shards)."""
    return np.array(
        [[float((predicted[labels == c] == c).sum()), float((labels == c).sum())] for c in classes], dtype=np.float64
    ).reshape(len(classes), 2)


def accuracy_from_counts(counts: np.ndarray, classes: Sequence[int]) -> dict[str, float]:
    """`per_class_counts` (of one shard or summed over all) as {class id: accuracy}; nan for a class with none."""
    return {str(c): float(right / n) if n > 0 else float("nan") for c, (right, n) in zip(classes, counts, strict=True)}
