"""Evaluate a config file and apply overrides: jsonnet with external variables, then `--a.b=v` on the JSON.

1. jsonnet evaluation with external variables (the environment, then `--ext-var k=v`, which wins);
2. overrides (`--override a.b=v`, `--a.b=v`) on the evaluated JSON, values parsed as JSON when they parse. This
   is the form a wandb sweep agent passes. In a pipeline a job is addressed by index: `--jobs.1.epochs=2`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import _jsonnet

from attexp.errors import ConfigError


def evaluate_jsonnet(path: Path, ext_vars: Mapping[str, str] | None = None) -> dict:
    """Evaluate a jsonnet (or JSON) file to a dict.

    External variables: every environment variable, `wandb_run_id` (the sweep run's id, empty outside a wandb
    sweep, so a sweep config can give each run its own job name), `standin` (empty unless set: the paper
    reproductions of configs/papers/ run on their offline stand-in with `--ext-var standin=tiny|minilm`),
    `normalised` (empty unless set: `--ext-var normalised=1` adds the normalised AOPC beside a reproduction's AOPC),
    then `ext_vars`, which win.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: config file not found. Pass a path to a .jsonnet file (see configs/).")
    variables = {"wandb_run_id": os.environ.get("WANDB_RUN_ID", ""), "standin": "", "normalised": "", **os.environ}
    variables.update(ext_vars or {})
    try:
        text = _jsonnet.evaluate_file(str(path), ext_vars=variables)
    except RuntimeError as e:
        raise ConfigError(f"{path}: jsonnet evaluation failed:\n{str(e).strip()}") from None
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must evaluate to an object, got {type(data).__name__}.")
    return data


def parse_value(text: str) -> Any:
    """An override value: JSON when it parses (`3`, `true`, `[1,2]`, `"x"`), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(data: dict, overrides: Sequence[str], source: str) -> dict:
    """Apply `a.b.c=value` overrides; list elements are addressed by index (`jobs.1.epochs=2`)."""
    data = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{source}: override {item!r} is not of the form key.path=value.")
        parts = key.split(".")
        node: Any = data
        for i, part in enumerate(parts[:-1]):
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                node = node[_index(part, node, where, source)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise ConfigError(f"{source}: override {key!r}: {where} is a {type(node).__name__}, not an object.")
        last = parts[-1]
        if isinstance(node, list):
            node[_index(last, node, key, source)] = parse_value(value)
        elif isinstance(node, dict):
            node[last] = parse_value(value)
        else:
            raise ConfigError(f"{source}: override {key!r}: the parent is a {type(node).__name__}, not an object.")
    return data


def _index(part: str, node: list, where: str, source: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{source}: override at {where!r}: index {part!r} given; allowed: 0..{len(node) - 1}.")
    return int(part)
