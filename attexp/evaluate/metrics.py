"""Metrics that compare explanation records with each other and with the data.

The evaluate stage answers three questions the papers this project unifies ask of an explainer:

- How close is it to a reference explainer? `mse` (the measure of Empirical Explainers, Schwarzenberg et al.
  2021, for an amortised explainer against the expensive one it imitates), the rank correlations
  `spearman` / `kendall`, which ignore the scale of the scores and only ask whether the tokens are ordered
  alike, and `topk_overlap`, which only asks whether the few tokens a reader looks at are the same.
- Is the model it explains any good? `f1` (weighted F1 and accuracy of the recorded predictions).
- What does it cost? `cost` (seconds and model passes per instance, and the speed-up over a reference).

Every metric is a registry entry (`METRICS`) built as `Cls(config)` from its typed config, states whether it
`needs_reference`, `needs_model` (the faithfulness metrics of `attexp.evaluate.faithfulness`, which run the
explained classifier and take it as `compute(..., scorer=...)`) and `uses_attributions` (False for metrics of
the predictions or the cost alone), and returns a `MetricResult` from `compute(records, reference)`. Records follow the
explanation-record format (one JSON object per instance with `idx`, `input_ids`, `attributions`, ...; no
padding is ever stored), and a record and its reference are paired by `idx` with `join_by_idx`, which refuses
pairs whose `input_ids` differ: comparing scores of different tokenisations position by position is
meaningless.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError
from attexp.registry import METRICS

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


# --------------------------------------------------------------------------------------------- records


def _get(record: dict, key: str, where: str) -> Any:
    """`record[key]`, or an AttexpError that names the record and the format it should have."""
    try:
        return record[key]
    except KeyError:
        raise AttexpError(
            f"{where}: record idx={record.get('idx', '?')} has no {key!r} field (it has {sorted(record)}). "
            f"Expected an explanation record (idx, input_ids, tokens, label, predictions, target, attributions, "
            f"seconds, forward_passes, backward_passes); point the evaluate job at an explain job's output."
        ) from None


def _by_idx(records: Sequence[dict], what: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for record in records:
        idx = int(_get(record, "idx", what))
        if idx in out:
            raise AttexpError(
                f"{what}: idx {idx} occurs twice; an artifact holds one record per instance. "
                f"The artifact is corrupt: re-run the job that wrote it with --force."
            )
        out[idx] = record
    return out


def _attributions(record: dict, where: str) -> np.ndarray:
    values = np.asarray(_get(record, "attributions", where), dtype=np.float64)  # (seq_len,)
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
    mine = _by_idx(explanations, "explanations")
    theirs = _by_idx(reference, "reference")
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
            ids_a, ids_b = list(_get(a, "input_ids", "explanations")), list(_get(b, "input_ids", "reference"))
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


def _need_reference(name: str, reference: Sequence[dict] | None) -> Sequence[dict]:
    if reference is None:
        raise AttexpError(
            f"metric {name!r} compares with a reference explainer but none was given; set the evaluate job's "
            f"reference to an explain job, or drop {name!r} from its metrics."
        )
    return reference


# ------------------------------------------------------------------------------------------------- mse


class MSEConfig(ComponentConfig):
    """Mean squared error between attributions and the reference's, averaged over instances.

    `definition="real_tokens"` (default) takes each instance's mean over its real (stored) tokens, specials
    included, so long and short instances count alike. `definition="padded"` reproduces emp-exp's number for
    parity: there every vector was padded with zeros to `max_length` and torch's `mse_loss` averaged over all
    `max_length` positions, i.e. each instance's sum of squared differences divided by `max_length`. Pad
    positions add nothing to that sum (both vectors are zero there), so the padded MSE equals the real-token
    MSE scaled by length/max_length and is smaller for shorter inputs.

    No rescaling option is offered: MSE measures how well a learned explainer imitates its teacher's scores
    as they are; for scale-free agreement use `spearman` or `kendall`.
    """

    type: Literal["mse"] = "mse"
    definition: Literal["real_tokens", "padded"] = Field(
        "real_tokens", description="average over real tokens, or over max_length zero-padded positions (emp-exp)"
    )
    max_length: int | None = Field(None, gt=0, description="padded length; required with definition='padded'")

    @model_validator(mode="after")
    def _max_length_for_padded(self) -> MSEConfig:
        if self.definition == "padded" and self.max_length is None:
            raise ValueError(
                "definition='padded' needs max_length (the length the inputs were padded to when explained, "
                "e.g. 512); set max_length or use definition='real_tokens'"
            )
        return self


@METRICS.register("mse", MSEConfig)
class MSE:
    """Mean squared error of attributions against a reference explainer (Schwarzenberg et al. 2021)."""

    needs_reference = True
    needs_model = False
    uses_attributions = True

    def __init__(self, config: MSEConfig) -> None:
        self.config = config

    def compute(self, records: list[dict], reference: list[dict] | None) -> MetricResult:
        per_instance: dict[int, dict[str, float]] = {}
        for mine, theirs in join_by_idx(records, _need_reference("mse", reference)):
            a, b = _attributions(mine, "explanations"), _attributions(theirs, "reference")  # (seq_len,) each
            _same_length(mine, a, b)
            squared = float(np.sum((a - b) ** 2))
            if self.config.definition == "padded":
                assert self.config.max_length is not None  # guaranteed by MSEConfig
                if len(a) > self.config.max_length:
                    raise AttexpError(
                        f"idx {mine['idx']} has {len(a)} tokens, more than max_length={self.config.max_length} "
                        f"of the padded MSE; set max_length to the length the inputs were padded to."
                    )
                value = squared / self.config.max_length
            else:
                value = squared / len(a) if len(a) else 0.0
            per_instance[int(mine["idx"])] = {"mse": value}
        values = np.array([v["mse"] for v in per_instance.values()])
        return MetricResult(
            {"mse": float(values.mean()), "mse_std": float(values.std()), "n": len(values)}, per_instance
        )


def _same_length(record: dict, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise AttexpError(
            f"idx {record['idx']}: {len(a)} attributions against {len(b)} in the reference although the input_ids "
            f"agree; a record must hold one score per token. Re-run the explain job that wrote it with --force."
        )


# ------------------------------------------------------------------------------------ rank correlation


class SpearmanConfig(ComponentConfig):
    """Spearman rank correlation with the reference's attributions, per instance over its real tokens.

    Instances where either vector is constant (or shorter than 2) have no defined correlation; they are
    skipped and counted in `skipped`. Summary: `spearman` (mean), `spearman_std` (population std), `n`.
    """

    type: Literal["spearman"] = "spearman"


class KendallConfig(ComponentConfig):
    """Kendall's tau-b with the reference's attributions, per instance over its real tokens.

    Same conventions as `spearman` (constant vectors skipped and counted); tau weighs every swapped pair of
    tokens alike, where Spearman weighs swaps by how far the ranks move.
    """

    type: Literal["kendall"] = "kendall"


class _RankCorrelation:
    needs_reference = True
    needs_model = False
    uses_attributions = True
    name = ""

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    def correlate(self, a: np.ndarray, b: np.ndarray) -> float:
        raise NotImplementedError

    def compute(self, records: list[dict], reference: list[dict] | None) -> MetricResult:
        per_instance: dict[int, dict[str, float]] = {}
        skipped = 0
        for mine, theirs in join_by_idx(records, _need_reference(self.name, reference)):
            a, b = _attributions(mine, "explanations"), _attributions(theirs, "reference")  # (seq_len,) each
            _same_length(mine, a, b)
            if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
                skipped += 1
                continue
            per_instance[int(mine["idx"])] = {self.name: float(self.correlate(a, b))}
        values = np.array([v[self.name] for v in per_instance.values()])
        if skipped:
            logger.warning("%s: skipped %d instances with a constant attribution vector", self.name, skipped)
        summary = {
            self.name: float(values.mean()) if len(values) else math.nan,
            f"{self.name}_std": float(values.std()) if len(values) else math.nan,
            "n": len(values),
            "skipped": skipped,
        }
        return MetricResult(summary, per_instance)


@METRICS.register("spearman", SpearmanConfig)
class Spearman(_RankCorrelation):
    """Spearman rank correlation of attributions with a reference explainer, per instance."""

    name = "spearman"

    def correlate(self, a: np.ndarray, b: np.ndarray) -> float:
        return stats.spearmanr(a, b).statistic


@METRICS.register("kendall", KendallConfig)
class Kendall(_RankCorrelation):
    """Kendall's tau-b of attributions with a reference explainer, per instance."""

    name = "kendall"

    def correlate(self, a: np.ndarray, b: np.ndarray) -> float:
        return stats.kendalltau(a, b).statistic


