"""The jinja2 environment every page of the visualize stage is rendered by, single pages rendered from a
template, and one run's heatmaps as a notebook fragment or a page of their own.

Pages are rendered by jinja2 with autoescaping on for every template: tokens are untrusted text (a corpus can
hold `<img src=x onerror=...>`), and escaping in one place, by the template engine, is what keeps them text.
Nothing here builds HTML by string concatenation; Python only computes numbers and plain strings. The
templates (`templates/`) keep the pages self-contained: inline CSS, no external requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from attexp.io.files import atomic_write_text
from attexp.visualize.heatmap import Run, record_row, records_by_idx
from attexp.visualize.text import class_name

TEMPLATES = Path(__file__).parent / "templates"


def environment() -> jinja2.Environment:
    """The jinja2 environment of the templates: autoescaping on, an undefined name an error."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # the templates end in .html.j2, which select_autoescape would not match
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_page(template: str, path: Path, context: dict[str, Any]) -> Path:
    """Render one of the templates (autoescaped, like every page here) to `path` atomically; returns `path`."""
    atomic_write_text(Path(path), environment().get_template(template).render(context))
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
    by_idx = records_by_idx(run)
    chosen = sorted(by_idx)[: None if max_instances is None else max(max_instances, 0)]
    items = [
        {
            "idx": idx,
            "label": class_name(by_idx[idx].get("label"), label_names),
            "row": record_row(run, by_idx[idx], merge_subwords, label_names, scale_specials),
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
    return environment().get_template(template).render(context)
