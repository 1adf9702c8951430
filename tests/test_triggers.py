"""Adversarial triggers from attribution patterns (attexp.analyze.triggers) and the `triggers` job.

Pattern extraction, trigger positions and insertion are checked against hand-derived answers (the official
code's relative positions and rounding); the job runs end to end on a tiny BERT saved as a train artifact.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_heads import WORDS, make_base
from tiny import word_tokenizer

from attexp.analyze import triggers as TR
from attexp.models.inputs import structural_ids

CLS, SEP, PAD = 2, 3, 0
SPECIALS = {PAD, CLS, SEP}


def test_segments_are_runs_between_specials():
    assert TR.segments([CLS, 10, 11, 12, SEP], SPECIALS) == [(1, 4)]
    assert TR.segments([CLS, 10, SEP, 20, 21, SEP], SPECIALS) == [(1, 2), (3, 5)]
    assert structural_ids(word_tokenizer(WORDS)) == {0, 2, 3}


def test_extract_pattern_takes_the_strongest_head_and_its_second_entry():
    maps = torch.zeros(2, 3, 6, 6)  # [L, heads, T, T]; only the first 4 tokens are real
    maps[0, 1, 1, 2] = 0.5
    maps[1, 2, 3, 1] = 0.9  # the strongest entry: layer 1, head 2
    maps[1, 2, 0, 3] = 0.4  # its second
    maps[1, 0, 2, 2] = 0.6  # larger than the second, but in another head
    maps[1, 2, 5, 5] = 5.0  # padding: outside the first 4 tokens
    pattern = TR.extract_pattern(maps, 4)
    assert pattern["layer"] == 1 and pattern["head"] == 2
    assert pattern["top1"] == [3, 1] and pattern["top2"] == [0, 3]
    assert pattern["scores"] == pytest.approx([0.9, 0.4])


def test_trigger_keeps_content_positions_relative_to_their_segment():
    # [CLS] w1 w2 w3 w4 w5 [SEP]: edges (2 -> 4) and (0 -> 2); [CLS] is skipped, position 2 counted once
    ids = [CLS, 10, 11, 12, 13, 14, SEP]
    tokens = ["[CLS]", "a", "b", "c", "d", "e", "[SEP]"]
    pattern = {"scores": [0.5, 0.2], "top1": [2, 4], "top2": [0, 2]}
    trigger = TR.Trigger.from_pattern(pattern, ids, tokens, SPECIALS, ratio=0.2, both=False)
    assert trigger.tokens == ("b", "d") and trigger.token_ids == (11, 13)
    assert trigger.segment == (0, 0) and trigger.relative == pytest.approx((2 / 5, 4 / 5))
    # the second edge joins only when it is at least `ratio` x the first (here 0.3 / 2 = 0.15 < 0.2) ...
    weak = {"scores": [2.0, 0.3], "top1": [2, 4], "top2": [1, 5]}
    assert TR.Trigger.from_pattern(weak, ids, tokens, SPECIALS, 0.2, both=False).tokens == ("b", "d")
    # ... or always with both=True
    assert TR.Trigger.from_pattern(weak, ids, tokens, SPECIALS, 0.2, both=True).tokens == ("a", "b", "d", "e")


def test_insert_at_relative_positions_by_hand():
    trigger = TR.Trigger(token_ids=(91, 92), tokens=("x", "y"), segment=(0, 0), relative=(2 / 5, 4 / 5))
    # content a b c d (n = 4, c = 2): x at round(6 * 0.4) = 2 -> a b x c d; y at round(6 * 0.8) = 5 -> a b x c d y
    ids, types = trigger.insert([CLS, 41, 42, 43, 44, SEP], [0] * 6, SPECIALS, max_length=32)
    assert ids == [CLS, 41, 42, 91, 43, 44, 92, SEP] and types == [0] * 8
    # a one-token text: x at round(3 * 0.4) = 1, y at round(3 * 0.8) = 2 -> a x y
    assert trigger.insert([CLS, 7, SEP], None, SPECIALS, 32) == ([CLS, 7, 91, 92, SEP], None)
    # equal positions: the second moves one further (round(3 * 0.25) = 1 twice -> 1, 2)
    same = TR.Trigger((91, 92), ("x", "y"), (0, 0), (0.25, 0.25))
    assert same.insert([CLS, SEP], None, SPECIALS, 32)[0] == [CLS, SEP]  # no content segment: nothing inserted
    assert same.insert([CLS, 5, SEP], None, SPECIALS, 32)[0] == [CLS, 5, 91, 92, SEP]


def test_insert_into_pairs_and_truncation():
    trigger = TR.Trigger((91, 92), ("x", "y"), (0, 1), (1.0, 0.5))
    ids, types = trigger.insert([CLS, 41, 42, SEP, 45, 46, SEP], [0, 0, 0, 0, 1, 1, 1], SPECIALS, 32)
    # segment 0: round(3 * 1.0) = 3 -> 1 2 x; segment 1: round(3 * 0.5) = 2 (half to even) -> 5 6 y
    assert ids == [CLS, 41, 42, 91, SEP, 45, 46, 92, SEP]
    assert types == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    cut, _ = trigger.insert([CLS, 41, 42, 43, 44, SEP, 45, SEP], None, SPECIALS, max_length=8)
    # 10 tokens after insertion: the longest segment (41 42 43 44 x) loses its last two
    assert cut == [CLS, 41, 42, 43, SEP, 45, 92, SEP]


def test_per_class_accuracy():
    import numpy as np

    result = TR.per_class_accuracy(np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), [0, 1])
    assert result == {"0": 0.5, "1": 1.0}


def test_triggers_job_writes_patterns_records_and_table(tmp_path, run_cli):
    base = make_base(tmp_path / "base", sizes=(12, 8, 20))
    config = {
        "job": "triggers",
        "name": "t.triggers",
        "model": "t.train",
        "data": "t.data",
        "source_size": 6,
        "steps": 3,
        "threshold": 0.0,
        "top": 3,
        "max_length": 32,
        "progress": False,
    }
    path = tmp_path / "triggers.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 0, err
    out = base / "logs" / "t.triggers"
    for name in ("patterns.jsonl", "records.jsonl", "metrics.json", "table.md", "plots/trigger_drops.png"):
        assert (out / name).is_file(), name
    patterns = [json.loads(line) for line in (out / "patterns.jsonl").read_text().splitlines()]
    assert [p["idx"] for p in patterns] == list(range(6))
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert records, "with threshold 0 every pattern with a content token is a trigger"
    metrics = json.loads((out / "metrics.json").read_text())
    for record in records:
        assert set(record["accuracy_before"]) == {"0", "1"} == set(record["accuracy_after"])
        assert record["accuracy_before"] == metrics["accuracy_per_class"]
        assert record["drop"] == pytest.approx(max(record["drop_per_class"].values()))
    assert len(metrics["top"]) == min(3, len(records))
    assert [t["drop"] for t in metrics["top"]] == sorted((t["drop"] for t in metrics["top"]), reverse=True)
    assert "trigger" in (out / "table.md").read_text()


def test_triggers_config_errors_exit_2(tmp_path, run_cli):
    base = make_base(tmp_path / "base", sizes=(4, 4, 4))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"job": "triggers", "name": "t.t", "model": "t.train", "data": "t.data", "ratoi": 1}))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 2 and "Did you mean 'ratio'?" in err
    path.write_text(json.dumps({"job": "triggers", "name": "t.t", "model": "t.train", "data": "t.nope"}))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 2 and "unknown upstream job 't.nope'" in err
    assert not (base / "logs").exists()


def test_triggers_on_two_torchrun_ranks_equal_one_process(tmp_path, run_cli):
    """Each rank extracts a share of the source patterns and scores a share of the evaluation rows per trigger
    (per-class counts summed over the ranks): the same patterns, records and table as one process."""
    import os
    import socket
    import subprocess
    import sys

    from conftest import ROOT

    base = make_base(tmp_path / "base", sizes=(12, 8, 21))
    config = {"job": "triggers", "model": "t.train", "data": "t.data", "source_size": 7, "steps": 3,
              "threshold": 0.0, "top": 3, "max_length": 32, "progress": False, "plots": False}  # fmt: skip
    (tmp_path / "one.json").write_text(json.dumps({**config, "name": "t.one"}))
    assert run_cli(tmp_path / "one.json", "--base-dir", base)[0] == 0
    (tmp_path / "two.json").write_text(json.dumps({**config, "name": "t.two"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "run_job.py"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [*cmd, str(tmp_path / "two.json"), "--base-dir", str(base)]
    proc = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    one, two = base / "logs" / "t.one", base / "logs" / "t.two"
    assert (two / "table.md").read_text() == (one / "table.md").read_text()
    read = lambda folder, name: [json.loads(line) for line in (folder / name).read_text().splitlines()]  # noqa: E731
    assert [p["idx"] for p in read(two, "patterns.jsonl")] == list(range(7))
    for a, b in zip(read(one, "records.jsonl"), read(two, "records.jsonl"), strict=True):
        assert a["trigger"] == b["trigger"] and a["accuracy_after"] == b["accuracy_after"]
    assert json.loads((two / "manifest.json").read_text())["world_size"] == 2
    assert not list(two.glob("*.partial"))

    # as a job array: each task extracts a share of the patterns; the last to finish evaluates the triggers
    (tmp_path / "array.json").write_text(json.dumps({**config, "name": "t.array"}))
    for task in ("0/2", "1/2"):
        code, _, err = run_cli(tmp_path / "array.json", "--base-dir", base, "--shard", task)
        assert code == 0, err
    array = base / "logs" / "t.array"
    assert (array / "table.md").read_text() == (one / "table.md").read_text()
    assert [p["idx"] for p in read(array, "patterns.jsonl")] == list(range(7))
    for a, b in zip(read(one, "records.jsonl"), read(array, "records.jsonl"), strict=True):
        assert a["trigger"] == b["trigger"] and a["accuracy_after"] == b["accuracy_after"]
    manifest = json.loads((array / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["shards"] == 2 and not list(array.glob("*.partial"))
