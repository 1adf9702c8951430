"""Evaluate-stage metrics against answers computed by hand on tiny hand-written records."""

from __future__ import annotations

import logging
import math

import pytest
from pydantic import ValidationError

from attexp.errors import AttexpError
from attexp.evaluate.agreement import MSE, Kendall, KendallConfig, MSEConfig, Spearman, SpearmanConfig
from attexp.evaluate.base import join_by_idx
from attexp.evaluate.quality import F1, Cost, CostConfig, F1Config
from attexp.evaluate.report import format_table
from attexp.registry import METRICS


def record(idx, attributions, input_ids=None, label=0, predictions=(0.9, 0.1), seconds=1.0, fwd=1, bwd=0):
    n = len(attributions)
    return {
        "idx": idx,
        "input_ids": list(input_ids) if input_ids is not None else [101, *range(1000, 1000 + n - 2), 102],
        "tokens": ["[CLS]", *(f"w{i}" for i in range(n - 2)), "[SEP]"],
        "label": label,
        "predictions": list(predictions),
        "target": 0,
        "attributions": list(attributions),
        "seconds": seconds,
        "forward_passes": fwd,
        "backward_passes": bwd,
        "batch": 0,
    }


# ------------------------------------------------------------------------------------------- join


def test_join_pairs_by_idx_and_counts_unmatched(caplog):
    mine = [record(3, [0, 1, 2]), record(1, [0, 1, 2]), record(7, [0, 1, 2])]
    theirs = [record(1, [2, 1, 0]), record(3, [1, 1, 1]), record(9, [0, 0, 0])]
    with caplog.at_level(logging.WARNING):
        pairs = join_by_idx(mine, theirs)
    assert [(a["idx"], b["idx"]) for a, b in pairs] == [(1, 1), (3, 3)]
    assert pairs[1][1]["attributions"] == [1, 1, 1]
    assert "left out 1 explanation records and 1 reference records" in caplog.text


def test_join_refuses_different_input_ids():
    mine = [record(0, [0.1, 0.2, 0.3], input_ids=[101, 7, 102])]
    theirs = [record(0, [0.1, 0.2, 0.3], input_ids=[101, 8, 102])]
    with pytest.raises(AttexpError, match=r"idx 0: input_ids differ.*position 1.*same model"):
        join_by_idx(mine, theirs)
    # cost compares across tokenisations on purpose
    assert len(join_by_idx(mine, theirs, check_input_ids=False)) == 1


def test_join_refuses_empty_overlap_and_duplicates():
    with pytest.raises(AttexpError, match="share no idx"):
        join_by_idx([record(0, [1, 2])], [record(1, [1, 2])])
    with pytest.raises(AttexpError, match="idx 0 occurs twice"):
        join_by_idx([record(0, [1, 2]), record(0, [1, 2])], [record(0, [1, 2])])


def test_missing_field_names_record_and_format():
    bad = record(4, [1.0, 2.0])
    del bad["attributions"]
    with pytest.raises(AttexpError, match="idx=4 has no 'attributions'"):
        MSE(MSEConfig()).compute([bad], [record(4, [1.0, 2.0])])


# -------------------------------------------------------------------------------------------- mse


def test_mse_identical_is_zero_and_known_value():
    ref = [record(0, [0.5, -1.0, 2.0]), record(1, [1.0, 1.0, 1.0, 1.0])]
    assert MSE(MSEConfig()).compute(ref, ref).summary["mse"] == 0.0

    mine = [record(0, [0.5, 0.0, 2.0]), record(1, [3.0, 1.0, 1.0, -1.0])]
    result = MSE(MSEConfig()).compute(mine, ref)
    # idx 0: (0 + 1 + 0) / 3 = 1/3; idx 1: (4 + 0 + 0 + 4) / 4 = 2
    assert result.per_instance[0]["mse"] == pytest.approx(1 / 3)
    assert result.per_instance[1]["mse"] == pytest.approx(2.0)
    assert result.summary["mse"] == pytest.approx((1 / 3 + 2) / 2)
    assert result.summary["n"] == 2


def test_mse_padded_divides_by_max_length():
    ref = [record(0, [0.5, -1.0, 2.0]), record(1, [1.0, 1.0, 1.0, 1.0])]
    mine = [record(0, [0.5, 0.0, 2.0]), record(1, [3.0, 1.0, 1.0, -1.0])]
    real = MSE(MSEConfig()).compute(mine, ref)
    padded = MSE(MSEConfig(definition="padded", max_length=8)).compute(mine, ref)
    # same squared sums (1 and 8), divided by 8 instead of 3 and 4
    assert padded.per_instance[0]["mse"] == pytest.approx(1 / 8)
    assert padded.per_instance[1]["mse"] == pytest.approx(8 / 8)
    assert padded.summary["mse"] == pytest.approx((1 / 8 + 1) / 2)
    assert padded.summary["mse"] < real.summary["mse"]
    # at max_length == length the definitions agree
    exact = MSE(MSEConfig(definition="padded", max_length=4)).compute(mine[1:], ref[1:])
    assert exact.summary["mse"] == pytest.approx(MSE(MSEConfig()).compute(mine[1:], ref[1:]).summary["mse"])
    with pytest.raises(AttexpError, match="more than max_length=2"):
        MSE(MSEConfig(definition="padded", max_length=2)).compute(mine, ref)


def test_mse_config_needs_max_length_for_padded():
    with pytest.raises(ValidationError, match="needs max_length"):
        MSEConfig(definition="padded")
    with pytest.raises(ValidationError):
        MSEConfig(normalise="max_abs")  # unknown key


