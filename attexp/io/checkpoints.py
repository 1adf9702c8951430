"""Training state on disk without pickle: tensors in safetensors, everything else in JSON.

A resumable checkpoint holds nested dicts and lists of tensors, numbers, strings and booleans (model and optimizer
state dicts, counters, a random generator's state, a history of metrics). Unpickling such a file can run any code
its author put in it, so a checkpoint planted in a job folder would run on resume. Here a state is split into a
`.safetensors` file (every tensor, under the path where it sits) and a `.json` file (the rest, with a placeholder
where a tensor was, and dicts with non-string keys, such as an optimizer's per-parameter state, kept as pairs).
Neither format can carry code. Both files are written atomically, the JSON last, so a half-written checkpoint is
never read as a whole one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from attexp.errors import AttexpError
from attexp.io.files import atomic_write_text

TENSOR = "__tensor__"
PAIRS = "__pairs__"
FLOAT = "__float__"


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write `state` as `<path>.safetensors` and `<path>.json` (`path` without a suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    tmp = path.with_name(f".{path.name}.safetensors.tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path.with_suffix(".safetensors"))
    atomic_write_text(path.with_suffix(".json"), json.dumps(skeleton))


def load_state(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """The state `save_state` wrote at `path`; an AttexpError naming the file if it is not a readable pair."""
    path = Path(path)
    meta, weights = path.with_suffix(".json"), path.with_suffix(".safetensors")
    try:
        skeleton = json.loads(meta.read_text(encoding="utf-8"))
        tensors = load_file(str(weights), device=str(device))
    except (OSError, ValueError, RuntimeError) as err:
        raise AttexpError(
            f"{meta} / {weights}: not a readable checkpoint ({err}). Delete both files to start the training over."
        ) from None
    return _join(skeleton, tensors, str(meta))


def exists(path: Path) -> bool:
    return Path(path).with_suffix(".json").is_file()


def _split(value: Any, where: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[where or "."] = value
        return {TENSOR: where or "."}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and TENSOR not in value and PAIRS not in value:
            return {k: _split(v, f"{where}.{k}", tensors) for k, v in value.items()}
        return {PAIRS: [[k, _split(v, f"{where}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, list | tuple):
        return [_split(v, f"{where}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return {FLOAT: repr(value)}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} at {where or '(top)'} in a checkpoint")


def _join(value: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {TENSOR}:
            try:
                return tensors[value[TENSOR]]
            except KeyError:
                raise AttexpError(f"{where}: tensor {value[TENSOR]!r} is missing from the .safetensors file.") from None
        if set(value) == {PAIRS}:
            return {_key(k): _join(v, tensors, where) for k, v in value[PAIRS]}
        if set(value) == {FLOAT}:
            return float(value[FLOAT])
        return {k: _join(v, tensors, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, tensors, where) for v in value]
    return value


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
