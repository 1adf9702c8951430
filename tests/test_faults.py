"""Faults and attacks the runner and the readers withstand: races between runs, cut or altered upstream files,
OS errors. Each test names the guarantee it keeps (see README, "What attexp refuses, warns about and accepts")."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from attexp.data.sources import PackagedConfig, PackagedSource
from attexp.errors import AttexpError

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}

# A run that has decided what to do (prepare) and then waits for `go` before it takes the job's lock: the window
# in which another run can finish the same job. The decision under the lock must see what that other run wrote.
PAUSED_RUN = """
import sys, time
from pathlib import Path
import attexp.runner.launch as runner
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


def race(paused_config: Path, other_config: Path, base: Path, tmp_path: Path) -> tuple[int, str, dict[str, bytes]]:
    """Start a run of `paused_config` that decides and then waits before the lock; run `other_config` to the end
    meanwhile; then let the paused run go on. Returns its exit code and stderr, and the finished folder's files
    as they were before it went on."""
    decided, go = tmp_path / "decided", tmp_path / "go"
    paused = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, str(paused_config), str(base), str(decided), str(go)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not decided.exists():  # the paused run has decided what to do (the folder did not exist yet)
            assert paused.poll() is None, paused.communicate()
            assert time.monotonic() < deadline, "the paused run never decided"
            time.sleep(0.05)
        other = run(other_config, base)
        assert other.returncode == 0, other.stderr
        folder = base / "data" / "race.data"
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        go.touch()
        _, err = paused.communicate(timeout=120)
    finally:
        if paused.poll() is None:
            paused.kill()
    return paused.returncode, err, before


@pytest.mark.parametrize("first", ["a", "b"])
def test_a_run_that_decided_before_another_finished_is_refused_under_the_lock(tmp_path, first):
    """Two processes, one job, two configs: the one that decided "run" first but reaches the lock second is
    refused, and the winner's finished artifact stays as it was. Both orders of the two configs."""
    configs = {"a": download_config(tmp_path / "a.json", 0.2), "b": download_config(tmp_path / "b.json", 0.3)}
    base = tmp_path / "base"
    code, err, before = race(configs["b" if first == "a" else "a"], configs[first], base, tmp_path)
    assert code == 2, err
    assert "already finished with a different config" in err and "--force" in err
    folder = base / "data" / "race.data"
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before, "the winner's artifact was touched"
    assert json.loads((folder / "manifest.json").read_text())["status"] == "finished"


def test_a_run_that_decided_before_another_finished_the_same_config_skips(tmp_path):
    config = download_config(tmp_path / "a.json", 0.2)
    base = tmp_path / "base"
    code, err, before = race(config, config, base, tmp_path)
    assert code == 0, err
    after = (base / "data" / "race.data" / "manifest.json").read_bytes()
    assert after == before["manifest.json"], "finished work was redone"


# ------------------------------------------------------------------------------------ upstream files


def test_an_upstream_file_cut_after_it_finished_is_refused(tmp_path, run_cli):
    """A records file cut at a line boundary (fewer records than its manifest counts) is an error naming the
    file, what the manifest says, what was found and the fix; so is one edited in place."""
    from attexp.io.artifacts import find_artifact
    from attexp.io.records import DATASET

    base = tmp_path / "base"
    code, _, err = run_cli(download_config(tmp_path / "a.json", 0.2), "--base-dir", base)
    assert code == 0, err
    artifact = find_artifact(base, "race.data")
    test = base / "data" / "race.data" / "test.jsonl"
    lines = test.read_text().splitlines(keepends=True)
    assert (
        len(artifact.read(DATASET, "test.jsonl")) == len(lines) == artifact.manifest["files"]["test.jsonl"]["records"]
    )
    test.write_text("".join(lines[:-2]))
    with pytest.raises(Exception, match=rf"test.jsonl: not the file .* records {len(lines)}.*records {len(lines) - 2}"):
        artifact.read(DATASET, "test.jsonl")
    test.write_text("".join(lines).replace("sentence", "sentance", 1))
    with pytest.raises(Exception, match="sha256 .*--force"):
        artifact.read(DATASET, "test.jsonl")


# ------------------------------------------------------------------------------------------- OS errors


@pytest.mark.parametrize(
    ("code", "text", "fix"),
    [
        (13, "Permission denied", "fix the permissions"),
        (30, "Read-only file system", "read-only"),
        (28, "No space left on device", "free space"),
    ],
)
def test_an_os_error_is_one_line_and_the_rerun_finishes(tmp_path, run_cli, monkeypatch, code, text, fix):
    import errno

    real_replace = os.replace
    target = {}

    def failing_replace(src, dst, *args, **kwargs):
        if str(dst).endswith("train.jsonl"):
            target["path"] = str(dst)
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    config = download_config(tmp_path / "a.json", 0.2)
    base = tmp_path / "base"
    monkeypatch.setattr(os, "replace", failing_replace)
    status, _, err = run_cli(config, "--base-dir", base)
    assert code in (errno.EACCES, errno.EROFS, errno.ENOSPC)
    assert status == 1 and "Traceback" not in err
    line = next(line for line in err.splitlines() if line.startswith("error:"))
    assert target["path"] in line and text in line and fix in line
    monkeypatch.setattr(os, "replace", real_replace)
    status, _, err = run_cli(config, "--base-dir", base)
    assert status == 0, err
    assert json.loads((base / "data" / "race.data" / "manifest.json").read_text())["status"] == "finished"


