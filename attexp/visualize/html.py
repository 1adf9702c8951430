"""Static HTML heatmaps that put several explainers' attributions for one instance side by side.

A report is a folder: `index.html` lists the instances every run explained (idx, label, prediction, a
preview of the text) and what each run cost; `instances/<idx>.html` shows that instance's tokens once per
run, each token's background coloured by its score. The pages are self-contained (inline CSS, no scripts,
no external requests), so they open from a file system, an artifact store or an e-mail attachment alike.

Pages are rendered by jinja2 with autoescaping on for every template: tokens are untrusted text (a corpus can
hold `<img src=x onerror=...>`), and escaping in one place, by the template engine, is what keeps them text.
Nothing here builds HTML by string concatenation; Python only computes numbers and plain strings.

A summary page (`summary.html`, written by `render_summary` when an evaluation is given) shows the evaluate
stage's metric table (explainers as rows, metrics and cost as columns; click a header to sort, or open
`summary.html#sort=<column>` / `#sort=<column>:asc`), its plots embedded as data: URIs, and the colour legend
of the heatmaps. Sorting is the only script in the report: inline, a few lines, no external request.

Colour: each run's row is normalised by its own max |score| (explainers differ in scale by orders of
magnitude, and a shared scale would leave all but one row blank); positive scores are red, negative blue,
the opacity is |score| / max |score|, and the exact score is in each token's tooltip. Pad tokens are never
shown (records carry none, and any that slip in are dropped before normalising).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from attexp.errors import AttexpError
from attexp.io.files import atomic_write_text
from attexp.io.records import PAD_TOKENS, STRUCTURAL_TOKENS
from attexp.io.words import group_words

TEMPLATES = Path(__file__).parent / "templates"
POSITIVE_RGB = (215, 48, 39)  # red
NEGATIVE_RGB = (33, 102, 172)  # blue
PREVIEW_CHARS = 90


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


def render_report(
    out_dir: Path,
    runs: Sequence[Run],
    max_instances: int | None = None,
    merge_subwords: bool = False,
    label_names: Sequence[str] | None = None,
    summary_href: str | None = None,
    sections: dict[int, list[dict[str, Any]]] | None = None,
    scale_specials: bool = True,
) -> list[Path]:
    """Write `index.html` and `instances/<idx>.html` for the instances present in every run.

    Instances are taken in ascending idx order, at most `max_instances` of them. `label_names` (index = label
    id) shows class names next to label and prediction ids. `merge_subwords` shows words (summed scores of their
    pieces, see `heatmap_row`); `scale_specials=False` leaves special tokens out of each row's colour scale.
    `summary_href` links the index to a summary page. `sections` adds, per idx,
    analyses drawn below the heatmaps (`attexp.visualize.tree.section`, `attexp.visualize.flow.section`, each
    with a "title"). Returns the written files, index first.
    """
    if not runs:
        raise AttexpError("render_report: no runs given; a report needs at least one explanations artifact.")
    names = [run.name for run in runs]
    if len(set(names)) != len(names):
        raise AttexpError(f"render_report: run names must be unique to label the rows; got {names}.")
    by_run = [_records_by_idx(run) for run in runs]
    common = sorted(set.intersection(*(set(records) for records in by_run)))
    if not common:
        sizes = ", ".join(f"{run.name}: {len(records)} records" for run, records in zip(runs, by_run, strict=True))
        raise AttexpError(
            f"render_report: no instance idx is present in every run ({sizes}). The runs must explain the same "
            f"split of the same dataset; check the visualize job's explanations."
        )
    if max_instances is not None:
        common = common[: max(max_instances, 0)]

    env = _environment()
    out_dir = Path(out_dir)
    written = []
    instance_template = env.get_template("instance.html.j2")
    for position, idx in enumerate(common):
        page = out_dir / "instances" / f"{idx}.html"
        context = {
            "idx": idx,
            "label": class_name(by_run[0][idx].get("label"), label_names),
            "rows": [
                _row(run, records[idx], merge_subwords, label_names, scale_specials)
                for run, records in zip(runs, by_run, strict=True)
            ],
            "previous": f"{common[position - 1]}.html" if position > 0 else None,
            "next": f"{common[position + 1]}.html" if position + 1 < len(common) else None,
            "positive_rgb": POSITIVE_RGB,
            "negative_rgb": NEGATIVE_RGB,
            "merged": merge_subwords,
            "sections": (sections or {}).get(idx, []),
        }
        atomic_write_text(page, instance_template.render(context))
        written.append(page)

    first = by_run[0]
    instances = [
        {
            "idx": idx,
            "label": class_name(first[idx].get("label"), label_names),
            "prediction": class_name(_argmax(first[idx].get("predictions")), label_names),
            "agree": len({_argmax(records[idx].get("predictions")) for records in by_run}) == 1,
            "preview": preview(first[idx].get("tokens", []), first[idx].get("text")),
            "href": f"instances/{idx}.html",
        }
        for idx in common
    ]
    cost_keys = _cost_columns(runs)
    index = out_dir / "index.html"
    html = env.get_template("index.html.j2").render(
        {
            "runs": [
                {"name": r.name, "explainer": r.explainer, "cost": [r.cost.get(k) for k in cost_keys]} for r in runs
            ],
            "cost_keys": cost_keys,
            "instances": instances,
            "prediction_run": runs[0].name,
            "total": {run.name: len(records) for run, records in zip(runs, by_run, strict=True)},
            "summary_href": summary_href,
        }
    )
    atomic_write_text(index, html)
    return [index, *written]


def render_page(template: str, path: Path, context: dict[str, Any]) -> Path:
    """Render one of the templates (autoescaped, like every page here) to `path` atomically; returns `path`."""
    atomic_write_text(Path(path), _environment().get_template(template).render(context))
    return Path(path)


def render_fragment(
    run: Run,
    label_names: Sequence[str] | None = None,
    merge_subwords: bool = True,
    scale_specials: bool = True,
    max_instances: int | None = 20,
    page: bool = False,
) -> str:
    """One run's heatmaps as HTML, in idx order (at most `max_instances`): a fragment with inline styles only (for a
    notebook cell, `Explanations._repr_html_`), or with `page=True` a self-contained page (`Explanations.show`).
    The same rows as the report pages, escaped by the same templates."""
    by_idx = _records_by_idx(run)
    chosen = sorted(by_idx)[: None if max_instances is None else max(max_instances, 0)]
    items = [
        {
            "idx": idx,
            "label": class_name(by_idx[idx].get("label"), label_names),
            "row": _row(run, by_idx[idx], merge_subwords, label_names, scale_specials),
        }
        for idx in chosen
    ]
    context = {
        "title": f"{run.name} ({run.explainer})",
        "items": items,
        "shown": len(items),
        "total": len(by_idx),
        "merged": merge_subwords,
        "scale_specials": scale_specials,
    }
    template = "explanations.html.j2" if page else "_fragment.html.j2"
    return _environment().get_template(template).render(context)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # the templates end in .html.j2, which select_autoescape would not match
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_summary(
    out_dir: Path,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    plots: Sequence[tuple[str, bytes]] = (),
    title: str = "evaluation",
    index_href: str | None = "index.html",
    notes: Sequence[str] = (),
    floor: dict[str, Any] | None = None,
    directions: Sequence[str] | None = None,
    paper: dict[str, Any] | None = None,
) -> Path:
    """Write `summary.html`: the metric table (sortable), the comparison with the random floor, the plots and
    the colour legend.

    columns / rows: the evaluation table (as in the evaluate stage's metrics.json `table`); plots: (name, PNG
    bytes) pairs, embedded as data: URIs so the page stays one self-contained file; notes: plain-text lines
    shown under the title (e.g. the reference and the model); floor: metrics.json `random_floor`
    ({"name", "versus": {file: {column: {"delta", "p_value", "n", "beats"}}}}); directions: per column, which
    way is better, "higher", "lower" or "" (metrics.json `table.directions`, written by the evaluate stage; an
    arrow marks the header); paper: metrics.json `paper` (the paper's numbers beside the measured ones,
    `attexp.evaluate.report.paper_comparison`). Returns the page's path.
    """
    if not columns:
        raise AttexpError("render_summary: no columns; pass the evaluation table's columns.")
    body = []
    for row in rows:
        if len(row) != len(columns):
            raise AttexpError(
                f"render_summary: a row has {len(row)} cells for {len(columns)} columns; pass the table as written "
                f"by the evaluate stage (metrics.json `table`)."
            )
        body.append([_cell(value) for value in row])
    directions = list(directions) if directions is not None else [""] * len(columns)
    if len(directions) != len(columns):
        raise AttexpError(f"render_summary: {len(directions)} directions for {len(columns)} columns.")
    heads = [
        {"name": c, "direction": directions[i], "numeric": _numeric_column(rows, i)} for i, c in enumerate(columns)
    ]
    images = [
        {"name": name, "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii")} for name, data in plots
    ]
    versus = (floor or {}).get("versus") or {}
    floor_columns = list(dict.fromkeys(c for result in versus.values() for c in result))
    floor_rows = [
        {
            "name": name,
            "cells": [
                {"beats": r["beats"], "text": f"{r['delta']:+.4f} (p={r['p_value']:.1g}, n={r['n']})"} if r else None
                for r in (result.get(c) for c in floor_columns)
            ],
        }
        for name, result in versus.items()
    ]
    page = Path(out_dir) / "summary.html"
    html = (
        _environment()
        .get_template("summary.html.j2")
        .render(
            {
                "title": title,
                "columns": heads,
                "rows": body,
                "plots": images,
                "index_href": index_href,
                "notes": list(notes),
                "floor_name": (floor or {}).get("name"),
                "floor_columns": floor_columns,
                "floor_rows": floor_rows,
                "paper": paper,
                "positive_rgb": POSITIVE_RGB,
                "negative_rgb": NEGATIVE_RGB,
            }
        )
    )
    atomic_write_text(page, html)
    return page


def _cell(value: Any) -> dict[str, Any]:
    """A table cell: shown text and the value the sort uses (numbers sort as numbers, blanks last)."""
    if value is None:
        return {"text": "—", "sort": ""}
    if isinstance(value, bool):
        return {"text": str(value), "sort": str(value)}
    if isinstance(value, int):
        return {"text": str(value), "sort": repr(float(value))}
    if isinstance(value, float):
        if value != value:  # NaN
            return {"text": "nan", "sort": ""}
        return {"text": f"{value:.4g}", "sort": repr(value)}
    return {"text": str(value), "sort": str(value)}


def _numeric_column(rows: Sequence[Sequence[Any]], i: int) -> bool:
    values = [row[i] for row in rows if row[i] is not None]
    return bool(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _records_by_idx(run: Run) -> dict[int, dict]:
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


def _row(
    run: Run, record: dict, merge_subwords: bool, label_names: Sequence[str] | None, scale_specials: bool = True
) -> dict[str, Any]:
    tokens, scale = heatmap_row(
        record["tokens"],
        record["attributions"],
        merge_subwords,
        record.get("word_ids"),
        record.get("words"),
        scale_specials,
    )
    probabilities = record.get("predictions") or []
    predicted = _argmax(probabilities)
    return {
        "name": run.name,
        "explainer": run.explainer,
        "prediction": class_name(predicted, label_names),
        "probability": float(probabilities[predicted]) if predicted is not None else None,
        "target": class_name(record.get("target"), label_names),
        "seconds": record.get("seconds"),
        "forward_passes": record.get("forward_passes"),
        "backward_passes": record.get("backward_passes"),
        "scale": scale,
        "tokens": tokens,
    }


def _argmax(probabilities: Sequence[float] | None) -> int | None:
    return int(np.argmax(probabilities)) if probabilities else None


BIDI_CONTROLS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))


def visible(text: str) -> str:
    """`text` with Unicode direction controls (e.g. RIGHT-TO-LEFT OVERRIDE) shown as escapes instead of obeyed:
    in a label name or a preview they would reorder what the reader sees around them."""
    return "".join(f"\\u{ord(c):04x}" if ord(c) in BIDI_CONTROLS else c for c in text)


def class_name(label: int | None, label_names: Sequence[str] | None) -> str:
    """'1 (positive)' with names, '1' without, '—' when unknown."""
    if label is None:
        return "—"
    if label_names is not None and 0 <= int(label) < len(label_names):
        return f"{label} ({visible(str(label_names[int(label)]))})"
    return str(label)


def preview(tokens: Sequence[str], text: str | None = None) -> str:
    """The start of an instance's text: as written where the record has it, else its tokens joined into words."""
    if text is None:
        text = " ".join(group_words(tokens).texts)
    text = visible(" ".join(text.split()))
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _cost_columns(runs: Sequence[Run]) -> list[str]:
    """The cost keys of all runs: seconds and passes first, then the rest alphabetically."""
    first = ["seconds", "forward_passes", "backward_passes"]
    keys = {k for run in runs for k in run.cost}
    return [k for k in first if k in keys] + sorted(keys - set(first))
