"""Small shared helpers: seeding and timing."""

from __future__ import annotations

import random

import numpy as np
import torch
from ignite.utils import manual_seed


def seed_everything(seed: int) -> None:
    """The one seeding function: python, numpy and torch (all devices) from the job's `seed`."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    manual_seed(seed)
    torch.manual_seed(seed)
