"""The explained classifier as a function of token-id sequences, and explanation records ready to perturb.

`ModelScorer` is the scorer of the faithfulness metrics (`attexp.evaluate.faithfulness`, `attexp.evaluate.masking`):
it collects every perturbed sequence of every instance, runs each distinct one once (also across calls, so the
unperturbed inputs shared by several metrics cost one pass), sorts them by length and runs them in batches of
similar length of at most `batch_size` rows, counting forward passes and time. `prepare` turns explanation records
into `Instance`s: ids, segments, scores, the content positions (everything but the structural specials) and their
ranking.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from attexp.errors import AttexpError
from attexp.evaluate.base import attributions_of, by_idx, record_field
from attexp.models.inputs import batch_pad_id, length_bucketed_batches, pad_features, structural_positions
from attexp.models.loading import check_logits
from attexp.models.memo import RowMemo, row_key
from attexp.models.precision import Precision, autocast

logger = logging.getLogger(__name__)

Perturbation = Literal["delete", "mask", "pad"]
Row = tuple[np.ndarray, np.ndarray | None]  # one input: ids (T,) and segment ids (T,) or None
PREDICTION_TOLERANCE = 1e-3  # |recomputed - recorded| probability beyond which the model is not the explained one


# ---------------------------------------------------------------------------------------- the model


class ModelScorer:
    """The explained classifier as a function of token-id sequences: batched, de-duplicated and counted.

    `probabilities(sequences)` returns class probabilities [N, C] for N unpadded id sequences (with optional
    segment ids). Identical sequences are run once (also across calls, so the unperturbed inputs shared by
    several metrics cost one pass); the rest are sorted by length, longest first, and run in batches of similar
    length of at most `batch_size` rows (`attexp.models.inputs.length_bucketed_batches`). `forward_passes` counts
    model calls, `rows` the sequences run, `seconds` the time spent.
    `cache=False` turns off the de-duplication (to measure a plain loop). `other_model`: the model is not the one
    the records were made with (an evaluate job's `deletion_model`), so differing probabilities are expected.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        cache: bool = True,
        precision: Precision | None = None,
        other_model: bool = False,
    ) -> None:
        if batch_size < 1:
            raise AttexpError(f"ModelScorer: batch_size must be at least 1, got {batch_size}.")
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.cache = cache
        self.precision = precision
        self.pad_id = batch_pad_id(model, tokenizer)
        self.uses_segments = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.other_model = other_model  # not the explained model (F-Fidelity's copy): its probabilities differ
        self.forward_passes = 0
        self.rows = 0
        self.seconds = 0.0
        self._memo: RowMemo[np.ndarray] = RowMemo()

    def known(self) -> tuple[list[bytes], list[np.ndarray]]:
        """Every row key this scorer has run (or been given) and its probabilities (C,), in the same order."""
        return list(self._memo.outputs), list(self._memo.outputs.values())

    def learn(self, keys: Sequence[bytes], probabilities: Sequence[np.ndarray]) -> None:
        """Take rows another scorer of the same model ran (`known`), so that asking for them runs nothing (the
        shares of a sharded evaluate job, `attexp.evaluate.shares`)."""
        self._memo.outputs.update(zip(keys, probabilities, strict=True))

    def replacement_id(self, perturbation: Perturbation) -> int | None:
        """The id that replaces removed tokens (None for `delete`); an error if the tokenizer lacks it."""
        if perturbation == "delete":
            return None
        token_id = self.tokenizer.mask_token_id if perturbation == "mask" else self.tokenizer.pad_token_id
        if token_id is None:
            raise AttexpError(
                f"perturbation={perturbation!r} needs the tokenizer's {perturbation}_token_id, but "
                f"{type(self.tokenizer).__name__} has none. Use perturbation='delete' or another replacement."
            )
        return int(token_id)

    def segments_of(self, ids: np.ndarray) -> np.ndarray | None:
        """Segment ids (T,) of unpadded ids (T,): 0 up to and including the first [SEP], 1 after (BERT pairs)."""
        if not self.uses_segments:
            return None
        sep = self.tokenizer.sep_token_id
        if sep is None:
            return np.zeros_like(ids)
        is_sep = ids == sep
        return ((np.cumsum(is_sep) - is_sep) > 0).astype(np.int64)

    def probabilities(self, sequences: Sequence[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Class probabilities [N, C] of N (ids (T_i,), segments (T_i,) or None) sequences."""
        keys = [row_key(ids, segments) for ids, segments in sequences]
        memo = self._memo
        if not self.cache:  # every sequence runs, duplicates included: key them by position, forget them after
            keys = [i.to_bytes(8, "little") + key for i, key in enumerate(keys)]
            memo = RowMemo()
        began = time.perf_counter()
        rows = memo.run(keys, lambda positions: self._run([sequences[p] for p in positions]))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - began
        return np.stack(rows) if rows else np.zeros((0, 0))

    def _run(self, sequences: list[tuple[np.ndarray, np.ndarray | None]]) -> list[np.ndarray]:
        """Probabilities of `sequences` in their order, run longest first in batches of similar length of at most
        `batch_size` rows (`length_bucketed_batches`)."""
        out: list[np.ndarray] = [np.zeros(0)] * len(sequences)
        for chunk in length_bucketed_batches([len(ids) for ids, _ in sequences], self.batch_size):
            for i, row in zip(chunk, self.forward([sequences[i] for i in chunk]), strict=True):
                out[i] = row
        return out

    def forward(self, sequences: list[tuple[np.ndarray, np.ndarray | None]]) -> np.ndarray:
        """Class probabilities [N, C] of these rows in one padded forward, in their order, counted, nothing
        de-duplicated or remembered: for rows whose inputs are more than their ids (the soft metrics' masked
        embeddings, set by a hook on the model while this runs)."""
        features = [
            {"input_ids": ids, **({"token_type_ids": seg} if self.uses_segments else {})} for ids, seg in sequences
        ]
        ids, mask, segments = pad_features(features, self.pad_id)  # each [N, T]
        kwargs = {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if segments is not None:
            kwargs["token_type_ids"] = segments.to(self.device)
        with torch.inference_mode():
            with autocast(self.device, self.precision):
                logits = self.model(**kwargs).logits
            check_logits(logits, self.model, "evaluate (the model's scores of perturbed inputs)")
            # in float64: float32 rounds probabilities near 0 and 1 together (1 - 1e-8 is 1), making ties the
            # logits do not have, which rank metrics (tau-LOO) then break by float noise
            probabilities = logits.float().cpu().double().softmax(dim=-1)  # [N, C] (MPS has no float64)
        self.forward_passes += 1
        self.rows += len(sequences)
        return probabilities.numpy()


# ------------------------------------------------------------------------------------ instances


@dataclass
class Instance:
    """One explanation record, ready to perturb.

    ids (T,), segments (T,) or None, scores (T,); content: positions that may be removed (not structural
    specials), in text order; order: content positions sorted by score, most relevant first (ties: earlier
    first); target: the explained class; label: the gold class or None; recorded: the recorded class
    probabilities (C,) or None; word_ids: per token, the index of its word (None for specials), where the record
    has them.
    """

    idx: int
    ids: np.ndarray
    segments: np.ndarray | None
    scores: np.ndarray
    content: np.ndarray
    order: np.ndarray
    target: int
    label: int | None
    recorded: np.ndarray | None
    word_ids: list[int | None] | None = None

    @property
    def n(self) -> int:
        return len(self.content)

    def without(self, drop: np.ndarray, replacement: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The input with positions `drop` deleted (`replacement` None) or replaced by that id."""
        if replacement is None:
            keep = np.ones(len(self.ids), dtype=bool)
            keep[drop] = False
            return self.ids[keep], None if self.segments is None else self.segments[keep]
        ids = self.ids.copy()
        ids[drop] = replacement
        return ids, self.segments

    def only(self, kept: np.ndarray, replacement: int | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The input with every content token except `kept` removed (specials stay)."""
        return self.without(np.setdiff1d(self.content, kept), replacement)

    def full(self) -> tuple[np.ndarray, np.ndarray | None]:
        return self.ids, self.segments


def prepare(records: Sequence[dict], scorer: ModelScorer) -> list[Instance]:
    """Explanation records -> instances in ascending idx order (duplicates and malformed records refused)."""
    instances = []
    records_by_idx = by_idx(records, "explanations")
    for idx in sorted(records_by_idx):
        record = records_by_idx[idx]
        ids = np.asarray(record_field(record, "input_ids", "explanations"), dtype=np.int64)  # (T,)
        scores = attributions_of(record, "explanations")  # (T,)
        if len(scores) != len(ids):
            raise AttexpError(
                f"idx {idx}: {len(scores)} attributions for {len(ids)} input_ids; a record holds one score per "
                f"token. Re-run the explain job that wrote it with --force."
            )
        ids_t = torch.from_numpy(ids)[None]
        structural = structural_positions(ids_t, torch.ones_like(ids_t), scorer.tokenizer)[0].numpy()
        content = np.flatnonzero(~structural)
        # most relevant first; a stable sort on the negated scores keeps earlier positions first among ties
        order = content[np.argsort(-scores[content], kind="stable")]
        label = record.get("label")
        recorded = record.get("predictions")
        instances.append(
            Instance(
                idx=idx,
                ids=ids,
                segments=scorer.segments_of(ids),
                scores=scores,
                content=content,
                order=order,
                target=int(record_field(record, "target", "explanations")),
                label=None if label is None else int(label),
                recorded=None if not recorded else np.asarray(recorded, dtype=np.float64),
                word_ids=record.get("word_ids"),
            )
        )
    return instances


def full_probabilities(instances: Sequence[Instance], scorer: ModelScorer, where: str) -> np.ndarray:
    """Recomputed class probabilities [N, C] of the unperturbed inputs; warns if they differ from the records."""
    probabilities = scorer.probabilities([inst.full() for inst in instances])
    off = [
        inst.idx
        for inst, row in zip(instances, probabilities, strict=True)
        if inst.recorded is not None
        and (inst.recorded.shape != row.shape or np.max(np.abs(inst.recorded - row)) > PREDICTION_TOLERANCE)
    ]
    if off and scorer.other_model:
        logger.info("%s: the model measured is not the explained one (deletion_model), as configured", where)
    elif off:
        logger.warning(
            "%s: for %d of %d instances (e.g. idx %s) the model's probabilities differ from the recorded "
            "predictions by more than %g: the explanations were probably made with another model (check the "
            "evaluate job's `model`) or on a device with different numerics",
            where,
            len(off),
            len(instances),
            off[:5],
            PREDICTION_TOLERANCE,
        )
    return probabilities
