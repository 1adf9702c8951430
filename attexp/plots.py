"""PNG plots, every figure attexp draws, in one place: deletion curves per explainer, each metric against cost,
IBA's layer x token heatmap (`flow_plot`), the top adversarial triggers (`trigger_drops`), and the helpers
(`figure_text`, `save_figure`).

Two kinds, both drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display needed):

- `curve_plots`: one figure per curve a metric reports (ERASER comprehensiveness / sufficiency per bin, the
  degradation test's MoRF / LeRF accuracy and probability per step), one line per explanations file.
- `cost_plots`: one figure per metric, the metric against the cost of the explainer (forward + backward
  passes per instance, symlog axis so that the random floor's 0 fits). Explanation files of the same
  explainer type are joined by a line in order of cost: with Integrated Gradients run at k = 1..K steps and
  scored against the K-step reference, the `spearman` or `mse` figure is Empirical Explainers' convergence
  curve (Schwarzenberg et al., 2021), with the empirical explainer as a single point beside it; with a
  faithfulness metric it is the cost-vs-faithfulness scatter.

The random floor is drawn grey and dashed in every figure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attexp.utils import is_number

FLOOR_STYLE = {"color": "0.55", "linestyle": "--"}
# Columns of an evaluation row that are not a measure of the explanation (or not comparable across cost).
NOT_METRICS = {
    "explanations",
    "explainer",
    "n",
    "skipped",
    "instances",
    "seconds",
    "forward_passes",
    "backward_passes",
    "teacher_instances",
    "teacher_passes",
    "speedup",
    "pass_ratio",
    "f1",
    "accuracy",
}


def figure_text(text: object) -> str:
    """Text for a figure, with `$` escaped so that matplotlib does not read it as mathtext."""
    return str(text).replace("$", r"\$")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "plot"


def save_figure(fig: Figure, path: Path) -> Path:
    """Write the figure atomically (a finished artifact is never a half-written PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=110, bbox_inches="tight")
    os.replace(partial, path)
    return path


def curve_plots(
    curves: dict[str, dict[str, dict[str, Any]]], folder: Path, explainers: dict[str, str | None] | None = None
) -> list[Path]:
    """One PNG per curve key (`curve_<key>.png`) with a line per explanations file; returns the paths.

    curves: explanations name -> curve key -> {"x", "y", "xlabel", "ylabel"} (as in metrics.json).
    explainers: explanations name -> explainer type; the `random` ones (the floor) are drawn grey and dashed.
    """
    keys = list(dict.fromkeys(key for by_key in curves.values() for key in by_key))
    written = []
    for key in keys:
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        first = None
        for name, by_key in curves.items():
            curve = by_key.get(key)
            if curve is None:
                continue
            first = first or curve
            floor = (explainers or {}).get(name) == "random"
            style = FLOOR_STYLE if floor else {}
            ax.plot(curve["x"], curve["y"], marker="o", markersize=3, label=figure_text(name), **style)
            band = curve.get("band")  # [low, high] per x, e.g. the spread of a random order over seeds
            if band is not None:
                ax.fill_between(curve["x"], band[0], band[1], alpha=0.2, color=ax.lines[-1].get_color(), linewidth=0)
        if first is None:
            continue
        ax.set_xlabel(figure_text(first.get("xlabel", "x")))
        ax.set_ylabel(figure_text(first.get("ylabel", key)))
        ax.set_title(figure_text(key))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a line
        written.append(save_figure(fig, Path(folder) / f"curve_{_slug(key)}.png"))
    return written


def metric_columns(rows: Sequence[dict]) -> list[str]:
    """The numeric columns of evaluation rows that measure explanations (no counts, spreads, cost or the
    degradation test's step means, which its curves show)."""
    keys = dict.fromkeys(k for row in rows for k in row)
    return [
        k
        for k in keys
        if k not in NOT_METRICS
        and not k.endswith("_std")
        and not k.startswith(("reference_", "degradation_"))
        and any(isinstance(row.get(k), int | float) and not isinstance(row.get(k), bool) for row in rows)
    ]


