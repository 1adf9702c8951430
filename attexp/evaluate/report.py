"""The evaluation report: which way is better for each column, the comparison of every explainer with the random
floor (one-sided paired Wilcoxon signed-rank test per faithfulness column), and the Markdown table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from attexp.io.manifests import COST_FIELDS
from attexp.utils import is_number

# ----------------------------------------------------------------------------------- directions, floor

# Which way is better for each column of the evaluation table (variant suffixes _alti, _mask, _pad ignored).
HIGHER_IS_BETTER = frozenset(
    {"comprehensiveness", "ferret_comprehensiveness", "tau_loo", "spearman", "kendall", "topk_overlap", "f1"}
    | {"aopc_comprehensiveness", "naopc_comprehensiveness", "soft_comprehensiveness", "soft_sufficiency"}
    | {"accuracy", "speedup", "pass_ratio", "degradation_lerf_accuracy", "degradation_lerf_probability"}
)
LOWER_IS_BETTER = frozenset(
    {"sufficiency", "ferret_sufficiency", "log_odds", "mse", "aopc_sufficiency", "naopc_sufficiency"}
    | set(COST_FIELDS)  # seconds and passes per instance
    | {"degradation_morf_accuracy", "degradation_morf_probability"}
)
# The faithfulness columns: the ones a random ranking gives a floor for (agreement and cost columns do not).
FAITHFULNESS_COLUMNS = frozenset(
    {"comprehensiveness", "sufficiency", "ferret_comprehensiveness", "ferret_sufficiency", "tau_loo", "log_odds"}
    | {"aopc_comprehensiveness", "aopc_sufficiency", "naopc_comprehensiveness", "naopc_sufficiency"}
    | {"soft_comprehensiveness", "soft_sufficiency"}
    | {"degradation_morf_accuracy", "degradation_morf_probability"}
    | {"degradation_lerf_accuracy", "degradation_lerf_probability"}
)
FLOOR_ALPHA = 0.05


def _base(column: str) -> str:
    for suffix in ("_official", "_tokens", "_delete", "_pad", "_mask", "_alti"):
        column = column.removesuffix(suffix)
    return column


def direction(column: str) -> str:
    """'higher', 'lower' or '' (unknown) for a column of the evaluation table."""
    base = _base(column)
    return "higher" if base in HIGHER_IS_BETTER else "lower" if base in LOWER_IS_BETTER else ""


def versus_floor(
    per_instance: dict[str, dict[int, dict[str, Any]]], floor: str, columns: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Does each explanation file beat the random floor on each faithfulness column, instance by instance?

    `per_instance[name][idx]` holds the per-instance values of explanation file `name`; `floor` names the random
    row. For every other file and every faithfulness column of `columns`, the instances both have a value for
    are paired by idx and tested with a one-sided Wilcoxon signed-rank test in the column's better direction
    (a random ranking and an explainer are scored on the same inputs, so the pairing removes the spread between
    easy and hard instances). Returns {name: {column: {"delta", "p_value", "n", "beats"}}} where `delta` is the
    mean difference (explainer - floor), `beats` means better at p < FLOOR_ALPHA.
    """
    floor_values = per_instance.get(floor, {})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, values in per_instance.items():
        if name == floor:
            continue
        for column in columns:
            better = direction(column)
            if _base(column) not in FAITHFULNESS_COLUMNS or not better:
                continue
            pairs = [
                (values[i][column], floor_values[i][column])
                for i in sorted(values.keys() & floor_values.keys())
                if is_number(values[i].get(column)) and is_number(floor_values[i].get(column))
            ]
            if not pairs:
                continue
            ours, theirs = np.array(pairs, dtype=np.float64).T
            diff = ours - theirs
            if np.all(diff == 0):
                p_value = 1.0
            else:
                alternative = "greater" if better == "higher" else "less"
                p_value = float(stats.wilcoxon(ours, theirs, alternative=alternative).pvalue)
            delta = float(diff.mean())
            out.setdefault(name, {})[column] = {
                "delta": delta,
                "p_value": p_value,
                "n": len(pairs),
                "beats": bool(p_value < FLOOR_ALPHA),
            }
    return out


