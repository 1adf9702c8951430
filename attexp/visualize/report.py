"""Static HTML heatmaps that put several explainers' attributions for one instance side by side.

A report is a folder: `index.html` lists the instances every run explained (idx, label, prediction, a
preview of the text) and what each run cost; `instances/<idx>.html` shows that instance's tokens once per
run, each token's background coloured by its score (`attexp.visualize.heatmap`). The pages are
self-contained (inline CSS, no scripts, no external requests), so they open from a file system, an artifact
store or an e-mail attachment alike. A summary page of the evaluation can sit beside them
(`attexp.visualize.summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attexp.errors import AttexpError
from attexp.io.files import atomic_write_text
from attexp.io.manifests import COST_FIELDS
from attexp.visualize.heatmap import NEGATIVE_RGB, POSITIVE_RGB, Run, predicted_class, record_row, records_by_idx
from attexp.visualize.render import environment
from attexp.visualize.text import class_name, preview


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
    by_run = [records_by_idx(run) for run in runs]
    common = sorted(set.intersection(*(set(records) for records in by_run)))
    if not common:
        sizes = ", ".join(f"{run.name}: {len(records)} records" for run, records in zip(runs, by_run, strict=True))
        raise AttexpError(
            f"render_report: no instance idx is present in every run ({sizes}). The runs must explain the same "
            f"split of the same dataset; check the visualize job's explanations."
        )
    if max_instances is not None:
        common = common[: max(max_instances, 0)]

    env = environment()
    out_dir = Path(out_dir)
    written = []
    instance_template = env.get_template("instance.html.j2")
    for position, idx in enumerate(common):
        page = out_dir / "instances" / f"{idx}.html"
        context = {
            "idx": idx,
            "label": class_name(by_run[0][idx].get("label"), label_names),
            "rows": [
                record_row(run, records[idx], merge_subwords, label_names, scale_specials)
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
            "prediction": class_name(predicted_class(first[idx].get("predictions")), label_names),
            "agree": len({predicted_class(records[idx].get("predictions")) for records in by_run}) == 1,
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


def _cost_columns(runs: Sequence[Run]) -> list[str]:
    """The cost keys of all runs (`<cost field>_per_instance`, as the visualize job passes them): seconds and
    passes first, then the rest alphabetically."""
    first = [f"{key}_per_instance" for key in COST_FIELDS]
    keys = {k for run in runs for k in run.cost}
    return [k for k in first if k in keys] + sorted(keys - set(first))