def cost_plots(rows: Sequence[dict], folder: Path) -> list[Path]:
    """One PNG per metric column (`cost_vs_<metric>.png`): the metric against passes per instance.

    Needs the `cost` metric's columns (forward_passes, backward_passes) in the rows; without them nothing is
    drawn. Rows of the same explainer type are joined in order of cost (a convergence curve).
    """
    priced = [r for r in rows if isinstance(r.get("forward_passes"), int | float)]
    if not priced:
        return []
    written = []
    for metric in metric_columns(priced):
        points = [
            (float(r["forward_passes"]) + float(r.get("backward_passes") or 0), float(r[metric]), r)
            for r in priced
            if isinstance(r.get(metric), int | float)
        ]
        if not points:
            continue
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        short = short_names([r["explanations"] for r in priced])
        groups: dict[str, list[tuple[float, float, dict]]] = {}
        for point in points:
            groups.setdefault(str(point[2].get("explainer") or point[2]["explanations"]), []).append(point)
        for explainer, group in groups.items():
            group.sort(key=lambda p: p[0])
            floor = explainer == "random"
            style = FLOOR_STYLE if floor else {}
            ax.plot(
                [p[0] for p in group],
                [p[1] for p in group],
                marker="o",
                linestyle="-" if len(group) > 1 and not floor else "none",
                label=figure_text(explainer),
                **({"color": style["color"]} if floor else {}),
            )
            if floor:
                ax.axhline(group[0][1], linewidth=1, **style)
            for i, (x, y, row) in enumerate(group):
                # alternate above/below along a curve so that neighbouring labels do not overprint
                offset = (3, 4) if i % 2 == 0 else (3, -9)
                ax.annotate(short[row["explanations"]], (x, y), fontsize=6, xytext=offset, textcoords="offset points")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.margins(x=0.15, y=0.1)
        ax.set_xlabel("model passes per instance (forward + backward)")
        ax.set_ylabel(figure_text(metric))
        ax.set_title(figure_text(f"{metric} vs cost"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a line
        written.append(save_figure(fig, Path(folder) / f"cost_vs_{_slug(metric)}.png"))
    return written


def teacher_cost_plots(rows: Sequence[dict], folder: Path) -> list[Path]:
    """One PNG per metric column (`teacher_cost_vs_<metric>.png`) for learned explainers: the metric against what
    their teacher's explanations cost (`teacher_passes`, summed over the instances they were trained and validated
    on), one point per explanations file, the random floor dashed. Nothing without two rows that have a teacher."""
    taught = [r for r in rows if isinstance(r.get("teacher_passes"), int | float)]
    if len(taught) < 2:
        return []
    floor = next((r for r in rows if r.get("explainer") == "random"), None)
    short = short_names([r["explanations"] for r in taught])
    written = []
    for metric in metric_columns(taught):
        points = [(float(r["teacher_passes"]), float(r[metric]), r) for r in taught if is_number(r.get(metric))]
        if not points:
            continue
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.subplots()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", linestyle="none", label="learned")
        for x, y, row in points:
            ax.annotate(short[row["explanations"]], (x, y), fontsize=6, xytext=(3, 4), textcoords="offset points")
        if floor is not None and is_number(floor.get(metric)):
            ax.axhline(float(floor[metric]), linewidth=1, label="random", **FLOOR_STYLE)
        ax.set_xscale("log")
        ax.margins(x=0.15, y=0.1)
        ax.set_xlabel("teacher passes (forward + backward, all its training and validation instances)")
        ax.set_ylabel(figure_text(metric))
        ax.set_title(figure_text(f"{metric} vs teacher cost"))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        written.append(save_figure(fig, Path(folder) / f"teacher_cost_vs_{_slug(metric)}.png"))
    return written


def short_names(names: Sequence[str]) -> dict[str, str]:
    """Point labels: the job names without the dot-separated parts all of them share at the start and the end
    (rt.explain.lig1.minilm.test, rt.explain.empirical.minilm.test -> lig1, empirical). Names that share nothing
    with the rest (such as the random floor) stay whole."""
    split = {name: name.split(".") for name in names}
    common = [parts for parts in split.values() if len(parts) > 1]
    if len(common) < 2:
        return {name: name for name in names}
    head = 0
    while all(len(p) > head + 1 and p[head] == common[0][head] for p in common):
        head += 1
    tail = 0
    while all(len(p) > head + tail + 1 and p[-1 - tail] == common[0][-1 - tail] for p in common):
        tail += 1
    out = {}
    for name, parts in split.items():
        shared_head = len(parts) > head + tail and parts[:head] == common[0][:head]
        shared_tail = tail == 0 or parts[len(parts) - tail :] == common[0][len(common[0]) - tail :]
        out[name] = ".".join(parts[head : len(parts) - tail]) if shared_head and shared_tail else name
    return out


def flow_plot(values: np.ndarray, tokens: list[str], path: Path, title: str, label: str) -> Path:
    """A PNG heatmap of `values` [L, T]: layers as rows (the last on top), tokens as columns."""
    layers, width = values.shape
    fig = Figure(figsize=(max(4.0, 0.45 * width + 1.5), 0.45 * layers + 1.6))
    ax = fig.subplots()
    image = ax.imshow(values[::-1], aspect="auto", cmap="Reds", vmin=0)
    ax.set_xticks(range(width), [figure_text(t) for t in tokens], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(layers), [str(layers - 1 - k) for k in range(layers)])
    ax.set_ylabel("bottleneck after layer")
    ax.set_title(figure_text(title), fontsize=9)
    fig.colorbar(image, ax=ax, label=figure_text(label), fraction=0.03)
    return save_figure(fig, path)


def trigger_drops(best: Sequence[dict], path: Path) -> Path:
    """A bar chart of the best adversarial triggers (`trigger` tokens, accuracy `drop` of the attacked class)."""
    fig = Figure(figsize=(6.4, 0.4 * len(best) + 1.2))
    ax = fig.subplots()
    names = [figure_text(" ".join(r["trigger"])) for r in best][::-1]
    ax.barh(names, [r["drop"] for r in best][::-1], color="#d7301f")
    ax.set_xlabel("accuracy drop of the attacked class")
    ax.set_title("top adversarial triggers")
    return save_figure(fig, path)