def floor_report(comparison: dict[str, dict[str, dict[str, Any]]], floor: str, explainers: dict[str, Any]) -> str:
    """Markdown: a table of (delta vs floor, p) per file and faithfulness column, then one sentence per column
    stating which explainers beat the random floor."""
    columns = list(dict.fromkeys(c for result in comparison.values() for c in result))
    if not columns:
        return ""
    rows = []
    for name, result in comparison.items():
        row: dict[str, Any] = {"explanations": name, "explainer": explainers.get(name)}
        for column in columns:
            if column in result:
                r = result[column]
                mark = "yes" if r["beats"] else "NO"
                row[column] = f"{mark} {r['delta']:+.4f} (p={r['p_value']:.1g})"
        rows.append(row)
    lines = [
        f"Against the random floor `{floor}`: difference of the means (explainer - random; the sign that is better "
        f"follows each column) and the one-sided paired Wilcoxon signed-rank p-value over instances; `yes` means "
        f"better than random at p < {FLOOR_ALPHA}.",
        "",
        format_table(rows, ["explanations", "explainer", *columns]),
        "",
    ]
    for column in columns:
        tested = [name for name in comparison if column in comparison[name]]
        losers = [name for name in tested if not comparison[name][column]["beats"]]
        if not losers:
            lines.append(f"- {column}: every explainer ({len(tested)}) beats the random floor.")
        else:
            lines.append(
                f"- {column}: {len(tested) - len(losers)} of {len(tested)} explainers beat the random floor; "
                f"not: {', '.join(f'{n} ({explainers.get(n)})' for n in losers)}."
            )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------- rankings

RANKED_OUT = frozenset(COST_FIELDS) | {"speedup", "pass_ratio", "accuracy", "n", "skipped"}
"""Columns with a better direction that say nothing of an explanation's quality (cost, the model's accuracy)."""
VARIANTS: dict[str, str] = {
    "naopc_comprehensiveness": "aopc_comprehensiveness",
    "naopc_sufficiency": "aopc_sufficiency",
    "soft_comprehensiveness": "comprehensiveness",
    "soft_sufficiency": "sufficiency",
}
"""A normalised or soft column -> the raw column it corrects: where the two rank an explainer differently, the
report says which (Edin et al., 2025: raw AOPC mixes the model's and the instance's range into the score)."""


