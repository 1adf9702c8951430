"""The one memo of model forwards (attexp.models.memo), shared by the perturbation explainers and the scorer."""

from __future__ import annotations

import numpy as np
import pytest

from attexp.models.memo import RowMemo, row_key


def test_each_distinct_row_is_computed_once_across_calls():
    memo: RowMemo[int] = RowMemo()
    calls: list[list[int]] = []

    def square(values):
        def compute(positions):
            calls.append(positions)
            return [values[p] ** 2 for p in positions]

        return compute

    first = [3, 4, 3, 5]
    assert memo.run([bytes([v]) for v in first], square(first)) == [9, 16, 9, 25]
    assert calls == [[0, 1, 3]], "the repeated 3 is computed once, at its first position"
    second = [5, 6, 3]
    assert memo.run([bytes([v]) for v in second], square(second)) == [25, 36, 9]
    assert calls[-1] == [1] and len(memo) == 4, "only the new row runs on the second call"
    assert memo.run([], square([])) == [] and len(calls) == 2, "nothing new, nothing run"


def test_compute_must_answer_every_row():
    with pytest.raises(ValueError, match="1 outputs for 2 rows"):
        RowMemo().run([b"a", b"b"], lambda positions: [0])


def test_row_key_tells_segments_apart():
    ids = np.array([101, 7, 102])
    assert row_key(ids, None) != row_key(ids, np.array([0, 0, 0]))
    assert row_key(ids, np.array([0, 1, 1])) != row_key(ids, np.array([0, 0, 1]))
    assert row_key(ids.astype(np.int32), None) == row_key(ids, None), "the dtype of the ids does not matter"
