"""Heatmap rows: one explainer's scores for one record as coloured tokens (or words), and the runs they come from.

A `Run` is one explainer's records to show; `records_by_idx` checks them and keys them by idx, and
`record_row` gives one record's row as the templates draw it (its tokens, or words merged by
`attexp.io.words`, with the run's prediction, target and cost). Python only computes numbers and plain strings
here; the templates escape them.

Colour: each run's row is normalised by its own max |score| (explainers differ in scale by orders of
magnitude, and a shared scale would leave all but one row blank); positive scores are red, negative blue,
the opacity is |score| / max |score|, and the exact score is in each token's tooltip. Pad tokens are never
shown (records carry none, and any that slip in are dropped before normalising).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from attexp.errors import AttexpError
from attexp.io.manifests import COST_FIELDS
from attexp.io.records import PAD_TOKENS, STRUCTURAL_TOKENS
from attexp.io.words import group_words
from attexp.visualize.text import class_name

POSITIVE_RGB = (215, 48, 39)  # red
NEGATIVE_RGB = (33, 102, 172)  # blue


@dataclass
class Run:
    """One explainer's records to show: `name` labels the row, `explainer` is its registry type,
    `cost` its mean cost per instance (e.g. `seconds`, `forward_passes`, `backward_passes`)."""

    name: str
    explainer: str
    records: list[dict]
    cost: dict[str, float]


@dataclass(frozen=True)
class Token:
    """One coloured token of a heatmap row (plain strings; the template escapes them)."""

    text: str
    score: float
    title: str
    style: str


def merge_words(
    tokens: Sequence[str],
    scores: Sequence[float],
    word_ids: Sequence[int | None] | None = None,
    words: Sequence[str] | None = None,
) -> tuple[list[str], list[float], list[str]]:
    """Join the tokens of each word into the word, summing their scores: by the record's `word_ids` (the words as
    written, `words`) where it has them, else by the pieces' spelling (`attexp.io.words.group_words`). Tokens of
    no word (structural specials) stay as they are. Returns the words, their scores and, per word, the pieces it
    was made of (space-separated)."""
    grouped = group_words(tokens, word_ids, words)
    shown: list[str] = []
    summed: list[float] = []
    pieces: list[list[str]] = []
    last: int | None = None
    for token, score, word in zip(tokens, scores, grouped.ids, strict=True):
        if word is not None and word == last:
            summed[-1] += float(score)
            pieces[-1].append(token)
            continue
        shown.append(token if word is None else grouped.texts[word])
        summed.append(float(score))
        pieces.append([token])
        last = word
    return shown, summed, [" ".join(p) for p in pieces]


def token_style(weight: float) -> str:
    """CSS for a token whose score divided by the row's max |score| is `weight` (in [-1, 1])."""
    r, g, b = POSITIVE_RGB if weight > 0 else NEGATIVE_RGB
    alpha = min(abs(weight), 1.0)
    text = "#fff" if alpha > 0.6 else "#111"
    return f"background-color: rgba({r}, {g}, {b}, {alpha:.3f}); color: {text}"


def heatmap_row(
    tokens: Sequence[str],
    scores: Sequence[float],
    merge_subwords: bool = False,
    word_ids: Sequence[int | None] | None = None,
    words: Sequence[str] | None = None,
    scale_specials: bool = True,
) -> tuple[list[Token], float]:
    """The tokens of one row, coloured, and the row's max |score| (0 for an all-zero row).

    merge_subwords: show words, each scored by the sum of its pieces; by `word_ids`/`words` where the record has
    them, else by the pieces' spelling (`merge_words`). scale_specials=False leaves structural specials
    ([CLS], [SEP], <s>, ...) out of the max |score| (they are still drawn, clipped to full colour): some explainers
    put most of the mass there, which would leave the words pale.
    """
    kept = [i for i, t in enumerate(tokens) if t not in PAD_TOKENS]
    toks, values = [tokens[i] for i in kept], [float(scores[i]) for i in kept]
    pieces = list(toks)
    shown = list(toks)
    if merge_subwords:
        recorded = [word_ids[i] for i in kept] if word_ids is not None and len(word_ids) == len(tokens) else None
        shown, values, pieces = merge_words(toks, values, recorded, words)
    scaled = [v for v, p in zip(values, pieces, strict=True) if scale_specials or p not in STRUCTURAL_TOKENS]
    scale = float(np.max(np.abs(scaled))) if scaled else 0.0  # per-row normalisation
    row = []
    for word, value, made_of in zip(shown, values, pieces, strict=True):
        title = f"{value:+.4f}" if made_of == word else f"{value:+.4f} ({made_of})"
        row.append(Token(word, value, title, token_style(value / scale if scale > 0 else 0.0)))
    return row, scale


def records_by_idx(run: Run) -> dict[int, dict]:
    """The run's records keyed by idx; an error naming the run for a record without idx, tokens or
    attributions, with a score count unlike its token count, or with an idx seen before."""
    out: dict[int, dict] = {}
    for record in run.records:
        try:
            idx, tokens, scores = int(record["idx"]), record["tokens"], record["attributions"]
        except KeyError as e:
            raise AttexpError(
                f"run {run.name!r}: a record lacks {e.args[0]!r}; expected explanation records with idx, tokens "
                f"and attributions (the explain stage's records.jsonl)."
            ) from None
        if len(tokens) != len(scores):
            raise AttexpError(
                f"run {run.name!r}, idx {idx}: {len(tokens)} tokens but {len(scores)} attributions; a record holds "
                f"one score per token. Re-run the explain job that wrote it with --force."
            )
        if idx in out:
            raise AttexpError(f"run {run.name!r}: idx {idx} occurs twice; re-run its explain job with --force.")
        out[idx] = record
    return out


def record_row(
    run: Run, record: dict, merge_subwords: bool, label_names: Sequence[str] | None, scale_specials: bool = True
) -> dict[str, Any]:
    """One record's row as the templates draw it: the run's name and explainer, the coloured tokens (`heatmap_row`)
    and their scale, the prediction with its probability, the target and the record's cost."""
    tokens, scale = heatmap_row(
        record["tokens"],
        record["attributions"],
        merge_subwords,
        record.get("word_ids"),
        record.get("words"),
        scale_specials,
    )
    probabilities = record.get("predictions") or []
    predicted = predicted_class(probabilities)
    return {
        "name": run.name,
        "explainer": run.explainer,
        "prediction": class_name(predicted, label_names),
        "probability": float(probabilities[predicted]) if predicted is not None else None,
        "target": class_name(record.get("target"), label_names),
        **{key: record.get(key) for key in COST_FIELDS},
        "scale": scale,
        "tokens": tokens,
    }


def predicted_class(probabilities: Sequence[float] | None) -> int | None:
    """The class with the highest probability, None without probabilities."""
    return int(np.argmax(probabilities)) if probabilities else None
