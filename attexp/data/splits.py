"""Splitting and subsampling for the download stage: `make_splits` carves the splits a corpus lacks out of its
data, `limit_rows` subsamples a split.

Splitting is deterministic and stratified by label: the same seed gives the same rows in every split.
"""

from __future__ import annotations

import random

from attexp.data.sources.base import SPLIT_NAMES, Corpus
from attexp.errors import AttexpError, ConfigError


def _stratified_order(rows: list[dict], seed: int) -> list[int]:
    """A seeded permutation of row positions whose every prefix is stratified by label.

    Within each label the rows are shuffled and spread evenly over [0, 1) (rank/size plus a random phase);
    sorting all rows by that position interleaves the labels, so any prefix of length n holds each label
    in proportion to its share, within a row or two (systematic stratified sampling).
    """
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(row["label"], []).append(i)
    keyed: list[tuple[float, int, int]] = []
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        phase = rng.random()
        keyed += [((rank + phase) / len(members), label, i) for rank, i in enumerate(members)]
    keyed.sort()
    return [i for _, _, i in keyed]


def _split_key(name: str) -> tuple[int, str]:
    return (SPLIT_NAMES.index(name) if name in SPLIT_NAMES else len(SPLIT_NAMES), name)


def make_splits(corpus: Corpus, fractions: dict[str, float], seed: int) -> dict[str, list[dict]]:
    """Train/validation/test rows for `corpus`, carving missing splits out of the data deterministically.

    If the corpus has only "all", it is split into train plus one split per entry of `fractions` (e.g.
    `{"validation": 0.1, "test": 0.1}`; train gets the rest). If it has "train" but lacks a split named in
    `fractions`, that split is carved out of train (the fraction is of train's size). Splits the corpus
    already has are kept as they are, whatever `fractions` says. Carving is stratified by label and seeded:
    the same seed gives identical splits, every row lands in exactly one split, and rows keep their corpus
    order within each split. Rows are copied, so the caller may add `idx` to them.
    """
    splits = {name: [dict(row) for row in rows] for name, rows in corpus.splits.items()}
    for name, fraction in fractions.items():
        if name in ("train", "all"):
            raise ConfigError(f"fractions: {name!r} cannot be given a fraction; train gets the rest of the data.")
        if not 0 < fraction < 1:
            raise ConfigError(f"fractions.{name}: expected a fraction between 0 and 1 (exclusive), got {fraction}.")
    if "all" in splits and len(splits) > 1:
        raise AttexpError(
            f"corpus has 'all' together with other splits ({sorted(splits)}); a source returns one or the other."
        )
    pool_name = "all" if "all" in splits else "train"
    missing = sorted((n for n in fractions if n not in splits), key=_split_key)
    if pool_name == "train" and not missing:
        return dict(sorted(splits.items(), key=lambda kv: _split_key(kv[0])))
    if pool_name not in splits:
        raise AttexpError(
            f"cannot make split(s) {missing}: the corpus has no 'train' (or 'all') split to carve them from, only "
            f"{sorted(splits)}. Give the source a train split."
        )
    pool = splits.pop(pool_name)
    sizes = {name: round(fractions[name] * len(pool)) for name in missing}
    if any(size == 0 for size in sizes.values()) or sum(sizes.values()) >= len(pool):
        raise ConfigError(
            f"fractions {dict((n, fractions[n]) for n in missing)} of {len(pool)} {pool_name} rows give split sizes "
            f"{sizes}, leaving {len(pool) - sum(sizes.values())} for train; every split needs at least one row. "
            "Change the fractions or use more data."
        )
    order = _stratified_order(pool, seed)
    start = 0
    for name in missing:
        chosen = sorted(order[start : start + sizes[name]])
        splits[name] = [pool[i] for i in chosen]
        start += sizes[name]
    splits["train"] = [pool[i] for i in sorted(order[start:])]
    return dict(sorted(splits.items(), key=lambda kv: _split_key(kv[0])))


def limit_rows(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    """At most `n` of `rows`, stratified by label and seeded (for `limit` settings, e.g. a 2,000-row demo).

    `n=None` or `n >= len(rows)` keeps every row. The chosen rows keep their order in `rows`.
    """
    if n is None or n >= len(rows):
        return list(rows)
    if n < 0:
        raise ConfigError(f"limit: expected a non-negative number of rows, got {n}.")
    return [rows[i] for i in sorted(_stratified_order(rows, seed)[:n])]
