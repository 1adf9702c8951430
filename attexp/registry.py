"""Name -> (class, config type) registries: JOBS, EXPLAINERS, METRICS, SOURCES, MODELS.

A component registers itself with its config type::

    @EXPLAINERS.register("lig", LIGConfig)
    class LayerIntegratedGradients(Explainer): ...

Config files name components by that key (`{"type": "lig", ...}`; jobs by `{"job": "explain"}`), and the
config loader validates the rest of the dict against the registered config type. A miss lists the valid
names with a did-you-mean. A package registers its components when it is imported; the first lookup in any
registry imports every package of attexp (`load_all`), so the registries are complete whenever they are read and no
module below the faces has to import the stage packages itself (tests/test_layers.py checks that only this module
imports by name).
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
        load_all()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        load_all()
        return name in self._entries

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str, where: str = "") -> Entry[T]:
        """The entry for `name`; a ConfigError listing the valid names otherwise."""
        load_all()
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

BY_KIND: dict[str, Registry[Any]] = {
    "explainer": EXPLAINERS,
    "metric": METRICS,
    "data source": SOURCES,
    "model source": MODELS,
}
"""The component registries by the kind a `Registered` config field names."""

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


PlanCheck = Callable[[Any, list, Path], list[str]]
PLAN_CHECKS: list[PlanCheck] = []
"""Checks of a validated plan that need more than the config layer knows (e.g. a model's architecture against the
explainers that read it), registered by the package that knows it and run by the config loader with its own checks
(`attexp.config.loader.validate`): fn(plan, built, base_dir) -> problems, where `built` is the list of (dotted
location, job config or None where it did not validate, raw dict)."""


def checks_plans(fn: PlanCheck) -> PlanCheck:
    """Function decorator: register `fn` as a plan check (`PLAN_CHECKS`)."""
    if fn not in PLAN_CHECKS:
        PLAN_CHECKS.append(fn)
    return fn


def plan_checks() -> list[PlanCheck]:
    """The registered plan checks, every package loaded."""
    load_all()
    return list(PLAN_CHECKS)


def load_all() -> None:
    """Import every package of attexp (idempotent): a package registers its components when it is imported
    (its `__init__` imports the modules that register), so no list of modules is kept by hand. The package
    folder is scanned once per process; later calls (every lookup makes one) return at once, and so does a lookup
    made while the packages are being imported (a module reading a registry at import time sees what has
    registered so far)."""
    global _LOADED, _LOADING
    if _LOADED or _LOADING:
        return
    _LOADING = True
    try:
        for info in pkgutil.iter_modules([str(Path(__file__).parent)], prefix="attexp."):
            if info.ispkg:
                importlib.import_module(info.name)
        _LOADED = True
    finally:
        _LOADING = False


_LOADED = False
_LOADING = False
