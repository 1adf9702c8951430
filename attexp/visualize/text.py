"""Plain-text helpers of the pages: a class id with its name, the start of an instance's text, and Unicode
direction controls shown instead of obeyed.

They return plain strings; the templates escape them when they render (`attexp.visualize.render`).
"""

from __future__ import annotations

from collections.abc import Sequence

from attexp.io.words import group_words

BIDI_CONTROLS = dict.fromkeys(map(ord, "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"))
PREVIEW_CHARS = 90


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