# ------------------------------------------------------------------------------------------ top-k overlap

# Token strings of structural specials, left out of the top-k by default (records carry tokens, not a tokenizer).
SPECIAL_TOKEN_STRINGS = frozenset({"[CLS]", "[SEP]", "[PAD]", "<s>", "</s>", "<pad>", "<cls>", "<sep>"})


class TopKOverlapConfig(ComponentConfig):
    """Share of the reference's top-k tokens that are also among these attributions' top-k, per instance.

    k (5) tokens, or with `fraction` set, k = ceil(fraction * n) of the instance's n candidate tokens; k is
    capped at n. Candidates are all tokens except structural specials ([CLS], [SEP], <s>, </s>, pad, by their
    token strings) unless `include_specials`. Ties rank the earlier position first. Summary: `topk_overlap`
    (mean of |top_k(a) & top_k(b)| / k), `topk_overlap_std`, `n`, `skipped` (instances without candidates).
    """

    type: Literal["topk_overlap"] = "topk_overlap"
    k: int = Field(5, ge=1, description="tokens in each top-k (ignored when fraction is set)")
    fraction: float | None = Field(None, gt=0, le=1, description="k as a fraction of the candidate tokens")
    include_specials: bool = False


@METRICS.register("topk_overlap", TopKOverlapConfig)
class TopKOverlap:
    """Overlap of the top-k tokens with a reference explainer's top-k, per instance."""

    needs_reference = True
    needs_model = False
    uses_attributions = True

    def __init__(self, config: TopKOverlapConfig) -> None:
        self.config = config

    def compute(self, records: list[dict], reference: list[dict] | None) -> MetricResult:
        per_instance: dict[int, dict[str, float]] = {}
        skipped = 0
        for mine, theirs in join_by_idx(records, _need_reference("topk_overlap", reference)):
            a, b = _attributions(mine, "explanations"), _attributions(theirs, "reference")  # (seq_len,) each
            _same_length(mine, a, b)
            tokens = mine.get("tokens") or [""] * len(a)
            candidates = np.array(
                [i for i, t in enumerate(tokens) if self.config.include_specials or t not in SPECIAL_TOKEN_STRINGS],
                dtype=np.int64,
            )
            if len(candidates) == 0:
                skipped += 1
                continue
            n = len(candidates)
            k = min(n, math.ceil(self.config.fraction * n) if self.config.fraction else self.config.k)
            top_a = candidates[np.argsort(-a[candidates], kind="stable")[:k]]
            top_b = candidates[np.argsort(-b[candidates], kind="stable")[:k]]
            per_instance[int(mine["idx"])] = {"topk_overlap": len(set(top_a.tolist()) & set(top_b.tolist())) / k}
        values = np.array([v["topk_overlap"] for v in per_instance.values()])
        summary = {
            "topk_overlap": float(values.mean()) if len(values) else math.nan,
            "topk_overlap_std": float(values.std()) if len(values) else math.nan,
            "n": len(values),
            "skipped": skipped,
        }
        return MetricResult(summary, per_instance)


