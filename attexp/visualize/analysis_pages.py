"""Pages of the single-instance analyses: attribution trees and IBA's layer flow (`attexp.analyze.instance_jobs`).

Those jobs compute from the model and write records (`trees.jsonl`, `flow.jsonl`); the functions here are
registered as their renderers (`attexp.registry.renders`), so the runner draws the pages into the same folder
before the job is marked finished: `instances/<idx>.html` per instance (the tree as inline SVG with its edge
table, or the layer x token heatmap as a table and `plots/<idx>.png`) and `index.html`. They read the records
and the job's settings only; nothing here runs a model. Pages are self-contained and every token is
HTML-escaped (jinja2 autoescape, as all pages of the visualize stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attexp import plots
from attexp.io.files import read_jsonl
from attexp.io.records import ATTRIBUTION_TREE, LAYER_FLOW
from attexp.registry import renders
from attexp.visualize import flow, tree
from attexp.visualize.render import render_page
from attexp.visualize.text import class_name, preview

QUANTITY_LABELS = {"scores": "min-max normalised capacity", "capacity": "capacity (nats)"}


def _item(record: dict, label_names: Sequence[str] | None) -> dict[str, Any]:
    """The header of one instance page: idx, tokens and the label, prediction and target as class names."""
    return {
        "idx": record["idx"],
        "tokens": record["tokens"],
        "label": class_name(record.get("label"), label_names),
        "prediction": class_name(record.get("prediction"), label_names),
        "target": class_name(record.get("target"), label_names),
    }


def _pages(out_dir: Path, template: str, items: list[dict], title: str, notes: list[str]) -> list[Path]:
    """instances/<idx>.html for each item (its template context) and index.html; returns the paths."""
    items = sorted(items, key=lambda item: item["idx"])
    written = []
    for k, item in enumerate(items):
        item["previous"] = f"{items[k - 1]['idx']}.html" if k > 0 else None
        item["next"] = f"{items[k + 1]['idx']}.html" if k + 1 < len(items) else None
        written.append(render_page(template, out_dir / f"instances/{item['idx']}.html", item))
    instances = [
        {
            "idx": item["idx"],
            "label": item["label"],
            "prediction": item["prediction"],
            "preview": preview(item["tokens"]),
            "href": f"instances/{item['idx']}.html",
        }
        for item in items
    ]
    index = render_page(
        "analysis_index.html.j2", out_dir / "index.html", {"title": title, "notes": notes, "instances": instances}
    )
    return [index, *written]


def _finish(ctx: Any, pages: list[Path]) -> None:
    ctx.counts.update(pages=len(pages))
    ctx.manifest.index = str(ctx.path("index.html"))


@renders("attribution_tree")
def tree_pages(config: Any, ctx: Any) -> None:
    """One page per tree record (SVG tree and edge table) and an index."""
    label_names = ctx.manifest.label_names
    items = [
        {**_item(record, label_names), "section": tree.section(record, record["tokens"], config.threshold)}
        for record in read_jsonl(ctx.path(ATTRIBUTION_TREE.files[0]), ATTRIBUTION_TREE.required)
    ]
    notes = list(ctx.manifest.notes)
    _finish(ctx, _pages(ctx.out_dir, "tree.html.j2", items, f"Attribution trees: {config.name}", notes))


@renders("layer_flow")
def flow_pages(config: Any, ctx: Any) -> None:
    """One page per layer-flow record (the heatmap as a table and a PNG) and an index."""
    label_names = ctx.manifest.label_names
    label = QUANTITY_LABELS[config.quantity]
    items = []
    for record in read_jsonl(ctx.path(LAYER_FLOW.files[0]), LAYER_FLOW.required):
        values = np.asarray(record[config.quantity])  # [L, T]
        png = plots.flow_plot(
            values, record["tokens"], ctx.path(f"plots/{record['idx']}.png"), f"instance {record['idx']}", label
        )
        items.append({**_item(record, label_names), "section": flow.section(values, record["tokens"], label, png)})
    notes = list(ctx.manifest.notes)
    _finish(ctx, _pages(ctx.out_dir, "flow.html.j2", items, f"IBA per layer: {config.name}", notes))
