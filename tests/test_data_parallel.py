"""Data-parallel training and distillation on two CPU processes (torchrun, gloo, 1 thread each) against one.

The global batch is the config's `batch_size` split over the ranks (each rank takes its share of every batch,
`LengthBucketSampler`), so with dropout off and every batch split evenly (a test setting: the row counts are
multiples of the batch size) DDP's averaged gradient is the one-process gradient: the loss trajectory and the
weights stay equal to float noise. Validation and test metrics are all-reduced over the ranks' shares.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from safetensors.numpy import load_file
from tiny import tiny_bert, word_tokenizer

POSITIVE, NEGATIVE = ["good", "great", "fine", "warm"], ["bad", "dull", "flat", "weak"]
FILLER = ["the", "film", "plot", "was", "very", "quite", "and", "acting", "story", "ending"]
QUIET = {"progress": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sentences(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(FILLER, size=int(rng.integers(3, 9))))
        words.insert(int(rng.integers(len(words) + 1)), str(rng.choice(POSITIVE if label else NEGATIVE)))
        rows.append({"text": " ".join(words), "label": ["neg", "pos"][label]})
    return rows


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """A folder with data files (96 / 32 / 32 rows) and a tiny BERT without dropout, saved as a local model."""
    root = tmp_path_factory.mktemp("dp")
    for split, n, seed in (("train", 96, 0), ("validation", 32, 1), ("test", 32, 2)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentences(n, seed)))
    tokenizer = word_tokenizer(POSITIVE + NEGATIVE + FILLER)
    model = tiny_bert(len(tokenizer), seed=5, num_labels=2)
    model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = 0.0
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root


def jobs(world: Path) -> list[dict]:
    data = {"type": "local", "files": {s: str(world / f"{s}.jsonl") for s in ("train", "validation", "test")}}
    return [
        {"job": "download", "name": "d", "source": data},
        {
            "job": "train",
            "name": "t",
            "data": "d",
            "model": {"type": "local", "path": str(world / "model")},
            "epochs": 3,
            "batch_size": 16,
            "eval_batch_size": 16,
            "lr": 2e-3,
            "patience": 5,
            "max_length": 32,
            **QUIET,
        },
    ]


def run(config: dict, base: Path, procs: int, tmp_path: Path) -> None:
    path = tmp_path / f"{config['name'] if 'name' in config else 'pipeline'}.{procs}.json"
    path.write_text(json.dumps(config))
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={procs}", f"--master_port={free_port()}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [*launcher, "run_job.py", str(path), "--base-dir", str(base)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def history(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    """Every weight within `atol`, but the attention key biases (BERT's `key.bias`, the middle third of an
    `in_proj_bias`): softmax does not change when a constant is added
    to every key score, so their gradient is 0 in exact arithmetic and Adam turns float noise into lr-sized steps
    (they differ by ~lr between any two runs of other batch compositions; they change no output)."""
    files = sorted(path.name for path in a.glob("*.safetensors"))
    assert files and files == sorted(path.name for path in b.glob("*.safetensors"))
    x = {f"{f}:{k}": v for f in files for k, v in load_file(str(a / f)).items()}
    y = {f"{f}:{k}": v for f in files for k, v in load_file(str(b / f)).items()}
    assert x.keys() == y.keys()
    for key in [k for k in x if k.endswith("in_proj_bias")]:  # [query | key | value] biases: the key third out
        third = len(x[key]) // 3
        x[key], y[key] = (np.concatenate([v[:third], v[2 * third :]]) for v in (x[key], y[key]))
    compared = [k for k in x if not k.endswith("attention.self.key.bias")]
    assert len(compared) >= 4
    worst = max((float(np.abs(x[k].astype(np.float64) - y[k]).max()), k) for k in compared)
    assert worst[0] < atol, worst


@pytest.mark.parametrize("lora", [None, {"r": 4, "alpha": 8}], ids=["every-weight", "lora"])
def test_two_ranks_train_like_one_process_with_the_global_batch(world, tmp_path, lora):
    """Full fine-tuning, and LoRA adapters over the frozen model (`lora:`; the adapter files are compared)."""
    one, two = tmp_path / "one", tmp_path / "two"
    config = {"jobs": jobs(world)}
    if lora:
        config["jobs"][1]["lora"] = lora
    run(config, one, 1, tmp_path)
    run(config, two, 2, tmp_path)
    a, b = history(one / "models" / "t"), history(two / "models" / "t")
    assert [e["epoch"] for e in a] == [e["epoch"] for e in b] == [1, 2, 3]
    for x, y in zip(a, b, strict=True):  # the loss trajectory and the all-reduced validation metrics
        assert x["train_loss"] == pytest.approx(y["train_loss"], abs=1e-5)
        assert x["val_f1"] == pytest.approx(y["val_f1"], abs=1e-6)
    assert a[0]["train_loss"] != pytest.approx(a[-1]["train_loss"], abs=1e-3), "the model trained"
    assert_same_weights(one / "models" / "t" / "model", two / "models" / "t" / "model", atol=1e-5)
    m1 = json.loads((one / "models" / "t" / "manifest.json").read_text())
    m2 = json.loads((two / "models" / "t" / "manifest.json").read_text())
    assert m1["world_size"] == 1 and m2["world_size"] == 2
    assert m2["test"]["accuracy"] == pytest.approx(m1["test"]["accuracy"], abs=1e-9)  # over every test row
    assert not (two / "models" / "t" / "checkpoints").exists()
    assert json.loads((two / "data" / "d" / "manifest.json").read_text())["world_size"] == 1  # rank 0 alone


@pytest.mark.parametrize(
    "mode",
    ["copy", *(pytest.param(mode, marks=pytest.mark.slow) for mode in ("student", "shared", "heads"))],
)
def test_two_ranks_distill_like_one_process(world, tmp_path, mode):
    """Each mode of the empirical explainer; the frozen classifier of `shared` and `heads` stays out of the
    all-reduce."""
    base = tmp_path / "base"
    explain = {
        "job": "explain",
        "model": "t",
        "data": "d",
        "explainer": {"type": "lig", "n_steps": 4},
        "max_length": 32,
        **QUIET,
    }
    setup = [
        *jobs(world),
        {**explain, "name": "e.train", "split": "train"},
        {**explain, "name": "e.validation", "split": "validation"},
    ]
    run({"jobs": setup}, base, 1, tmp_path)
    distill = {
        "job": "distill",
        "model": "t",
        "train": "e.train",
        "validation": "e.validation",
        "mode": mode,
        "epochs": 2,
        "batch_size": 16,
        "lr": 1e-3,
        "max_length": 32,
        **QUIET,
    }
    run({**distill, "name": "x.one"}, base, 1, tmp_path)
    run({**distill, "name": "x.two"}, base, 2, tmp_path)
    a, b = history(base / "models" / "x.one"), history(base / "models" / "x.two")
    for x, y in zip(a, b, strict=True):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-4, abs=1e-6)
        assert x["val_mse"] == pytest.approx(y["val_mse"], rel=1e-4, abs=1e-7)
    assert_same_weights(base / "models" / "x.one" / "model", base / "models" / "x.two" / "model", atol=1e-4)
    assert json.loads((base / "models" / "x.two" / "manifest.json").read_text())["world_size"] == 2


def rank_pid(rank: int, marker: str) -> int | None:
    """The pid of the torchrun worker of `rank` whose command line holds `marker` (read from /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and f"RANK={rank}".encode() in environ and "torch.distributed.run" not in cmdline:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_a_rank_killed_mid_training_and_the_command_rerun_resumes(world, tmp_path):
    """kill -9 of rank 1 after an epoch's checkpoint: torchrun stops the job; the same command resumes from that
    epoch (not from scratch) and ends with the weights of an uninterrupted run."""
    base, whole = tmp_path / "killed", tmp_path / "whole"
    config = {"jobs": [*jobs(world)[:1], {**jobs(world)[1], "epochs": 6}]}
    run(config, whole, 2, tmp_path)
    path = tmp_path / "killed.json"
    path.write_text(json.dumps(config))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    cmd += ["run_job.py", str(path), "--base-dir", str(base)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = base / "models" / "t" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not list(checkpoints.glob("last_checkpoint_2.pt")):
        time.sleep(0.05)
    pid = rank_pid(1, str(path))
    assert pid is not None and proc.poll() is None, "rank 1 runs"
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    manifest = json.loads((base / "models" / "t" / "manifest.json").read_text())
    assert manifest["status"] == "running"
    run(config, base, 2, tmp_path)  # the same command again
    manifest = json.loads((base / "models" / "t" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["resumed"] == 1 and manifest["world_size"] == 2
    assert [e["epoch"] for e in history(base / "models" / "t")] == list(range(1, 7))
    log = (base / "models" / "t" / "job.log").read_text()
    assert "resuming from last_checkpoint_" in log
    assert_same_weights(base / "models" / "t" / "model", whole / "models" / "t" / "model", atol=1e-5)