# -------------------------------------------------------------------------------------------------- f1


class F1Config(ComponentConfig):
    """F1 and accuracy of the recorded predictions (argmax of `predictions`) against `label`.

    `average="weighted"` is emp-exp's choice (sklearn's support-weighted mean of per-class F1). A class that is
    never predicted counts as F1 0 (sklearn `zero_division=0`). Per instance: `correct` (1.0 or 0.0).
    """

    type: Literal["f1"] = "f1"
    average: Literal["weighted", "macro", "micro"] = Field("weighted", description="sklearn f1_score average")


@METRICS.register("f1", F1Config)
class F1:
    """Weighted F1 and accuracy of the explained model's predictions; needs no reference."""

    needs_reference = False
    needs_model = False
    uses_attributions = False

    def __init__(self, config: F1Config) -> None:
        self.config = config

    def compute(self, records: list[dict], reference: list[dict] | None = None) -> MetricResult:
        if not records:
            raise AttexpError("f1: no records to evaluate; the explanations artifact is empty.")
        labels, predicted = [], []
        for record in records:
            probabilities = _get(record, "predictions", "explanations")
            if not probabilities:
                raise AttexpError(
                    f"f1: record idx={record.get('idx')} has no predictions; f1 needs the explained model's class "
                    f"probabilities. Evaluate f1 on an explain job that records them."
                )
            labels.append(int(_get(record, "label", "explanations")))
            predicted.append(int(np.argmax(probabilities)))
        summary = {
            "f1": float(f1_score(labels, predicted, average=self.config.average, zero_division=0)),
            "accuracy": float(accuracy_score(labels, predicted)),
            "n": len(labels),
        }
        per_instance = {
            int(r["idx"]): {"correct": float(y == p)} for r, y, p in zip(records, labels, predicted, strict=True)
        }
        return MetricResult(summary, per_instance)


