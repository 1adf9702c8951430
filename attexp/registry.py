"""Name -> (class, config type) registries: JOBS, EXPLAINERS, METRICS, SOURCES, MODELS.

A component registers itself with its config type::

    @EXPLAINERS.register("lig", LIGConfig)
    class LayerIntegratedGradients(Explainer): ...

Config files name components by that key (`{"type": "lig", ...}`; jobs by `{"job": "explain"}`), and the
config loader validates the rest of the dict against the registered config type. A miss lists the valid
names with a did-you-mean. A package registers its components when it is imported; `load_all()` imports every
package of attexp, so the registries are complete before a config is validated.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from attexp.errors import ConfigError, did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    cls: type[T]
    config_type: type
    summary: str


class Registry(Generic[T]):
    """A named table of components of one kind."""

    def __init__(self, kind: str, key: str = "type") -> None:
        self.kind = kind  # e.g. "explainer"
        self.key = key  # the config key that names the component
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, config_type: type):
        """Class decorator: register `cls` under `name` with its config type."""

        def wrap(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name].cls is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice: {self._entries[name].cls} and {cls}")
            doc = (cls.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, cls, config_type, doc[0] if doc else "")
            cls.registered_name = name  # type: ignore[attr-defined]
            return cls

        return wrap

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str, where: str = "") -> Entry[T]:
        """The entry for `name`; a ConfigError listing the valid names otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            at = f"{where}: " if where else ""
            allowed = self.names()
            raise ConfigError(
                f"{at}unknown {self.kind} {name!r}. Allowed: {', '.join(allowed)}.{did_you_mean(name, allowed)}"
            ) from None


JOBS: Registry[Any] = Registry("job", key="job")
EXPLAINERS: Registry[Any] = Registry("explainer")
METRICS: Registry[Any] = Registry("metric")
SOURCES: Registry[Any] = Registry("data source")
MODELS: Registry[Any] = Registry("model source")

# job type -> fn(config, ctx) that draws the pages of that job's artifact into its folder. The runner calls it
# after the job's `run`, before the job is marked finished. The visualize stage registers these, so that a job
# of a lower stage (e.g. an analysis that writes records) gets its pages without importing the renderer.
RENDERERS: dict[str, Callable[[Any, Any], None]] = {}


def renders(job: str) -> Callable[[Callable[[Any, Any], None]], Callable[[Any, Any], None]]:
    """Function decorator: register `fn(config, ctx)` as the page renderer of job type `job`."""

    def wrap(fn: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        if job in RENDERERS and RENDERERS[job] is not fn:
            raise ValueError(f"job {job!r} has two page renderers: {RENDERERS[job]} and {fn}")
        RENDERERS[job] = fn
        return fn

    return wrap


def load_all() -> None:
    """Import every package of attexp (idempotent): a package registers its components when it is imported
    (its `__init__` imports the modules that register), so no list of modules is kept by hand. The package
    folder is scanned once per process; later calls (every artifact lookup makes one) return at once."""
    global _LOADED
    if _LOADED:
        return
    for info in pkgutil.iter_modules([str(Path(__file__).parent)], prefix="attexp."):
        if info.ispkg:
            importlib.import_module(info.name)
    _LOADED = True


_LOADED = False