def test_reference_metrics_require_reference():
    with pytest.raises(AttexpError, match="'mse' compares with a reference"):
        MSE(MSEConfig()).compute([record(0, [1, 2])], None)


# ------------------------------------------------------------------------------ rank correlation


def test_spearman_identical_reversed_and_constant():
    ref = [record(0, [0.1, 0.5, 0.2, 0.9]), record(1, [3.0, 2.0, 1.0]), record(2, [1.0, 2.0, 3.0])]
    same = Spearman(SpearmanConfig()).compute(ref, ref)
    assert same.summary["spearman"] == pytest.approx(1.0)
    assert same.summary["spearman_std"] == pytest.approx(0.0)

    mine = [
        record(0, [0.9, 0.2, 0.5, 0.1]),  # exact reverse order of the reference -> -1
        record(1, [1.0, 2.0, 3.0]),  # reversed -> -1
        record(2, [5.0, 5.0, 5.0]),  # constant: undefined, skipped
    ]
    result = Spearman(SpearmanConfig()).compute(mine, ref)
    assert result.per_instance[0]["spearman"] == pytest.approx(-1.0)
    assert result.per_instance[1]["spearman"] == pytest.approx(-1.0)
    assert 2 not in result.per_instance
    assert result.summary["skipped"] == 1 and result.summary["n"] == 2


def test_spearman_known_value_and_kendall():
    # ranks 1,2,3,4 vs 1,3,2,4: d^2 sum = 2, rho = 1 - 6*2 / (4*15) = 0.8
    ref = [record(0, [1.0, 2.0, 3.0, 4.0])]
    mine = [record(0, [10.0, 30.0, 20.0, 40.0])]
    assert Spearman(SpearmanConfig()).compute(mine, ref).summary["spearman"] == pytest.approx(0.8)
    # one discordant pair of 6: tau = (5 - 1) / 6
    assert Kendall(KendallConfig()).compute(mine, ref).summary["kendall"] == pytest.approx(4 / 6)


def test_rank_correlation_all_constant_is_nan():
    result = Spearman(SpearmanConfig()).compute([record(0, [1.0, 1.0])], [record(0, [0.0, 1.0])])
    assert math.isnan(result.summary["spearman"]) and result.summary["skipped"] == 1


# --------------------------------------------------------------------------------------------- f1


def test_f1_and_accuracy_against_hand_computation():
    # labels      0 0 1 1 1
    # predictions 0 1 1 1 0
    rows = [(0, (0.8, 0.2)), (0, (0.3, 0.7)), (1, (0.1, 0.9)), (1, (0.4, 0.6)), (1, (0.6, 0.4))]
    records = [record(i, [0, 1], label=y, predictions=p) for i, (y, p) in enumerate(rows)]
    result = F1(F1Config()).compute(records, None)
    # class 0: P = 1/2, R = 1/2, F1 = 1/2 (support 2); class 1: P = 2/3, R = 2/3, F1 = 2/3 (support 3)
    assert result.summary["f1"] == pytest.approx((2 * 0.5 + 3 * 2 / 3) / 5)
    assert result.summary["accuracy"] == pytest.approx(3 / 5)
    assert result.summary["n"] == 5
    assert [result.per_instance[i]["correct"] for i in range(5)] == [1.0, 0.0, 1.0, 1.0, 0.0]
    macro = F1(F1Config(average="macro")).compute(records, None)
    assert macro.summary["f1"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_f1_needs_predictions():
    with pytest.raises(AttexpError, match="no predictions"):
        F1(F1Config()).compute([record(0, [1, 2], predictions=())], None)


# ------------------------------------------------------------------------------------------- cost


def test_cost_means_and_speedup():
    mine = [record(0, [1, 2], seconds=0.5, fwd=1, bwd=0), record(1, [1, 2], seconds=1.5, fwd=1, bwd=0)]
    alone = Cost(CostConfig()).compute(mine, None).summary
    assert alone == {"seconds": 1.0, "forward_passes": 1.0, "backward_passes": 0.0, "n": 2}

    ref = [
        record(0, [1, 2], seconds=4.0, fwd=21, bwd=20),
        record(1, [1, 2], seconds=6.0, fwd=21, bwd=20),
        record(2, [1, 2], seconds=100.0, fwd=21, bwd=20),  # no partner: left out of both means
    ]
    summary = Cost(CostConfig()).compute(mine, ref).summary
    assert summary["reference_seconds"] == pytest.approx(5.0)
    assert summary["speedup"] == pytest.approx(5.0)
    assert summary["pass_ratio"] == pytest.approx(41.0)
    assert summary["n"] == 2


def test_registry_entries():
    for name in ["mse", "spearman", "kendall", "f1", "cost"]:
        entry = METRICS.get(name)
        metric = entry.cls(entry.config_type())
        assert isinstance(metric.needs_reference, bool)
    assert METRICS.get("mse").cls.needs_reference and not METRICS.get("f1").cls.needs_reference


# ------------------------------------------------------------------------------------------ table


def test_format_table():
    rows = [{"run": "lig|20", "mse": 0.123456, "n": 10}, {"run": "emp", "mse": 2.0, "n": 7, "extra": "x"}]
    table = format_table(rows, ["run", "mse", "n", "missing"], decimals=3)
    lines = table.splitlines()
    assert len(lines) == 4
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["run", "mse", "n", "missing"]
    assert lines[2].startswith("| lig\\|20 | 0.123 |  10 |")  # "|" in text escaped, 3 decimals
    assert [c.strip() for c in lines[3].strip("|").split("|")] == ["emp", "2.000", "7", ""]
    assert "---:" in lines[1]  # numbers right-aligned
    assert len({len(line) for line in lines}) == 1  # columns aligned
