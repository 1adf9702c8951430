"""What every data source shares: the `Corpus` it delivers, the `DataSource` base class and the split names.

Every source turns its input into one in-memory `Corpus` (rows `{"text", "label"}` plus `"text_pair"` for
sentence pairs, integer labels, the label names), so the download job treats them all alike: it calls
`make_splits` (attexp/data/splits.py) to get train/validation/test, optionally `limit_rows`, adds `idx` and
writes JSON lines.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError, did_you_mean

SPLIT_NAMES = ("train", "validation", "test")
"""The splits the download stage writes. A source may instead return the single split "all"."""


@dataclass
class Corpus:
    """A labelled text corpus as a source delivers it, before `make_splits`.

    `splits` maps a split name ("train", "validation", "test", or only "all" for a source without
    predefined splits) to rows `{"text": str, "label": int}` (+ `"text_pair": str` for pairs), without
    `idx` (the download job adds it). `label_names[i]` names label id `i`.
    """

    splits: dict[str, list[dict]]
    label_names: list[str]
    description: str

    def __post_init__(self) -> None:
        n = len(self.label_names)
        for split, rows in self.splits.items():
            for i, row in enumerate(rows):
                label = row.get("label")
                if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n:
                    raise AttexpError(
                        f"corpus split {split!r} row {i}: label {label!r} is not an id in 0..{n - 1} "
                        f"(label names {self.label_names}). This is a bug in the data source."
                    )

    def label_counts(self) -> dict[str, dict[str, int]]:
        """{split: {label name: rows}}, e.g. for the download job's manifest."""
        return {
            split: {name: Counter(r["label"] for r in rows)[i] for i, name in enumerate(self.label_names)}
            for split, rows in self.splits.items()
        }


class DataSource(ABC):
    """A registered data source: constructed as `Cls(config)`, asked once for its `Corpus`."""

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    @abstractmethod
    def load(self, cache_dir: Path, *, root: Path | None = None) -> Corpus:
        """Read the corpus. `cache_dir` holds downloads (reused on the next call); `root` is the directory
        that relative paths in the config are resolved against (the base directory; default: the
        current directory)."""


def check_split_names(names: list[str]) -> None:
    for name in names:
        if name not in (*SPLIT_NAMES, "all"):
            allowed = (*SPLIT_NAMES, "all")
            raise ValueError(
                f"unknown split name {name!r}; allowed: {', '.join(allowed)}.{did_you_mean(name, allowed)} "
                "(a development set is called 'validation')"
            )
    if "all" in names and len(names) > 1:
        raise ValueError(f"'all' means the source has no predefined splits and cannot be combined with {names}")
    if not names:
        raise ValueError("name at least one split")
