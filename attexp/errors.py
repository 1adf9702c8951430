"""The two kinds of failure attexp reports.

`ConfigError` is raised before any work when a config (or the state of the base directory it points at)
cannot run; the CLI prints it without a traceback and exits with code 2. `AttexpError` is a failure while
a job runs (bad data, a corrupt artifact); the CLI prints it and exits with code 1. Both carry a message
that names what was received, what was expected and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AttexpError(Exception):
    """A runtime failure with a message meant for the user (exit code 1)."""


class ConfigError(AttexpError):
    """A config that cannot run (exit code 2). Raised before anything is written."""


def did_you_mean(given: str, allowed: Iterable[str]) -> str:
    """' Did you mean 'x'?' for the closest allowed name, or '' when nothing is close."""
    close = difflib.get_close_matches(str(given), list(allowed), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""