def test_a_full_disk_mid_explain_loses_nothing(tmp_path, run_cli, monkeypatch):
    """The disk fills after two batches: one clear line, exit 1; once there is space, the same command resumes
    with the written records kept, none lost or repeated."""
    import errno

    from test_heads import make_base

    from attexp.io.files import ResumableJsonlWriter

    base = make_base(tmp_path / "base", sizes=(20, 8, 30))
    config = tmp_path / "explain.json"
    job = {
        "job": "explain",
        "name": "t.explain",
        "model": "t.train",
        "data": "t.data",
        "batch_size": 4,
        "max_length": 32,
    }
    config.write_text(json.dumps({**job, "explainer": {"type": "saliency"}, "progress": False}))
    real_write, calls = ResumableJsonlWriter.write, {"n": 0}

    def disk_fills(self, records):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.partial))
        return real_write(self, records)

    monkeypatch.setattr(ResumableJsonlWriter, "write", disk_fills)
    status, _, err = run_cli(config, "--base-dir", base)
    assert status == 1 and "No space left on device" in err and "free space" in err and "Traceback" not in err
    monkeypatch.setattr(ResumableJsonlWriter, "write", real_write)
    status, _, err = run_cli(config, "--base-dir", base)
    assert status == 0, err
    folder = base / "explanations" / "t.explain"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["resumed"] == 1 and manifest["counts"]["explained_this_run"] == 30 - 8
    idx = [json.loads(line)["idx"] for line in (folder / "records.jsonl").read_text().splitlines()]
    assert sorted(idx) == list(range(30)) and len(idx) == len(set(idx))


# --------------------------------------------------------------------------------- kill -9 at random moments


def _job_base(tmp_path: Path, name: str) -> Path:
    from test_heads import make_base

    return make_base(tmp_path / name, sizes=(48, 12, 64))


STAGE_JOBS = {
    "explain": {
        "job": "explain",
        "name": "k.explain",
        "model": "t.train",
        "data": "t.data",
        "batch_size": 2,
        "max_length": 32,
        "explainer": {"type": "lig", "n_steps": 16},
        "progress": False,
    },
    "train": {
        "job": "train",
        "name": "k.train",
        "data": "t.data",
        "model": {
            "type": "tiny",
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
        "epochs": 4,
        "patience": 4,
        "batch_size": 8,
        "max_length": 32,
        "progress": False,
    },
}


def _kill_at_random_moments(config: Path, base: Path, trials: int, seed: int) -> list[str]:
    """Start the job and kill -9 it at `trials` random moments of a whole run's wall time (each trial a fresh start
    of the same command, resuming what the last one left), then let it finish; returns what each kill hit
    ("killed" or "finished before the kill")."""
    import random
    import signal

    rng = random.Random(seed)
    started = time.monotonic()
    assert run(config, base / "probe").returncode == 0  # how long one whole run takes here
    whole = time.monotonic() - started
    outcomes = []
    for _ in range(trials):
        proc = subprocess.Popen(
            [sys.executable, "run_job.py", str(config), "--base-dir", str(base), "-q"],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.3, whole))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            outcomes.append("killed")
        else:
            outcomes.append("finished before the kill")
    final = run(config, base)
    assert final.returncode == 0, final.stderr
    print(f"{config.stem}: kill -9 at {trials} random moments: {outcomes.count('killed')} killed before it finished")
    return outcomes


@pytest.mark.slow
def test_explain_killed_at_random_moments_resumes_with_nothing_lost_or_repeated(tmp_path):
    base = _job_base(tmp_path, "base")
    _job_base(tmp_path / "base", "probe")  # the probe run's own copy of the upstream artifacts
    config = tmp_path / "explain.json"
    config.write_text(json.dumps(STAGE_JOBS["explain"]))
    outcomes = _kill_at_random_moments(config, base, trials=6, seed=1)
    assert "killed" in outcomes
    folder = base / "explanations" / "k.explain"
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    probe = [json.loads(line) for line in (base / "probe" / "explanations" / "k.explain" / "records.jsonl").open()]
    assert sorted(r["idx"] for r in records) == list(range(64)), "every instance once"
    by_idx = {r["idx"]: r for r in probe}
    for r in records:  # the same scores as an uninterrupted run (LIG is deterministic)
        assert r["input_ids"] == by_idx[r["idx"]]["input_ids"]
        assert max(abs(a - b) for a, b in zip(r["attributions"], by_idx[r["idx"]]["attributions"], strict=True)) < 1e-5
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["counts"]["records"] == 64
    assert not list(folder.glob("*.partial")) and not list(folder.rglob(".*.tmp"))


