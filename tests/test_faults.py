"""Faults and attacks the runner and the readers withstand: races between runs, cut or altered upstream files,
OS errors. Each test names the guarantee it keeps (see README, "What attexp refuses, warns about and accepts")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}

# A run that has decided what to do (prepare) and then waits for `go` before it takes the job's lock: the window
# in which another run can finish the same job. The decision under the lock must see what that other run wrote.
PAUSED_RUN = """
import sys, time
from pathlib import Path
import attexp.runner as runner
original = runner._claim
def paused(*args, **kwargs):
    Path(sys.argv[3]).touch()  # decided, about to take the lock
    while not Path(sys.argv[4]).exists():
        time.sleep(0.05)
    return original(*args, **kwargs)
runner._claim = paused
from attexp.cli import main
sys.exit(main([sys.argv[1], "--base-dir", sys.argv[2], "-q"]))
"""


def download_config(path: Path, fraction: float) -> Path:
    """A quick download job over a small local csv; `fraction` (the test split) makes two configs differ."""
    csv = path.parent / "rows.csv"
    csv.write_text("text,label\n" + "".join(f"sentence number {i},{i % 2}\n" for i in range(40)))
    job = {
        "job": "download",
        "name": "race.data",
        "source": {"type": "local", "files": {"all": str(csv)}, "text": "text", "label": "label"},
        "splits": {"validation": 0.2, "test": fraction},
    }
    path.write_text(json.dumps(job))
    return path


def run(config: Path, base: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run_job.py", str(config), "--base-dir", str(base), "-q"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_run_that_decided_before_another_finished_is_refused_under_the_lock(tmp_path, first):
    """Two processes, one job, two configs: the one that decided "run" first but reaches the lock second is
    refused, and the winner's finished artifact stays as it was. Both orders of the two configs."""
    configs = {"a": download_config(tmp_path / "a.json", 0.2), "b": download_config(tmp_path / "b.json", 0.3)}
    loser_config = configs["b" if first == "a" else "a"]
    base = tmp_path / "base"
    decided, go = tmp_path / "decided", tmp_path / "go"
    loser = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, str(loser_config), str(base), str(decided), str(go)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not decided.exists():  # the loser has decided "run": the folder did not exist yet
            assert loser.poll() is None, loser.communicate()
            assert time.monotonic() < deadline, "the paused run never decided"
            time.sleep(0.05)
        winner = run(configs[first], base)
        assert winner.returncode == 0, winner.stderr
        folder = base / "data" / "race.data"
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        go.touch()
        _, err = loser.communicate(timeout=120)
    finally:
        if loser.poll() is None:
            loser.kill()
    assert loser.returncode == 2, err
    assert "already finished with a different config" in err and "--force" in err
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before, "the winner's artifact was touched"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "finished"


def test_a_run_that_decided_before_another_finished_the_same_config_skips(tmp_path):
    config = download_config(tmp_path / "a.json", 0.2)
    base = tmp_path / "base"
    decided, go = tmp_path / "decided", tmp_path / "go"
    late = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, str(config), str(base), str(decided), str(go)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        while not decided.exists():
            assert late.poll() is None, late.communicate()
            time.sleep(0.05)
        assert run(config, base).returncode == 0
        manifest = (base / "data" / "race.data" / "manifest.json").read_bytes()
        go.touch()
        _, err = late.communicate(timeout=120)
    finally:
        if late.poll() is None:
            late.kill()
    assert late.returncode == 0, err
    assert (base / "data" / "race.data" / "manifest.json").read_bytes() == manifest, "finished work was redone"
