"""Labels and columns, shared by local files and Hugging Face datasets (the `local` and `huggingface` sources).

`ColumnMapping` holds the config fields both sources have: the columns of the text, of the second text of a
pair and of the label, and optional label names. `build_rows` turns raw records of every split into rows
`{"text", "label"}` (+ `"text_pair"`), mapping labels to ids over all splits together.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError, did_you_mean

_INT = re.compile(r"-?\d+")


def as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    return None


def _map_labels(values: list[tuple[Any, str]], label_names: list[str] | None) -> tuple[list[int], list[str]]:
    """Label ids and names for raw label values, each with its location (for the error message).

    With `label_names`, a string equal to a name maps to its position, otherwise an integer (or integer
    string) is taken as the id. Without, integer labels are ids (names "0".."max") and string labels are
    named by their sorted unique values.
    """
    for value, where in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise AttexpError(f"{where}: the label is empty. Every row needs a label; fix or remove that row.")
    if label_names is not None:
        index = {name: i for i, name in enumerate(label_names)}
        ids = []
        for value, where in values:
            i = index.get(value) if isinstance(value, str) else None
            if i is None:
                i = as_int(value)
                if i is None or not 0 <= i < len(label_names):
                    raise AttexpError(
                        f"{where}: unknown label {value!r}; expected one of label_names {label_names} or an id in "
                        f"0..{len(label_names) - 1}.{did_you_mean(str(value), label_names)} Fix the data, or add "
                        "the label to `label_names` in the data source config."
                    )
            ids.append(i)
        return ids, list(label_names)
    ints = [as_int(v) for v, _ in values]
    if all(i is not None for i in ints):
        for i, (value, where) in zip(ints, values, strict=True):
            if i < 0:  # type: ignore[operator]
                raise AttexpError(
                    f"{where}: label {value!r} is negative; label ids start at 0. Fix the data, or give "
                    "`label_names` and write labels as names."
                )
        n = max(ints, default=-1) + 1  # type: ignore[type-var, operator]
        present = set(ints)  # type: ignore[arg-type]
        unused = sorted(set(range(min(present, default=0), n)) - present)  # ids between present ones, with no row
        if unused:
            top = next(where for i, (_, where) in zip(ints, values, strict=True) if i == n - 1)
            raise AttexpError(
                f"{top}: label id {n - 1} makes {n} classes, but ids {unused[:10]} have no row: a stray label id? "
                f"Fix the data, or give `label_names` (one name per id) in the data source config."
            )
        return ints, [str(i) for i in range(n)]  # type: ignore[return-value]
    names = sorted({str(v) for v, _ in values})
    index = {name: i for i, name in enumerate(names)}
    return [index[str(v)] for v, _ in values], names


def missing_column(where: str, role: str, column: str, available: list[str]) -> AttexpError:
    return AttexpError(
        f"{where}: no column {column!r} (configured as `{role}`). Columns there: "
        f"{', '.join(map(str, available)) or 'none'}.{did_you_mean(column, [str(a) for a in available])} "
        f"Fix: set `{role}` in the data source config to the column that holds the {role.replace('_', ' ')}."
    )


def _text(value: Any, where: str, role: str) -> str:
    if not isinstance(value, str):
        raise AttexpError(f"{where}: `{role}` must be a string, got {value!r}. Fix or remove that row.")
    return value


def build_rows(
    raw: dict[str, list[tuple[dict, str]]], text: str, text_pair: str | None, label: str, label_names: list[str] | None
) -> tuple[dict[str, list[dict]], list[str]]:
    """{split: [(record, where)]} -> ({split: rows}, label names), labels mapped over all splits together."""
    columns = [("text", text), ("text_pair", text_pair), ("label", label)]
    flat: list[tuple[Any, str]] = []
    for records in raw.values():
        for record, where in records:
            for role, column in columns:
                if column is not None and column not in record:
                    raise missing_column(where, role, column, list(record))
            flat.append((record[label], where))
    ids, names = _map_labels(flat, label_names)
    it = iter(ids)
    splits: dict[str, list[dict]] = {}
    for split, records in raw.items():
        rows = []
        for record, where in records:
            row = {"text": _text(record[text], where, "text"), "label": next(it)}
            if text_pair is not None:
                row["text_pair"] = _text(record[text_pair], where, "text_pair")
            rows.append(row)
        splits[split] = rows
    return splits, names


class ColumnMapping(ComponentConfig):
    text: str = Field(default="text", description="column with the text")
    text_pair: str | None = Field(default=None, description="column with the second text of a pair (NLI etc.)")
    label: str = Field(default="label", description="column with the label (an int id or a name)")
    label_names: list[str] | None = Field(
        default=None, description="names of label ids 0..n-1; default: from the data (see the source)"
    )

    @field_validator("label_names")
    @classmethod
    def _unique_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError(f"label_names must be non-empty and unique, got {names}")
        return names
