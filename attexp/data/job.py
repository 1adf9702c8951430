"""The download stage: fetch a labelled corpus and write train/validation/test splits as JSON lines.

Output (`data/<name>/`): `train.jsonl`, `validation.jsonl`, `test.jsonl` with `{"idx", "text", "label"}`
(+ `"text_pair"` for sentence pairs), and the label names in the manifest. Sources without predefined
splits are split with the job's seed, stratified by label (`splits` gives the held-out fractions);
`limit` subsamples a split (stratified, seeded) for quick experiments. Every split is then shuffled with
the seed (corpora such as the RT sentences or IMDB are sorted by label, so "the first 500 test instances"
would otherwise be one class) and `idx` counts from 0 in that order: stable for a given config.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny, field_validator

from attexp.config.schema import ComponentConfig, JobConfig, Registered
from attexp.data.splits import limit_rows, make_splits
from attexp.errors import AttexpError
from attexp.io.files import write_jsonl
from attexp.io.records import DATASET
from attexp.registry import JOBS, SOURCES
from attexp.runner import Job, JobContext

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


class DownloadConfig(JobConfig):
    """Fetch a corpus (`source`) and write the three splits."""

    job: Literal["download"] = "download"
    source: Annotated[SerializeAsAny[ComponentConfig], Registered("data source")]
    splits: dict[Literal["validation", "test"], float] = Field(
        default_factory=lambda: {"validation": 0.1, "test": 0.1},
        description="fractions held out when the source lacks that split",
    )
    limit: dict[Literal["train", "validation", "test"], int] = Field(
        default_factory=dict, description="at most this many rows per split (stratified, seeded)"
    )

    @field_validator("splits")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        if any(not 0 < f < 1 for f in value.values()) or sum(value.values()) >= 1:
            raise ValueError("each held-out fraction must be in (0, 1) and together they must leave rows for train")
        return value

    @field_validator("limit")
    @classmethod
    def _limits(cls, value: dict[str, int]) -> dict[str, int]:
        if any(n < 1 for n in value.values()):
            raise ValueError("limits must be positive row counts")
        return value


@JOBS.register("download", DownloadConfig)
class DownloadJob(Job):
    """Fetch a labelled corpus and write train/validation/test JSON lines."""

    schema = DATASET
    folder = "data"
    resumable = False
    splits_because = "one fetch and one split of the corpus; nothing to share"

    def run(self, config: DownloadConfig, ctx: JobContext) -> None:
        source = SOURCES.get(config.source.type).cls(config.source)
        corpus = source.load(ctx.cache_dir, root=ctx.base_dir)
        corpus, empty = _without_empty_texts(corpus)
        if empty:
            log.warning("%s: dropped %d rows with an empty text (nothing to classify or explain)", config.name, empty)
        splits = make_splits(corpus, dict(config.splits), config.seed)
        missing = [s for s in SPLITS if not splits.get(s)]
        if missing:
            raise AttexpError(
                f"source {config.source.type!r} gave no rows for split(s) {', '.join(missing)} "
                f"(got {', '.join(f'{k}: {len(v)}' for k, v in splits.items())}). Map them in the source's `splits` "
                f"or set `splits` fractions so they are carved from train."
            )
        counts = {}
        for split in SPLITS:
            rows = splits[split]
            if split in config.limit:
                rows = limit_rows(rows, config.limit[split], config.seed)
            rows = list(rows)
            random.Random(f"{config.seed}-{split}").shuffle(rows)
            records = [{"idx": i, **row} for i, row in enumerate(rows)]
            counts[split] = write_jsonl(ctx.path(f"{split}.jsonl"), records)
        label_counts = {
            split: [sum(1 for r in splits[split] if r["label"] == k) for k in range(len(corpus.label_names))]
            for split in SPLITS
        }
        duplicates = _duplicates(splits)
        for key, n in duplicates.items():
            if n:
                log.warning(
                    "%s: %d duplicate texts %s (kept; an evaluation split that repeats training texts "
                    "overstates accuracy)",
                    config.name,
                    n,
                    key.replace("_", " "),
                )
        ctx.counts.update(counts)
        manifest = ctx.manifest
        manifest.checks = {"empty_texts_dropped": empty, "duplicates": duplicates}
        manifest.label_names = corpus.label_names
        manifest.source = corpus.description
        manifest.pairs = any("text_pair" in r for r in splits["train"][:10])
        manifest.label_counts_before_limit = label_counts
        ctx.log_metrics({f"n_{k}": v for k, v in counts.items()})


def _key(row: dict) -> tuple[str, str | None]:
    return row["text"].strip().casefold(), (row.get("text_pair") or "").strip().casefold() or None


def _without_empty_texts(corpus):
    """The corpus without rows whose text (or text pair) is empty or blank, and how many were dropped."""
    dropped = 0
    kept = {}
    for name, rows in corpus.splits.items():
        good = [r for r in rows if str(r["text"]).strip() and ("text_pair" not in r or str(r["text_pair"]).strip())]
        dropped += len(rows) - len(good)
        kept[name] = good
    return (dataclasses.replace(corpus, splits=kept) if dropped else corpus), dropped


def _duplicates(splits: dict[str, list[dict]]) -> dict[str, int]:
    """Repeated texts (case and surrounding space ignored): within each split, and in validation or test that
    also occur in train."""
    out = {}
    train = {_key(r) for r in splits["train"]}
    for split in SPLITS:
        keys = [_key(r) for r in splits[split]]
        out[f"within_{split}"] = len(keys) - len(set(keys))
        if split != "train":
            out[f"{split}_in_train"] = sum(1 for k in keys if k in train)
    return out
