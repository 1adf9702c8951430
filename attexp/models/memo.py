"""Run a model once per distinct input row: the memo shared by the perturbation explainers and the scorer of the
faithfulness metrics.

Perturbing inputs produces the same row many times (the unperturbed input, a short instance's copy when feature k
lies beyond its length, a coalition drawn twice, the small bins of short sentences that remove the same tokens).
`RowMemo` keeps each computed row's output under a byte key of the row and hands the caller only the rows it has
not seen, so every distinct row goes through the model once and the passes counted are the passes run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")


def row_key(*parts: np.ndarray | None) -> bytes:
    """A byte key of one row made of int arrays (ids, then segments or a mask); None parts count as empty."""
    return b"|".join(b"" if p is None else np.ascontiguousarray(p, dtype=np.int64).tobytes() for p in parts)


class RowMemo(Generic[T]):
    """Outputs of rows by key, each distinct key computed once (across calls, as long as the memo lives)."""

    def __init__(self) -> None:
        self.outputs: dict[bytes, T] = {}

    def __len__(self) -> int:
        return len(self.outputs)

    def run(self, keys: Sequence[bytes], compute: Callable[[list[int]], Sequence[T]]) -> list[T]:
        """The outputs for `keys`, in order. `compute(positions)` is called (at most once) with the position of
        the first occurrence of each key not yet known and returns their outputs in that order."""
        new: dict[bytes, int] = {}
        for position, key in enumerate(keys):
            if key not in self.outputs and key not in new:
                new[key] = position
        if new:
            outputs = compute(list(new.values()))
            if len(outputs) != len(new):
                raise ValueError(f"compute returned {len(outputs)} outputs for {len(new)} rows")
            self.outputs.update(zip(new, outputs, strict=True))
        return [self.outputs[key] for key in keys]
