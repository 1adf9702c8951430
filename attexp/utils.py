"""Small shared helpers: seeding, and what counts as a number in a table."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np
import torch
from ignite.utils import manual_seed


def seed_everything(seed: int) -> None:
    """The one seeding function: python, numpy and torch (all devices) from the job's `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    manual_seed(seed)
    torch.manual_seed(seed)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): a table cell that can be ranked, tested or plotted."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
