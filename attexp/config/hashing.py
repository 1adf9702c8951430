"""The config hash: which finished artifacts a config may reuse.

A job's hash is the sha256 of the canonical JSON of its resolved config, without the keys that cannot change its
results, plus the job's code version:

- keys marked `NotHashed` (the wandb block, the device) never enter it;
- keys marked `NeutralDefault` (added after artifacts were written) enter it only when they differ from their
  default, so an artifact written before the key existed keeps its hash; each config type declares this for the
  keys it owns, at any depth (an explainer's block, a metric's);
- the job's `version` (`Job.version`, as in tango's steps) enters it from version 2 on: a job whose code changes
  what it writes bumps its version, and every artifact of the older code is then refused as "finished with a
  different config" instead of being reused. Version 1 is the code before versions were recorded.

The runner compares a job's hash with its folder's manifest to skip, resume or refuse (`attexp.runner.decide`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from attexp import registry
from attexp.config.schema import NeutralDefault, NotHashed, Registered, marker, unwrap_model


def semantic(cls: type[BaseModel] | None, data: Any) -> Any:
    """`data` (a resolved config or part of one) without the keys that `cls` declares do not change results."""
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        info = cls.model_fields.get(key) if cls is not None else None
        if info is not None:
            if marker(info.metadata, NotHashed) is not None:
                continue
            if marker(info.metadata, NeutralDefault) is not None and value == _default(info):
                continue
            value = _nested(info, value)
        out[key] = value
    return out


def _default(info: Any) -> Any:
    default = info.get_default(call_default_factory=True)
    return default.model_dump(mode="json") if isinstance(default, BaseModel) else default


def _nested(info: Any, value: Any) -> Any:
    """A field's value with its own config type's neutral keys left out (components looked up by `type`)."""
    if isinstance(value, list):
        return [_nested(info, item) for item in value]
    if not isinstance(value, dict):
        return value
    registered = marker(info.metadata, Registered)
    if registered is not None and isinstance(value.get("type"), str):
        kind = registry.BY_KIND[registered.kind]
        if value["type"] in kind:
            return semantic(kind.get(value["type"]).config_type, value)
    return semantic(unwrap_model(info.annotation), value)


def hash_config(cls: type[BaseModel] | None, config: dict, version: int = 1) -> str:
    """sha256 of the canonical JSON of `config` (a resolved config of type `cls`) and the code `version`."""
    kept = semantic(cls, config)
    if version != 1:
        kept = {**kept, "__version__": version}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()


def config_hash(config: dict) -> str:
    """The hash of a resolved job config (`{"job": ..., ...}`), with its job type's config type and version
    looked up in the registry."""
    entry = registry.JOBS.get(config["job"]) if config.get("job") in registry.JOBS else None
    if entry is None:
        return hash_config(None, config)
    return hash_config(entry.config_type, config, getattr(entry.cls, "version", 1))