# ------------------------------------------------------------------------------------------------ cost

_COST_FIELDS = ("seconds", "forward_passes", "backward_passes")


class CostConfig(ComponentConfig):
    """Mean cost per instance: `seconds`, `forward_passes`, `backward_passes`.

    With a reference, records are paired by idx (input_ids are not compared: the cost of explaining the same
    instance with a different model is still a fair comparison), both sides are averaged over the paired
    instances only, and the summary adds the reference's means (`reference_seconds`, ...), `speedup`
    (reference seconds / these seconds) and `pass_ratio` (reference passes / these passes, forward plus
    backward; unlike seconds it does not depend on the hardware). A ratio over zero cost is `inf`.
    """

    type: Literal["cost"] = "cost"


@METRICS.register("cost", CostConfig)
class Cost:
    """Seconds and model passes per instance, and the speed-up over a reference explainer."""

    needs_reference = False
    needs_model = False
    uses_attributions = False

    def __init__(self, config: CostConfig) -> None:
        self.config = config

    def compute(self, records: list[dict], reference: list[dict] | None = None) -> MetricResult:
        if reference is None:
            if not records:
                raise AttexpError("cost: no records to evaluate; the explanations artifact is empty.")
            return MetricResult(_mean_cost(records, "explanations"))
        pairs = join_by_idx(records, reference, check_input_ids=False)
        summary = _mean_cost([a for a, _ in pairs], "explanations")
        theirs = _mean_cost([b for _, b in pairs], "reference")
        summary.update({f"reference_{k}": v for k, v in theirs.items() if k != "n"})
        summary["speedup"] = _ratio(theirs["seconds"], summary["seconds"])
        summary["pass_ratio"] = _ratio(
            theirs["forward_passes"] + theirs["backward_passes"],
            summary["forward_passes"] + summary["backward_passes"],
        )
        return MetricResult(summary)


def _mean_cost(records: Sequence[dict], where: str) -> dict[str, float]:
    out = {key: float(np.mean([float(_get(r, key, where)) for r in records])) for key in _COST_FIELDS}
    out["n"] = len(records)
    return out


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.inf


# ----------------------------------------------------------------------------------- directions, floor

# Which way is better for each column of the evaluation table (variant suffixes _alti, _mask, _pad ignored).
HIGHER_IS_BETTER = frozenset(
    {"comprehensiveness", "ferret_comprehensiveness", "tau_loo", "spearman", "kendall", "topk_overlap", "f1"}
    | {"accuracy", "speedup", "pass_ratio", "degradation_lerf_accuracy", "degradation_lerf_probability"}
)
LOWER_IS_BETTER = frozenset(
    {"sufficiency", "ferret_sufficiency", "log_odds", "mse", "seconds", "forward_passes", "backward_passes"}
    | {"degradation_morf_accuracy", "degradation_morf_probability"}
)
# The faithfulness columns: the ones a random ranking gives a floor for (agreement and cost columns do not).
FAITHFULNESS_COLUMNS = frozenset(
    {"comprehensiveness", "sufficiency", "ferret_comprehensiveness", "ferret_sufficiency", "tau_loo", "log_odds"}
    | {"degradation_morf_accuracy", "degradation_morf_probability"}
    | {"degradation_lerf_accuracy", "degradation_lerf_probability"}
)
FLOOR_ALPHA = 0.05


def _base(column: str) -> str:
    for suffix in ("_pad", "_mask", "_alti"):
        column = column.removesuffix(suffix)
    return column


def direction(column: str) -> str:
    """'higher', 'lower' or '' (unknown) for a column of the evaluation table."""
    base = _base(column)
    return "higher" if base in HIGHER_IS_BETTER else "lower" if base in LOWER_IS_BETTER else ""


