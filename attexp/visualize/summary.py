"""The summary page of a report: the evaluate stage's metric table, its plots and the heatmaps' colour legend.

A summary page (`summary.html`, written by `render_summary` when an evaluation is given) shows the evaluate
stage's metric table (explainers as rows, metrics and cost as columns; click a header to sort, or open
`summary.html#sort=<column>` / `#sort=<column>:asc`), its plots embedded as data: URIs, and the colour legend
of the heatmaps. Sorting is the only script in the report: inline, a few lines, no external request.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attexp.errors import AttexpError
from attexp.io.files import atomic_write_text
from attexp.visualize.heatmap import NEGATIVE_RGB, POSITIVE_RGB
from attexp.visualize.render import environment


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
    rankings: dict[str, Any] | None = None,
) -> Path:
    """Write `summary.html`: the metric table (sortable), the comparison with the random floor, the plots and
    the colour legend.

    columns / rows: the evaluation table (as in the evaluate stage's metrics.json `table`); plots: (name, PNG
    bytes) pairs, embedded as data: URIs so the page stays one self-contained file; notes: plain-text lines
    shown under the title (e.g. the reference and the model); floor: metrics.json `random_floor`
    ({"name", "versus": {file: {column: {"delta", "p_value", "n", "beats"}}}}); directions: per column, which
    way is better, "higher", "lower" or "" (metrics.json `table.directions`, written by the evaluate stage; an
    arrow marks the header); paper: metrics.json `paper` (the paper's numbers beside the measured ones,
    `attexp.evaluate.report.paper_comparison`); rankings: metrics.json `rankings` (each quality column's ranking,
    Kendall's tau between them and what normalisation or soft deletion changes, `attexp.evaluate.report.rankings`).
    Returns the page's path.
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
        environment()
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
                "rankings": rankings,
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
