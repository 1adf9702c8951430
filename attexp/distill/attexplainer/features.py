"""The agent's view of the victim: per-token attention features (Niu et al., IJCAI 2022, "AttExplainer").

AttExplainer's agent never sees token identities, only how attention flows. One victim forward gives the
attention probabilities of every layer and head; they are averaged into one [T, T] matrix (rows: the token
that attends, columns: the token attended to), and each real token is described by

- a histogram over `bins` equal bins of [0, 1] of the attention it *receives* (its column),
- a histogram of the attention it *gives* (its row),
- four statistics: mean and standard deviation of the attention it gives, then of the attention it receives,

so `2 * bins + 4` numbers per token (68 for the paper's 32 bins). Histograms count entries between real tokens
only and are divided by the number of real tokens, so each sums to at most 1 (exactly 1 for a real token).
Padding rows are all zero. Differences from the official code (niuzaisheng/AttExplainer, utils.py), which do
not change what the features mean: an attention of exactly 0 or 1 falls into the first or last bin instead of no
bin, and the standard deviations are population ones (the code's sample std is NaN for one-token inputs).
"""

from __future__ import annotations

import torch
from torch import Tensor


def feature_size(bins: int) -> int:
    """Features per token: two histograms of `bins` bins and four statistics."""
    return 2 * bins + 4


def mean_attention(probs: list[Tensor]) -> Tensor:
    """Per-layer attention probabilities, each [B, heads, T, T] -> their layer and head mean [B, T, T]."""
    total = probs[0].mean(dim=1)
    for layer in probs[1:]:
        total = total + layer.mean(dim=1)
    return total / len(probs)


def attention_features(attention: Tensor, attention_mask: Tensor, bins: int = 32) -> Tensor:
    """attention [B, T, T] (rows attend to columns), attention_mask [B, T] -> features [B, T, 2 * bins + 4].

    Layout per token: received histogram (bins), given histogram (bins), given mean, given std, received mean,
    received std. Padding positions are all zero.
    """
    real = attention_mask.bool()  # [B, T]
    pair = (real[:, :, None] & real[:, None, :]).to(attention.dtype)  # [B, T, T]: both ends are real tokens
    lengths = real.sum(dim=-1).clamp_min(1).to(attention.dtype)  # [B]
    values = attention.clamp(0.0, 1.0)
    which = (values * bins).long().clamp_max(bins - 1)  # [B, T, T] bin of each entry
    counts = torch.nn.functional.one_hot(which, bins).to(attention.dtype) * pair[..., None]  # [B, T, T, bins]
    received = counts.sum(dim=1) / lengths[:, None, None]  # [B, T, bins]: over the rows attending to column j
    given = counts.sum(dim=2) / lengths[:, None, None]  # [B, T, bins]: over the columns row i attends to
    masked = values * pair  # [B, T, T]
    given_mean = masked.sum(dim=2) / lengths[:, None]  # [B, T]
    received_mean = masked.sum(dim=1) / lengths[:, None]  # [B, T]
    given_std = (((values - given_mean[:, :, None]) ** 2 * pair).sum(dim=2) / lengths[:, None]).sqrt()
    received_std = (((values - received_mean[:, None, :]) ** 2 * pair).sum(dim=1) / lengths[:, None]).sqrt()
    stats = torch.stack([given_mean, given_std, received_mean, received_std], dim=-1)  # [B, T, 4]
    features = torch.cat([received, given, stats], dim=-1)  # [B, T, 2 * bins + 4]
    return features * real[:, :, None].to(attention.dtype)
