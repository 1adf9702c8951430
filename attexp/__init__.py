"""attexp: a config-driven experiment runner for explaining transformer text classifiers.

From Python: `attexp.explain(model, tokenizer, texts, "lig")` returns `attexp.Explanations` (`.show()`, `.save()`,
`.to_dataset()`, `.to_ferret()`), and `attexp.evaluate(explanations, model, tokenizer)` scores them; see
`attexp.api`.

`attexp.explain` and `attexp.evaluate` are also the packages of those stages (`import attexp.explain.attention`):
each package is made callable, calling the API function of the same name, so both uses work. (A plain function
bound to those names would break `import attexp.explain.attention as m`, which looks the package up by attribute.)
"""

import inspect as _inspect
import sys as _sys
import types as _types

__version__ = "0.1.0"

from attexp import api as _api  # noqa: E402  (after __version__, which the manifests read)
from attexp.api import Evaluation, Explanations  # noqa: E402


class _CallableStage(_types.ModuleType):
    """A stage package that, called, runs the API function of its name (`attexp.api.explain` / `.evaluate`)."""

    def __call__(self, *args, **kwargs):
        return getattr(_api, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


for _name in ("explain", "evaluate"):
    _module = _sys.modules[f"attexp.{_name}"]
    _module.__class__ = _CallableStage
    _module.__signature__ = _inspect.signature(getattr(_api, _name))  # what help() and notebooks show for a call

explain = _sys.modules["attexp.explain"]
evaluate = _sys.modules["attexp.evaluate"]

__all__ = ["Evaluation", "Explanations", "evaluate", "explain"]
