"""Batches for training and evaluation loops: rows encoded without padding, padded per batch to its longest
sequence (`pad_collate`), and batches of similar length (`LengthBucketSampler`), so that the cost of a batch
follows its real lengths rather than `max_length`. Under torchrun each rank takes its share of every batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from attexp import distributed as dist
from attexp.errors import AttexpError
from attexp.models.inputs import pad_features, tokenize_rows

log = logging.getLogger(__name__)


def encode_rows(
    rows: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[dict[str, Any]]:
    """Tokenize dataset rows (`{"idx", "text", "label"}` plus `"text_pair"` for pairs) without padding.

    Returns one feature per row: `{"idx", "input_ids", "label"}` plus `"token_type_ids"` when the tokenizer
    produces them (sentence pairs get segment ids 0/1). Sequences are truncated to `max_length` tokens.
    """
    if not rows:
        return []
    missing = [key for key in ("idx", "text", "label") if key not in rows[0]]
    if missing:
        raise AttexpError(f"dataset rows need the keys idx, text, label; the first row lacks {missing}: {rows[0]}")
    encoded = tokenize_rows(tokenizer, rows, max_length)
    return [
        {"idx": row["idx"], **feature, "label": int(row["label"])} for row, feature in zip(rows, encoded, strict=True)
    ]


def pad_collate(features: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, Tensor]:
    """Stack features into a batch padded to its longest sequence.

    Always gives `input_ids` and `attention_mask` [B, T]; `token_type_ids` [B, T] when the features have them;
    `labels` [B] from `label`; `attributions` [B, T] (float, 0 on padding) and `targets` [B] (the class each
    was explained for, when every feature has a `target`) for explainer distillation.
    """
    ids, mask, types = pad_features(features, pad_token_id)  # each [B, T]
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    first = features[0]
    if "attributions" in first:
        batch["attributions"] = torch.zeros(ids.shape, dtype=torch.float)
        for row, feature in enumerate(features):
            batch["attributions"][row, : len(feature["attributions"])] = torch.tensor(feature["attributions"])
    if "label" in first:
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    if all("target" in f for f in features):
        batch["targets"] = torch.tensor([f["target"] for f in features], dtype=torch.long)
    return batch


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length: sorted by length within random chunks of `bucket_batches` batches.

    Training (`shuffle=True`): each epoch draws a permutation from `seed + epoch` (set by `set_epoch`, which
    `fit` calls at every epoch start, so a resumed run sees the same order as an uninterrupted one), sorts
    each chunk by length, and shuffles the order of the resulting batches. Evaluation: sorted by length.

    Data-parallel (`world_size` > 1): every rank draws the same global batches of `batch_size` rows and takes its
    share of each (`attexp.distributed.share_of`, the rule every split follows), so the global batch is the config's
    `batch_size` split over the ranks and DDP's averaged gradient is the one-process gradient of that batch (exactly
    when the ranks' shares are equal in size). In training, a last global batch with fewer rows than ranks is
    dropped (every rank must step together); in evaluation a rank whose share of a batch is empty skips it (the
    metrics are all-reduced).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise AttexpError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        by_length = self.lengths.__getitem__
        if not self.shuffle:
            order = sorted(range(len(self.lengths)), key=by_length)
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=generator).tolist()
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(perm), chunk):
            part = sorted(perm[start : start + chunk], key=by_length)
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _shares(self) -> list[list[int]]:
        """This rank's share of every global batch (all of them for one process)."""
        batches = self._batches()
        if self.world_size == 1:
            return batches
        if self.shuffle:
            batches = [b for b in batches if len(b) >= self.world_size]
        return [share for b in batches if (share := dist.share_of(b, self.rank, self.world_size))]

    def __iter__(self):
        return iter(self._shares())

    def __len__(self) -> int:
        if self.world_size == 1:
            return math.ceil(len(self.lengths) / self.batch_size)
        return len(self._shares())


def make_loader(
    features: Sequence[Mapping[str, Any]],
    batch_size: int,
    pad_token_id: int,
    shuffle: bool = False,
    seed: int = 0,
    shard: bool = False,
) -> DataLoader:
    """A DataLoader over encoded features with length buckets and dynamic padding (`pad_collate`). `shard`: under
    torchrun, this rank's share of every batch (`LengthBucketSampler`); one process gets every row either way."""
    rank, world = (dist.rank(), dist.world_size()) if shard else (0, 1)
    sampler = LengthBucketSampler(
        [len(f["input_ids"]) for f in features], batch_size, shuffle, seed, rank=rank, world_size=world
    )
    return DataLoader(features, batch_sampler=sampler, collate_fn=partial(pad_collate, pad_token_id=pad_token_id))


def to_device(batch: Mapping[str, Tensor], device: torch.device | str) -> dict[str, Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def model_inputs(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The encoder inputs of a batch (`input_ids`, `attention_mask`, `token_type_ids` when present)."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