def rankings(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dict[str, Any]:
    """Each quality column's ranking of the explanation files, Kendall's tau between the rankings, and the files a
    normalised or soft column ranks differently from its raw column (`VARIANTS`).

    Ranks: 1 is best in the column's direction, ties share their mean rank, a file without a value is unranked.
    Tau-b between two columns is over the files both rank (None with fewer than 3). Returns {"columns", "ranks":
    {file: {column: rank}}, "tau": {column: {column: tau}}, "changes": [{"column", "raw", "moves": [{"name", "raw",
    "rank"}]}]}."""
    from scipy.stats import kendalltau, rankdata

    ranked = [c for c in columns if direction(c) and c not in RANKED_OUT and any(is_number(r.get(c)) for r in rows)]
    names = [str(r["explanations"]) for r in rows]
    ranks: dict[str, dict[str, float]] = {name: {} for name in names}
    for column in ranked:
        present = [(name, float(r[column])) for name, r in zip(names, rows, strict=True) if is_number(r.get(column))]
        sign = _sign(column)
        for (name, _), rank in zip(present, rankdata([sign * v for _, v in present], method="average"), strict=True):
            ranks[name][column] = float(rank)
    tau: dict[str, dict[str, float | None]] = {}
    for a in ranked:
        for b in ranked:
            both = [(ranks[n][a], ranks[n][b]) for n in names if a in ranks[n] and b in ranks[n]]
            value = None
            if len(both) >= 3:
                x, y = zip(*both, strict=True)
                statistic = kendalltau(x, y).statistic
                value = float(statistic) if math.isfinite(statistic) else None
            tau.setdefault(a, {})[b] = value
    changes = []
    by_row = {str(r["explanations"]): r for r in rows}
    for column in ranked:  # a variant column and its raw column, with the same suffix (`_pad`, `_tokens`, ...)
        base = _base(column)
        raw = VARIANTS[base] + column[len(base) :] if base in VARIANTS and column.startswith(base) else None
        if raw in ranked:  # ranked again over the files both columns score, so a file one lacks moves no other
            both = [n for n in names if column in ranks[n] and raw in ranks[n]]
            again = {
                c: dict(
                    zip(both, rankdata([_sign(c) * float(by_row[n][c]) for n in both], method="average"), strict=True)
                )
                for c in (raw, column)
            }
            moves = [
                {"name": n, "raw": float(again[raw][n]), "rank": float(again[column][n])}
                for n in both
                if again[column][n] != again[raw][n]
            ]
            changes.append({"column": column, "raw": raw, "moves": moves})
    return {"columns": ranked, "ranks": ranks, "tau": tau, "changes": changes}


def _sign(column: str) -> float:
    """-1 for a column where higher is better (so that rank 1 is the best), else 1."""
    return -1.0 if direction(column) == "higher" else 1.0


def rankings_report(result: Mapping[str, Any]) -> str:
    """Markdown of `rankings`: the ranks per file and column, Kendall's tau between the columns' rankings, and what
    normalisation or soft deletion changes."""
    columns = result["columns"]
    if len(columns) < 1:
        return ""
    rank_rows = [{"explanations": name, **ranks} for name, ranks in result["ranks"].items()]
    lines = [
        "Rankings: each quality column's ranking of the explanations (1 = best in the column's direction; ties share "
        "their mean rank).",
        "",
        format_table(rank_rows, ["explanations", *columns], decimals=1),
    ]
    if len(columns) >= 2:
        tau_rows = [{"column": a, **result["tau"][a]} for a in columns]
        lines += [
            "",
            "Kendall's tau between the columns' rankings (over the explanations both rank):",
            "",
            format_table(tau_rows, ["column", *columns], decimals=2),
        ]
    for change in result["changes"]:
        if not change["moves"]:
            lines.append(f"\n- {change['column']} ranks every explanation as {change['raw']} does.")
            continue
        moved = ", ".join(f"{m['name']} {m['raw']:g} -> {m['rank']:g}" for m in change["moves"])
        lines.append(f"\n- {change['column']} changes the rank {change['raw']} gives: {moved}.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- table


def format_table(rows: Sequence[dict], columns: Sequence[str], decimals: int = 4) -> str:
    """A markdown table of `rows` restricted to `columns`, in that order.

    Floats get `decimals` fixed decimals, ints (counts such as `n`) print as they are, numbers are
    right-aligned, a missing value is blank, and `|` in text is escaped so a cell cannot split.
    """

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool | int):
            return str(value)
        if isinstance(value, float):
            return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows) for c in columns]
    widths = [max([len(c), 3, *(len(line[i]) for line in body)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [s.rjust(w) if num else s.ljust(w) for s, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "| "
        + " | ".join("-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True))
        + " |"
    )
    return "\n".join([line(columns), rule, *(line(b) for b in body)])


def paper_comparison(
    paper: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = ("explanations", "explainer")
) -> dict[str, Any]:
    """The paper's numbers beside the measured ones: for every (row, column) of `paper["numbers"]`, the measured
    value of the table row whose `keys` (first match wins: the explain job's name, then its explainer type) equal
    the paper's row name, and the difference measured - paper (None where nothing was measured).

    Returns `paper` (citation, table, source, note) with `comparison`: a list of {row, column, paper, measured,
    difference}, the form metrics.json and summary.html hold.
    """
    by_key: dict[str, Mapping[str, Any]] = {}
    for key in reversed(keys):  # the first key wins
        for row in rows:
            if row.get(key) is not None:
                by_key[str(row[key])] = row
    comparison = []
    for name, columns in paper["numbers"].items():
        measured_row = by_key.get(name, {})
        for column, value in columns.items():
            measured = measured_row.get(column)
            measured = float(measured) if is_number(measured) else None
            difference = None if measured is None else measured - float(value)
            comparison.append(
                {"row": name, "column": column, "paper": float(value), "measured": measured, "difference": difference}
            )
    return {**{k: paper.get(k) for k in ("citation", "table", "source", "note")}, "comparison": comparison}


def paper_report(section: Mapping[str, Any], decimals: int = 4) -> str:
    """The Markdown of a `paper_comparison`: a heading naming the paper and table, the source, and one line per
    number (paper, measured, difference)."""
    where = "numbers from" if section["comparison"] else "source:"
    lines = [f"Paper: {section['citation']}, {section['table']} ({where} {section['source']})."]
    if section.get("note"):
        lines.append(f"Setting: {section['note']}")
    rows = [
        {
            "row": c["row"],
            "column": c["column"],
            "paper": c["paper"],
            "measured": c["measured"],
            "difference": c["difference"],
        }
        for c in section["comparison"]
    ]
    if not section["comparison"]:
        return "\n".join(lines) + "\n\nNo numbers of the paper to compare with (see the setting above)."
    missing = [f"{c['row']}.{c['column']}" for c in section["comparison"] if c["measured"] is None]
    table = format_table(rows, ["row", "column", "paper", "measured", "difference"], decimals)
    text = "\n".join(lines) + "\n\n" + table
    if missing:
        text += f"\n\nNot measured by this run: {', '.join(missing)} (a row or column the config does not produce)."
    return text
