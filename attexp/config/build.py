"""Build typed configs from dicts: components first, then the object, every problem as one readable line.

A `Registered` field's dict is looked up in its registry by `type` and validated against that entry's config type;
pydantic's errors are translated into lines that name the dotted key, what was given, what is allowed and a
did-you-mean. Problems are collected, not raised one by one, so that a config's author sees them all at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from attexp import registry
from attexp.config.schema import JobConfig, Registered, Upstream, marker, unwrap_model
from attexp.errors import ConfigError, did_you_mean


def validate_object(cls: type[BaseModel], data: dict, source: str) -> Any:
    """`data` validated into `cls` as the loader validates a job (registered components built, every problem
    listed with its key, what was given, what is allowed and a did-you-mean); raises ConfigError. For Python
    callers (`attexp.api`), who get the same messages as a config file's author."""
    errors: list[str] = []
    built = _build(cls, data, "", errors)
    if errors or built is None:
        raise ConfigError(f"{source}: {len(errors)} problem(s):\n" + "\n".join(f"  {e}" for e in errors))
    return built


def join(loc: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{loc}[{key}]"
    return f"{loc}.{key}" if loc else str(key)


def build_job(item: Any, loc: str, errors: list[str]) -> JobConfig | None:
    where = loc or "(top level)"
    if not isinstance(item, dict):
        errors.append(f"{where}: expected a job object, got {item!r}.")
        return None
    if "job" not in item:
        errors.append(f"{join(loc, 'job')}: missing key 'job'. Allowed: {', '.join(registry.JOBS.names())}.")
        return None
    try:
        entry = registry.JOBS.get(item["job"], where=join(loc, "job"))
    except ConfigError as e:
        errors.append(str(e))
        return None
    return _build(entry.config_type, item, loc, errors)


def _build(cls: type[BaseModel], data: Any, loc: str, errors: list[str]) -> Any:
    """Validate `data` against `cls`, building `Registered` components first. Appends errors, returns None."""
    if not isinstance(data, dict):
        errors.append(f"{loc or '(top level)'}: expected an object, got {data!r}.")
        return None
    data = dict(data)
    failed: list[str] = []  # fields whose component did not validate
    for name, info in cls.model_fields.items():
        registered = marker(info.metadata, Registered)
        if registered is None or name not in data or data[name] is None:
            continue
        reg = registry.BY_KIND[registered.kind]
        value = data[name]
        if isinstance(value, str) and marker(info.metadata, Upstream) is not None:
            continue  # the field takes an upstream job's name or a component; this is a name
        before = len(errors)
        if isinstance(value, list):
            data[name] = [
                _build_component(reg, v, join(join(loc, name), i), errors, registered.only) for i, v in enumerate(value)
            ]
        else:
            data[name] = _build_component(reg, value, join(loc, name), errors, registered.only)
        if len(errors) > before:
            failed.append(name)
    if failed:  # still report the problems of the other fields, in the same run
        rest = {k: v for k, v in data.items() if k not in failed}
        try:
            cls.model_validate(rest)
        except ValidationError as e:
            errors.extend(line for line in _describe(e, cls, loc) if not _about(line, loc, failed))
        except ConfigError:
            pass  # a cross-field check that needs the failed component; reported once that is fixed
        return None
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        errors.extend(_describe(e, cls, loc))
        return None
    except ConfigError as e:  # a validator's check that Python callers get as a ConfigError too
        errors.append(f"{loc or '(top level)'}: {e}")
        return None


def _about(line: str, loc: str, fields: list[str]) -> bool:
    """Whether an error line is about one of `fields` of the object at `loc` (left out above, so 'missing')."""
    return any(line.startswith(join(loc, name) + ":") or line.startswith(join(loc, name) + ".") for name in fields)


def _build_component(reg: registry.Registry, value: Any, loc: str, errors: list[str], only: Sequence[str] = ()) -> Any:
    if isinstance(value, BaseModel):
        return value
    allowed = list(only) or reg.names()
    if not isinstance(value, dict) or "type" not in value:
        name_too = " (or the name of an upstream train job)" if only else ""
        errors.append(
            f"{loc}: expected an object with a 'type' key{name_too}, given {value!r}. Allowed types: "
            f"{', '.join(allowed)}."
        )
        return None
    try:
        entry = reg.get(value["type"], where=join(loc, "type"))
    except ConfigError as e:
        errors.append(str(e))
        return None
    if only and value["type"] not in only:
        errors.append(
            f"{join(loc, 'type')}: {value['type']!r} given; allowed here: {', '.join(only)}. A "
            f"{value['type']!r} model is not trained: train it in a train job and name that job here."
        )
        return None
    return _build(entry.config_type, value, loc, errors)


def _model_at(cls: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model class whose field the last element of `path` names (for listing allowed keys)."""
    current: Any = cls
    for part in path:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = unwrap_model(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _describe(error: ValidationError, cls: type[BaseModel], loc: str) -> list[str]:
    lines = []
    for e in error.errors():
        path = tuple(e["loc"])
        dotted = loc
        for part in path:
            dotted = join(dotted, part)
        model = _model_at(cls, path[:-1])
        allowed = sorted(model.model_fields) if model else []
        key = path[-1] if path else ""
        if e["type"] == "extra_forbidden":
            lines.append(
                f"{dotted}: unknown key {key!r} (given: {e['input']!r}). Allowed keys: {', '.join(allowed)}."
                f"{did_you_mean(str(key), allowed)}"
            )
        elif e["type"] == "missing":
            lines.append(f"{dotted}: missing key {key!r} (required). Allowed keys: {', '.join(allowed)}.")
        elif e["type"] == "literal_error":
            expected = e.get("ctx", {}).get("expected", "")
            choices = [c.strip(" '") for c in expected.replace(" or ", ",").split(",") if c.strip()]
            lines.append(
                f"{dotted}: {e['input']!r} given; allowed: {expected}.{did_you_mean(str(e['input']), choices)}"
            )
        elif e["type"] == "value_error":  # a validator's own message; a whole object given is not repeated
            message = e["msg"].rstrip(".")
            given = "" if isinstance(e["input"], dict) else f" (given: {e['input']!r})"
            lines.append(f"{dotted or '(top level)'}: {message}{given}.")
        else:
            lines.append(f"{dotted}: {e['msg']} (given: {e['input']!r}).")
    return lines