@pytest.mark.slow
def test_train_killed_at_random_moments_finishes_every_epoch_once(tmp_path):
    base = _job_base(tmp_path, "base")
    _job_base(tmp_path / "base", "probe")
    config = tmp_path / "train.json"
    config.write_text(json.dumps(STAGE_JOBS["train"]))
    outcomes = _kill_at_random_moments(config, base, trials=5, seed=2)
    assert "killed" in outcomes
    folder = base / "models" / "k.train"
    epochs = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert epochs == sorted(set(epochs)) and epochs[0] == 1, epochs
    assert (folder / "model" / "config.json").is_file() and not (folder / "checkpoints").exists()
    assert json.loads((folder / "manifest.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_evaluate_killed_at_random_moments_gives_the_uninterrupted_result(tmp_path):
    base = _job_base(tmp_path, "base")
    explain = tmp_path / "explain.json"
    explain.write_text(json.dumps({**STAGE_JOBS["explain"], "explainer": {"type": "saliency"}}))
    assert run(explain, base).returncode == 0
    probe = tmp_path / "base" / "probe"
    shutil.copytree(base, probe, ignore=shutil.ignore_patterns("probe"))
    config = tmp_path / "evaluate.json"
    metrics = [{"type": "eraser"}, {"type": "ferret_aopc"}, {"type": "tau_loo"}, {"type": "cost"}]
    config.write_text(
        json.dumps(
            {
                "job": "evaluate",
                "name": "k.evaluate",
                "explanations": ["k.explain"],
                "model": "t.train",
                "metrics": metrics,
                "batch_size": 1,
                "plots": False,
            }
        )
    )
    outcomes = _kill_at_random_moments(config, base, trials=5, seed=3)
    assert "killed" in outcomes
    mine = json.loads((base / "logs" / "k.evaluate" / "metrics.json").read_text())
    theirs = json.loads((probe / "logs" / "k.evaluate" / "metrics.json").read_text())
    assert mine["table"] == theirs["table"]


def test_a_planted_training_checkpoint_is_refused_and_never_runs(tmp_path):
    """A file planted as the newest epoch checkpoint of an interrupted fine-tuning is refused by torch's
    weights_only unpickler: an error naming the file and the fix, and its payload never runs."""
    import pickle

    from test_train import TRAIN, VAL, settings, tiny_classifier

    from attexp.errors import AttexpError
    from attexp.train.fine_tune import fine_tune

    class Payload:
        def __reduce__(self):
            return (Path.write_text, (tmp_path / "pwned", "pwned"))

    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "last_checkpoint_1.pt").write_bytes(pickle.dumps({"trainer": Payload()}))
    model, tokenizer = tiny_classifier()
    with pytest.raises(AttexpError, match="last_checkpoint_1.pt: not a checkpoint of plain tensors.*Delete the folder"):
        fine_tune(model, tokenizer, TRAIN, VAL, settings(epochs=1), checkpoints, "cpu")
    assert not (tmp_path / "pwned").exists(), "the pickle's payload ran"


# ------------------------------------------------------------------------------- planted files and archives


def test_a_planted_cache_file_is_refused(tmp_path, monkeypatch):
    """A file planted in the cache under the pinned name (e.g. poisoned rows) is not read: its sha256 differs."""
    archive = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"1\t4.0\tpoisoned\r\n"
        info = tarfile.TarInfo("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setattr("attexp.io.packages.urllib.request.urlopen", lambda *a, **k: pytest.fail("network"))
    with pytest.raises(AttexpError, match=r"sha256 .* does not match the pinned .*Delete it \(rm '.*vaderSentiment"):
        PackagedSource(PackagedConfig(corpus="rt_sentences")).load(tmp_path)
    assert archive.exists(), "the evidence is left for the user to inspect"


def test_only_pinned_distributions_are_fetched(tmp_path):
    from attexp.io.packages import fetch

    with pytest.raises(AttexpError, match="not a known distribution"):
        fetch("evil==1.0", tmp_path)
    assert not any(tmp_path.iterdir())


def _zip_with(path: Path, members: dict[str, bytes], links: tuple[str, ...] = ()) -> Path:
    import stat
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


def test_archive_extraction_refuses_escapes_and_links(tmp_path):
    from attexp.io.packages import extract_folder

    outside = tmp_path / "outside.txt"
    slip = _zip_with(tmp_path / "slip.whl", {"m/config.json": b"{}", "m/../../outside.txt": b"pwned"})
    with pytest.raises(AttexpError, match="outside"):
        extract_folder(slip, "m/", tmp_path / "dest" / "a")
    assert not outside.exists()
    link = _zip_with(tmp_path / "link.whl", {"m/config.json": b"{}", "m/w.bin": b"/etc/passwd"}, links=("m/w.bin",))
    with pytest.raises(AttexpError, match="is a link"):
        extract_folder(link, "m/", tmp_path / "dest" / "b")
    fine = _zip_with(tmp_path / "fine.whl", {"m/config.json": b"{}", "m/sub/w.bin": b"w", "other/x": b"x"})
    written = extract_folder(fine, "m/", tmp_path / "dest" / "c")
    assert sorted(p.relative_to(tmp_path / "dest" / "c").as_posix() for p in written) == ["config.json", "sub/w.bin"]
