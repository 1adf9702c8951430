"""Crash-safe files: atomic writes, validating readers, the resumable JSON-lines writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from attexp.errors import AttexpError
from attexp.io.files import ResumableJsonlWriter, atomic_write_text, read_jsonl, write_jsonl


def test_atomic_write_replaces_whole_file_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "a" / "f.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["f.txt"]


def test_reader_reports_file_and_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"idx": 0, "a": 1}\n{"idx": 1}\n')
    with pytest.raises(AttexpError, match=r"r.jsonl:2: record lacks field\(s\) a"):
        read_jsonl(path, required=("idx", "a"))
    path.write_text('{"idx": 0}\nnot json\n')
    with pytest.raises(AttexpError, match=r"r.jsonl:2: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"idx": 0}\n{"idx": 0}\n')
    with pytest.raises(AttexpError, match=r"r.jsonl:2: duplicate idx 0"):
        read_jsonl(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(AttexpError, match=r"r.jsonl:1: expected a JSON object, got list"):
        read_jsonl(path)
    with pytest.raises(AttexpError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_resumable_writer_cuts_a_torn_line_and_skips_done(tmp_path):
    path = tmp_path / "records.jsonl"
    writer = ResumableJsonlWriter(path)
    writer.write([{"idx": 3, "v": "c"}, {"idx": 1, "v": "a"}])
    writer.close()
    with open(writer.partial, "a") as f:  # a process killed in the middle of a line
        f.write('{"idx": 2, "v": "b')
    resumed = ResumableJsonlWriter(path)
    assert resumed.done == {1, 3}
    resumed.write([{"idx": 2, "v": "b"}])
    with pytest.raises(AttexpError, match="idx 2 written twice"):
        resumed.write([{"idx": 2, "v": "again"}])
    assert resumed.finalize() == 3
    assert [r["idx"] for r in read_jsonl(path)] == [1, 2, 3]
    assert not writer.partial.exists()


def test_writer_survives_kill_9(tmp_path):
    """A child process writing records is SIGKILLed; the rerun finds every fsynced record, none twice."""
    path = tmp_path / "records.jsonl"
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(os.getcwd())!r})
from attexp.io.files import ResumableJsonlWriter
w = ResumableJsonlWriter(__import__('pathlib').Path({str(path)!r}))
for i in range(0, 50):
    w.write([{{"idx": i, "payload": "x" * 1000}}])
    if i == 20:
        os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script])
    assert proc.returncode == -9
    writer = ResumableJsonlWriter(path)
    assert writer.done == set(range(21))
    writer.write([{"idx": i, "payload": "x" * 1000} for i in range(21, 50)])
    assert writer.finalize() == 50
    assert [r["idx"] for r in read_jsonl(path)] == list(range(50))


def test_write_jsonl_round_trip(tmp_path):
    records = [{"idx": i, "text": f"é <b>{i}</b>"} for i in range(3)]
    assert write_jsonl(tmp_path / "x.jsonl", records) == 3
    assert read_jsonl(tmp_path / "x.jsonl") == records
    assert json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])["text"] == "é <b>0</b>"


def test_shards_merge_sorted_and_refuse_an_idx_in_two_shards(tmp_path):
    from attexp.io.files import done_idx, merge_partials

    a, b = tmp_path / "r.rank0.partial", tmp_path / "r.rank1.partial"
    a.write_text('{"idx": 2}\n{"idx": 0}\n')
    b.write_text('{"idx": 1}\n{"idx": 3, "torn')  # rank 1 died mid-line
    assert done_idx([a, b]) == {0, 1, 2}
    b.write_text('{"idx": 1}\n')
    assert merge_partials(tmp_path / "r.jsonl", [a, b]) == 3
    assert [r["idx"] for r in read_jsonl(tmp_path / "r.jsonl")] == [0, 1, 2]
    assert not a.exists() and not b.exists()
    a.write_text('{"idx": 0}\n')
    b.write_text('{"idx": 0}\n')
    with pytest.raises(AttexpError, match="idx 0 is in two shard files"):
        merge_partials(tmp_path / "r2.jsonl", [a, b])


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_share_rule_gives_disjoint_fixed_shares_that_cover_every_item(count):
    """`share_of` is the one split of every data-parallel stage: each item in exactly one share, the shares fixed
    by (items, index, count), dealt in the key's order so that every share gets a similar mix of lengths."""
    from attexp.distributed import share_of

    items = [{"idx": i, "text": "x" * ((i * 7) % 11)} for i in range(23)]
    length = lambda r: len(r["text"])  # noqa: E731
    shares = [share_of(items, i, count, key=length) for i in range(count)]
    assert sorted(r["idx"] for share in shares for r in share) == list(range(23))
    assert all([length(r) for r in share] == sorted(length(r) for r in share) for share in shares)
    assert share_of(items, count - 1, count) == items[count - 1 :: count]  # without a key: the items' own order
    assert max(len(s) for s in shares) - min(len(s) for s in shares) <= 1
    mean = [sum(map(length, s)) / len(s) for s in shares]
    assert max(mean) - min(mean) <= 10 / max(1, 23 // count - 1)
    with pytest.raises(ValueError, match="expected 0 <= index < count"):
        share_of(items, count, count)
