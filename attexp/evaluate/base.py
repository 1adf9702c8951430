"""What every metric is: the `Metric` base class, the `MetricResult` it returns, and the readers of explanation
records that metrics share.

A metric is a registry entry (`METRICS`) built as `Cls(config)` from its typed config. Like `Explainer`, the base
class declares what an instance needs, so the evaluate stage and the table-driven tests in
tests/test_metric_registry.py treat every metric alike:

- `needs_reference`: it compares with a reference explainer's records (agreement metrics, `cost`'s speed-up);
- `needs_model`: it runs the explained classifier and takes it as `compute(..., scorer=...)` (the faithfulness
  metrics of `attexp.evaluate.faithfulness` and `attexp.evaluate.masking`; the scorer is
  `attexp.evaluate.model_scorer.ModelScorer`);
- `uses_attributions`: False for metrics of the predictions or the cost alone (the random floor adds nothing
  to them).

`compute(records, reference=None, *, scorer=None)` returns a `MetricResult`. Records follow the explanation
record format (`attexp.io.records.EXPLANATIONS`: one JSON object per instance with `idx`, `input_ids`,
`attributions`, ...; no padding is ever stored); a record and its reference are paired by `idx` with
`join_by_idx`, which refuses pairs whose `input_ids` differ: comparing scores of different tokenisations position
by position is meaningless.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError

logger = logging.getLogger(__name__)


@dataclass
class MetricResult:
    """What a metric returns.

    `summary` holds the dataset-level numbers under keys unique across metrics (`mse`, `spearman`,
    `spearman_std`, `f1`, `speedup`, ...), so several summaries can be merged into one table row; counts
    (`n`, the number of instances measured, and `skipped`) are ints.
    `per_instance` maps a record's `idx` to its own numbers (or lists of numbers, e.g. one per bin); it may be
    empty. `curves` (optional) maps a curve name to `{"x": [...], "y": [...], "xlabel", "ylabel"}`, the mean
    curve over instances (e.g. comprehensiveness per bin) that the evaluate stage plots and stores.
    """

    summary: dict[str, float]
    per_instance: dict[int, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, dict[str, Any]] = field(default_factory=dict)


class Metric(abc.ABC):
    """Base class of all metrics: construct once with `Cls(config)`, then `compute(records, reference, scorer=...)`
    for each explanations file. Capability flags: see the module docstring."""

    needs_reference: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False
    uses_attributions: ClassVar[bool] = True
    registered_name: ClassVar[str]

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def compute(self, records: list[dict], reference: list[dict] | None = None, *, scorer: Any = None) -> MetricResult:
        """The metric over `records` (against `reference`, with the model's `scorer` when it needs them)."""


# --------------------------------------------------------------------------------------------- records


def record_field(record: dict, key: str, where: str) -> Any:
    """`record[key]`, or an AttexpError that names the record and the format it should have."""
    try:
        return record[key]
    except KeyError:
        raise AttexpError(
            f"{where}: record idx={record.get('idx', '?')} has no {key!r} field (it has {sorted(record)}). "
            f"Expected an explanation record (idx, input_ids, tokens, label, predictions, target, attributions, "
            f"seconds, forward_passes, backward_passes); point the evaluate job at an explain job's output."
        ) from None


def by_idx(records: Sequence[dict], what: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for record in records:
        idx = int(record_field(record, "idx", what))
        if idx in out:
            raise AttexpError(
                f"{what}: idx {idx} occurs twice; an artifact holds one record per instance. "
                f"The artifact is corrupt: re-run the job that wrote it with --force."
            )
        out[idx] = record
    return out


def attributions_of(record: dict, where: str) -> np.ndarray:
    values = np.asarray(record_field(record, "attributions", where), dtype=np.float64)  # (seq_len,)
    if values.ndim != 1:
        raise AttexpError(
            f"{where}: record idx={record.get('idx')} has attributions of shape {values.shape}; expected one "
            f"score per token (a flat list)."
        )
    return values


def join_by_idx(
    explanations: Sequence[dict], reference: Sequence[dict], check_input_ids: bool = True
) -> list[tuple[dict, dict]]:
    """Pair each explanation record with the reference record of the same `idx`, in ascending `idx` order.

    Records present on one side only are left out and counted in a log warning. Raises AttexpError when no
    `idx` is shared, when an `idx` repeats within one side, or (with `check_input_ids`) when a pair's
    `input_ids` differ, which means the two were tokenised differently (another model's tokenizer, another
    `max_length`) and their scores cannot be compared position by position.
    """
    mine = by_idx(explanations, "explanations")
    theirs = by_idx(reference, "reference")
    common = sorted(mine.keys() & theirs.keys())
    if not common:
        raise AttexpError(
            f"explanations and reference share no idx (explanations: {len(mine)} records{_idx_range(mine)}, "
            f"reference: {len(theirs)} records{_idx_range(theirs)}). Both must explain the same split of the "
            f"same dataset: check that the evaluate job's explanations and reference name explain jobs over "
            f"the same data job and split."
        )
    only_mine, only_theirs = len(mine) - len(common), len(theirs) - len(common)
    if only_mine or only_theirs:
        logger.warning(
            "joined %d records by idx; left out %d explanation records and %d reference records without a partner",
            len(common),
            only_mine,
            only_theirs,
        )
    pairs = [(mine[i], theirs[i]) for i in common]
    if check_input_ids:
        for a, b in pairs:
            ids_a, ids_b = (
                list(record_field(a, "input_ids", "explanations")),
                list(record_field(b, "input_ids", "reference")),
            )
            if ids_a != ids_b:
                first = next(
                    (p for p, (x, y) in enumerate(zip(ids_a, ids_b, strict=False)) if x != y),
                    min(len(ids_a), len(ids_b)),
                )
                raise AttexpError(
                    f"idx {a['idx']}: input_ids differ between explanations and reference (lengths {len(ids_a)} "
                    f"and {len(ids_b)}, first difference at position {first}). The two were tokenised "
                    f"differently: explained with different models/tokenizers or a different max_length. "
                    f"Fix: explain both with the same model (or a learned explainer distilled from it) and the "
                    f"same max_length."
                )
    return pairs


def _idx_range(records: dict[int, dict]) -> str:
    return f", idx {min(records)}..{max(records)}" if records else ""


def need_reference(name: str, reference: Sequence[dict] | None) -> Sequence[dict]:
    if reference is None:
        raise AttexpError(
            f"metric {name!r} compares with a reference explainer but none was given; set the evaluate job's "
            f"reference to an explain job, or drop {name!r} from its metrics."
        )
    return reference


def same_length(record: dict, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise AttexpError(
            f"idx {record['idx']}: {len(a)} attributions against {len(b)} in the reference although the input_ids "
            f"agree; a record must hold one score per token. Re-run the explain job that wrote it with --force."
        )