def versus_floor(
    per_instance: dict[str, dict[int, dict[str, Any]]], floor: str, columns: Sequence[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Does each explanation file beat the random floor on each faithfulness column, instance by instance?

    `per_instance[name][idx]` holds the per-instance values of explanation file `name`; `floor` names the random
    row. For every other file and every faithfulness column of `columns`, the instances both have a value for
    are paired by idx and tested with a one-sided Wilcoxon signed-rank test in the column's better direction
    (a random ranking and an explainer are scored on the same inputs, so the pairing removes the spread between
    easy and hard instances). Returns {name: {column: {"delta", "p_value", "n", "beats"}}} where `delta` is the
    mean difference (explainer - floor), `beats` means better at p < FLOOR_ALPHA.
    """
    floor_values = per_instance.get(floor, {})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, values in per_instance.items():
        if name == floor:
            continue
        for column in columns:
            better = direction(column)
            if _base(column) not in FAITHFULNESS_COLUMNS or not better:
                continue
            pairs = [
                (values[i][column], floor_values[i][column])
                for i in sorted(values.keys() & floor_values.keys())
                if _number(values[i].get(column)) and _number(floor_values[i].get(column))
            ]
            if not pairs:
                continue
            ours, theirs = np.array(pairs, dtype=np.float64).T
            diff = ours - theirs
            if np.all(diff == 0):
                p_value = 1.0
            else:
                alternative = "greater" if better == "higher" else "less"
                p_value = float(stats.wilcoxon(ours, theirs, alternative=alternative).pvalue)
            delta = float(diff.mean())
            out.setdefault(name, {})[column] = {
                "delta": delta,
                "p_value": p_value,
                "n": len(pairs),
                "beats": bool(p_value < FLOOR_ALPHA),
            }
    return out


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def floor_report(comparison: dict[str, dict[str, dict[str, Any]]], floor: str, explainers: dict[str, Any]) -> str:
    """Markdown: a table of (delta vs floor, p) per file and faithfulness column, then one sentence per column
    stating which explainers beat the random floor."""
    columns = list(dict.fromkeys(c for result in comparison.values() for c in result))
    if not columns:
        return ""
    rows = []
    for name, result in comparison.items():
        row: dict[str, Any] = {"explanations": name, "explainer": explainers.get(name)}
        for column in columns:
            if column in result:
                r = result[column]
                mark = "yes" if r["beats"] else "NO"
                row[column] = f"{mark} {r['delta']:+.4f} (p={r['p_value']:.1g})"
        rows.append(row)
    lines = [
        f"Against the random floor `{floor}`: difference of the means (explainer - random; the sign that is better "
        f"follows each column) and the one-sided paired Wilcoxon signed-rank p-value over instances; `yes` means "
        f"better than random at p < {FLOOR_ALPHA}.",
        "",
        format_table(rows, ["explanations", "explainer", *columns]),
        "",
    ]
    for column in columns:
        tested = [name for name in comparison if column in comparison[name]]
        losers = [name for name in tested if not comparison[name][column]["beats"]]
        if not losers:
            lines.append(f"- {column}: every explainer ({len(tested)}) beats the random floor.")
        else:
            lines.append(
                f"- {column}: {len(tested) - len(losers)} of {len(tested)} explainers beat the random floor; "
                f"not: {', '.join(f'{n} ({explainers.get(n)})' for n in losers)}."
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- table


def format_table(rows: Sequence[dict], columns: Sequence[str], decimals: int = 4) -> str:
    """A markdown table of `rows` restricted to `columns`, in that order.

    Floats get `decimals` fixed decimals, ints (counts such as `n`) print as they are, numbers are
    right-aligned, a missing value is blank, and `|` in text is escaped so a cell cannot split.
    """

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool | int):
            return str(value)
        if isinstance(value, float):
            return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)
        return str(value).replace("|", "\\|").replace("\n", " ")

    body = [[cell(row.get(c)) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), int | float) or row.get(c) is None for row in rows) for c in columns]
    widths = [max([len(c), 3, *(len(line[i]) for line in body)]) for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        parts = [s.rjust(w) if num else s.ljust(w) for s, w, num in zip(cells, widths, numeric, strict=True)]
        return "| " + " | ".join(parts) + " |"

    rule = (
        "| "
        + " | ".join("-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True))
        + " |"
    )
    return "\n".join([line(columns), rule, *(line(b) for b in body)])
