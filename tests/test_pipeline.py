"""End to end through the CLI on real offline data: the Empirical-Explainer pipeline with a tiny BERT.

One module-scoped run of tests/fixtures/configs/pipeline.small.jsonnet (RT sentences from PyPI, a tiny
BERT, a few hundred instances) feeds the artifact checks; the reruns, --force, locking and kill -9 tests
work on copies or on single jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import filelock
import numpy as np
import pytest
from conftest import FIXTURES, ROOT
from transformers import AutoConfig

from attexp.config.hashing import config_hash
from attexp.io.files import ResumableJsonlWriter, read_jsonl

SMALL = FIXTURES / "configs" / "pipeline.small.jsonnet"
EXPLANATION_FIELDS = {
    "idx",
    "input_ids",
    "tokens",
    "label",
    "predictions",
    "target",
    "attributions",
    "seconds",
    "forward_passes",
    "backward_passes",
    "batch",
}


@pytest.fixture(scope="module")
def base(tmp_path_factory, cache_dir) -> Path:
    base = tmp_path_factory.mktemp("base")
    env = {**os.environ, "ATTEXP_CACHE_DIR": str(cache_dir), "WANDB_DIR": str(base / "wandb-dir")}
    proc = subprocess.run(
        [sys.executable, "run_job.py", SMALL, "--base-dir", base],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    (base / "stderr.txt").write_text(proc.stderr)
    return base


def manifest(base: Path, folder: str, name: str) -> dict:
    return json.loads((base / folder / name / "manifest.json").read_text())


def test_every_stage_wrote_its_artifacts(base):
    for folder, name, files in [
        ("data", "rt.download", ["train.jsonl", "validation.jsonl", "test.jsonl"]),
        (
            "models",
            "rt.train.tiny",
            ["model/model.safetensors", "model/config.json", "model/tokenizer.json", "metrics.jsonl"],
        ),
        ("explanations", "rt.explain.lig.tiny.test", ["records.jsonl"]),
        ("models", "rt.distill.tiny", ["model", "metrics.jsonl"]),
        ("explanations", "rt.explain.empirical.tiny.test", ["records.jsonl"]),
        ("logs", "rt.evaluate.tiny", ["metrics.json", "table.md", "instances.jsonl"]),
        ("visualizations", "rt.visualize.tiny", ["index.html"]),
    ]:
        folder_path = base / folder / name
        for f in files + ["config.json", "manifest.json", "job.log"]:
            assert (folder_path / f).exists(), folder_path / f
        m = manifest(base, folder, name)
        assert m["status"] == "finished"
        assert m["config_hash"] == config_hash(json.loads((folder_path / "config.json").read_text()))
        assert m["versions"]["torch"] and m["schema"]["version"] == 1 and m["seed"] == 42
        assert m["finished"] and m["seconds"] > 0
        assert not list(folder_path.rglob("*.partial")), "no partial files in a finished artifact"


def test_manifest_names_upstream_jobs_with_their_hashes(base):
    m = manifest(base, "explanations", "rt.explain.lig.tiny.test")
    assert set(m["upstream"]) == {"rt.train.tiny", "rt.download"}
    assert m["upstream"]["rt.train.tiny"]["config_hash"] == manifest(base, "models", "rt.train.tiny")["config_hash"]
    d = manifest(base, "models", "rt.distill.tiny")
    assert set(d["upstream"]) == {"rt.train.tiny", "rt.explain.lig.tiny.train", "rt.explain.lig.tiny.validation"}


def test_dataset_splits_are_real_and_labelled(base):
    m = manifest(base, "data", "rt.download")
    assert m["label_names"] == ["negative", "positive"]
    assert m["counts"] == {"train": 400, "validation": 100, "test": 100}
    rows = read_jsonl(base / "data/rt.download/train.jsonl", required=("idx", "text", "label"))
    assert [r["idx"] for r in rows] == list(range(400))
    assert {r["label"] for r in rows} == {0, 1}
    assert all(len(r["text"]) > 3 for r in rows)


def test_train_records_epochs_and_test_metrics(base):
    m = manifest(base, "models", "rt.train.tiny")
    epochs = read_jsonl(base / "models/rt.train.tiny/metrics.jsonl")
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert 0.0 <= m["test"]["accuracy"] <= 1.0 and "f1_weighted" in m["test"]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base / "models/rt.train.tiny/model")
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_explanation_records_follow_the_contract(base):
    records = read_jsonl(base / "explanations/rt.explain.lig.tiny.test/records.jsonl")
    assert [r["idx"] for r in records] == list(range(40))
    for r in records:
        assert set(r) >= EXPLANATION_FIELDS
        assert len(r["input_ids"]) == len(r["tokens"]) == len(r["attributions"])
        assert r["tokens"][0] == "[CLS]" and r["tokens"][-1] == "[SEP]" and "[PAD]" not in r["tokens"]
        assert r["target"] == max(range(2), key=lambda k: r["predictions"][k]), "target = predicted class"
        assert (
            r["forward_passes"] == 1 + 8 + 2 and r["backward_passes"] == 8
        )  # prediction, steps, captum reading the layer at input and baseline
    empirical = read_jsonl(base / "explanations/rt.explain.empirical.tiny.test/records.jsonl")
    assert [r["input_ids"] for r in empirical] == [r["input_ids"] for r in records]
    assert all(r["backward_passes"] == 0 for r in empirical)
    m = manifest(base, "explanations", "rt.explain.lig.tiny.test")
    assert m["explainer"]["type"] == "lig" and m["explainer"]["n_steps"] == 8
    assert m["cost"]["instances"] == 40


def test_evaluate_compares_empirical_with_lig(base):
    results = json.loads((base / "logs/rt.evaluate.tiny/metrics.json").read_text())["results"]
    lig = results["rt.explain.lig.tiny.test"]
    emp = results["rt.explain.empirical.tiny.test"]
    assert lig["mse"] == pytest.approx(0.0) and lig["spearman"] == pytest.approx(1.0), "LIG against itself"
    assert emp["mse"] > 0 and -1 <= emp["spearman"] <= 1
    # passes, not seconds: a timed assertion fails on a loaded machine
    assert emp["cost.pass_ratio"] > 1, "one forward pass is cheaper than 8-step LIG"
    table = (base / "logs/rt.evaluate.tiny/table.md").read_text()
    assert "rt.explain.empirical.tiny.test" in table and "spearman" in table
    assert "rt.explain.empirical.tiny.test" in (base / "stderr.txt").read_text(), "the table is in the log"


def test_convergence_curve_places_lig_steps_and_the_empirical_explainer(base, run_cli):
    """The convergence pipeline reuses the finished pipeline's jobs and adds LIG at 1, 2, 4 steps."""
    code, _, err = run_cli(FIXTURES / "configs" / "convergence.small.jsonnet", "--base-dir", base)
    assert code == 0, err
    logs = base / "logs" / "rt.evaluate.convergence.tiny"
    results = json.loads((logs / "metrics.json").read_text())["results"]
    lig = {k: results[f"rt.explain.lig{k}.tiny.test"] for k in (1, 2, 4)}
    # more integration steps: more passes, and closer to the 8-step reference
    assert lig[1]["cost.forward_passes"] < lig[2]["cost.forward_passes"] < lig[4]["cost.forward_passes"]
    assert lig[1]["mse"] > lig[4]["mse"] and lig[4]["spearman"] > lig[1]["spearman"]
    assert results["rt.explain.lig.tiny.test"]["mse"] == pytest.approx(0.0)
    assert results["rt.explain.empirical.tiny.test"]["cost.forward_passes"] < lig[1]["cost.forward_passes"]
    assert (logs / "plots" / "cost_vs_spearman.png").read_bytes()[:4] == b"\x89PNG"
    # the student and shared empirical explainers beside the paper's copy
    shared = read_jsonl(base / "explanations/rt.explain.empirical.tiny.shared.test/records.jsonl")
    lig8 = read_jsonl(base / "explanations/rt.explain.lig.tiny.test/records.jsonl")
    assert all(r["forward_passes"] == 1 for r in shared), "the prediction forward gives the explanation"
    for a, b in zip(shared, lig8, strict=True):  # the classifier's own predictions
        assert a["idx"] == b["idx"] and a["predictions"] == pytest.approx(b["predictions"], abs=1e-5)
    assert manifest(base, "models", "rt.distill.tiny.student")["mode"] == "student"
    student = AutoConfig.from_pretrained(base / "models/rt.distill.tiny.student/model")
    assert student.num_hidden_layers == 1
    for name in ("student", "shared"):
        assert -1 <= results[f"rt.explain.empirical.tiny.{name}.test"]["spearman"] <= 1


def test_visualize_pages_link_and_escape(base):
    index = (base / "visualizations/rt.visualize.tiny/index.html").read_text()
    assert "rt.explain.lig.tiny.test" in index and "rt.explain.empirical.tiny.test" in index
    pages = sorted((base / "visualizations/rt.visualize.tiny/instances").glob("*.html"))
    assert len(pages) == 40


def test_wandb_offline_run_was_written(base):
    runs = list((base / "logs" / "wandb").glob("offline-run-*"))
    assert runs, "the train job had wandb enabled in offline mode"


def test_rerun_skips_finished_jobs(base, run_cli):
    before = manifest(base, "models", "rt.train.tiny")
    code, _, err = run_cli(SMALL, "--base-dir", base)
    assert code == 0, err
    assert manifest(base, "models", "rt.train.tiny") == before


def test_changed_config_is_refused_without_force(base, run_cli):
    code, _, err = run_cli(SMALL, "--base-dir", base, "--jobs.4.explainer.n_steps=3", "--dry-run")
    assert code == 2
    assert "rt.explain.lig.tiny.test' already finished with a different config" in err and "--force" in err


def test_force_reruns_one_job(base, tmp_path, run_cli):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = tmp_path / "explain.jsonnet"
    config.write_text(f"(import '{SMALL}').jobs[4] {{ explainer+: {{ n_steps: 3 }} }}")
    code, _, err = run_cli(config, "--base-dir", copy, "--force")
    assert code == 0, err
    records = read_jsonl(copy / "explanations/rt.explain.lig.tiny.test/records.jsonl")
    assert records[0]["backward_passes"] == 3


def test_lock_blocks_a_second_writer(base, tmp_path, run_cli):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = tmp_path / "explain.jsonnet"
    config.write_text(f"(import '{SMALL}').jobs[4] {{ name: 'locked' }}")
    with filelock.FileLock(str(copy / "explanations" / ".locked.lock")):
        code, _, err = run_cli(config, "--base-dir", copy)
    assert code == 1 and "another run is writing job 'locked'" in err
    assert not (copy / "explanations/locked/records.jsonl").exists()


def test_explain_killed_mid_job_resumes_without_loss_or_duplicates(base, tmp_path):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = tmp_path / "explain.jsonnet"
    config.write_text(f"(import '{SMALL}').jobs[2] {{ name: 'resumed', batch_size: 4, limit: 120 }}")
    partial = copy / "explanations" / "resumed" / "records.jsonl.rank0.partial"
    cmd = [sys.executable, "run_job.py", config, "--base-dir", copy]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not partial.exists() or len(partial.read_text().splitlines()) < 12):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    recovered = ResumableJsonlWriter(copy / "explanations/resumed/records.jsonl.rank0")  # what the rerun finds
    recovered.close()
    first_run = set(recovered.done)
    written = len(first_run)
    assert 12 <= written < 120, "killed mid-job"
    assert json.loads((copy / "explanations/resumed/manifest.json").read_text())["status"] == "running"
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((copy / "explanations/resumed/manifest.json").read_text())
    assert m["status"] == "finished" and m["resumed"] == 1
    assert m["counts"]["explained_this_run"] == 120 - written
    resumed = read_jsonl(copy / "explanations/resumed/records.jsonl")
    reference = read_jsonl(base / "explanations/rt.explain.lig.tiny.train/records.jsonl")
    assert [r["idx"] for r in resumed] == [r["idx"] for r in reference] == list(range(120))
    batches_before = {r["batch"] for r in resumed if r["idx"] in first_run}
    batches_after = {r["batch"] for r in resumed if r["idx"] not in first_run}
    assert max(batches_before) < min(batches_after), "batch numbers keep counting up across the resume"
    for a, b in zip(resumed, reference, strict=True):
        assert a["input_ids"] == b["input_ids"]
        assert a["attributions"] == pytest.approx(b["attributions"], abs=1e-4)


def test_sweep_agent_command_line_runs_the_job(base, tmp_path, monkeypatch):
    """Build and run the command exactly as `wandb agent` does for configs/sweeps/*.yaml (offline)."""
    import yaml
    from wandb.wandb_agent import Agent

    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    sweep = yaml.safe_load((ROOT / "configs/sweeps/rotten_tomatoes.train.tiny.yaml").read_text())
    chosen = {k: (v["values"][-1] if "values" in v else v["value"]) for k, v in sweep["parameters"].items()}
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("ATTEXP_BASE_DIR", str(copy))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "agent"))
    monkeypatch.setenv("WANDB_SWEEP_ID", "testsweep")
    (tmp_path / "agent").mkdir()
    agent = Agent(api=None, queue=None, sweep_id="testsweep")
    agent._sweep_command = sweep["command"]
    agent._command_run(
        {"run_id": "run1", "program": sweep["program"], "args": {k: {"value": v} for k, v in chosen.items()}}
    )
    assert agent._run_processes["run1"].wait(timeout=600) == 0
    folder = copy / "models" / "rt.train.tiny.sweep-run1"
    config = json.loads((folder / "config.json").read_text())
    assert {k: config[k] for k in chosen} == chosen, "the agent's --key=value arguments reached the config"
    assert json.loads((folder / "manifest.json").read_text())["status"] == "finished"
    assert list((copy / "logs" / "wandb").glob("offline-run-*-run1")), "the job logged to the sweep's run id"


def test_torchrun_data_parallel_explain_equals_single_process(base, tmp_path):
    """Two CPU ranks (gloo) through ignite.distributed: each writes a shard, rank 0 merges; same records."""
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = tmp_path / "explain.jsonnet"
    config.write_text(f"(import '{SMALL}').jobs[2] {{ name: 'parallel', batch_size: 8, limit: 60 }}")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29533",
        "run_job.py",
        config,
        "--base-dir",
        copy,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = copy / "explanations" / "parallel"
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "finished" and m["world_size"] == 2 and m["counts"]["records"] == 60
    assert not list(folder.glob("*.partial")), "shards merged and removed"
    assert (folder / "job.rank1.log").exists()
    parallel = read_jsonl(folder / "records.jsonl")
    single = read_jsonl(base / "explanations/rt.explain.lig.tiny.train/records.jsonl")[:60]
    assert [r["idx"] for r in parallel] == [r["idx"] for r in single] == list(range(60))
    assert {r["batch"] % 2 for r in parallel} == {0, 1}, "both ranks explained instances"
    for a, b in zip(parallel, single, strict=True):
        assert a["input_ids"] == b["input_ids"] and a["target"] == b["target"]
        assert a["attributions"] == pytest.approx(b["attributions"], abs=1e-4)


def test_every_manifest_is_its_stages_typed_model_with_nothing_undeclared(base):
    """The writers go through the typed manifests: every key a finished job wrote is a field of its stage's model
    (nothing lands in `model_extra`), and the explain manifest's cost totals are those of its records."""
    from attexp.io.artifacts import find_artifact, names_on_disk
    from attexp.io.manifests import ExplanationCost, Manifest
    from attexp.io.records import EXPLANATIONS, SCHEMAS

    names = names_on_disk(base)
    assert len(names) >= 7
    for name in names:
        artifact = find_artifact(base, name)
        schema = SCHEMAS[artifact.manifest.schema_.name]
        assert type(artifact.manifest) is schema.manifest and isinstance(artifact.manifest, Manifest)
        assert not artifact.manifest.model_extra, (name, sorted(artifact.manifest.model_extra))
        assert artifact.manifest.world_size == 1 and artifact.manifest.code_version == 1
    lig = find_artifact(base, "rt.explain.lig.tiny.test")
    records = lig.read(EXPLANATIONS)
    assert lig.manifest.cost == ExplanationCost.of(records) and lig.manifest.cost.instances == len(records) > 0
    assert lig.manifest.explainer_type == "lig" and lig.manifest.explained_model() == "rt.train.tiny"
    assert lig.manifest.label_names == find_artifact(base, "rt.download").manifest.label_names


def test_a_job_array_in_any_order_one_task_killed_gives_the_records_of_one_process(base, tmp_path, run_cli):
    """`--shard I/N` as separate commands, no rendezvous: shard 1 first, shard 0 killed mid-way and rerun; the task
    that records the last shard merges. A task with another shard count or another config is refused (exit 2)."""
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = tmp_path / "explain.jsonnet"
    config.write_text(f"(import '{SMALL}').jobs[2] {{ name: 'array', batch_size: 4, limit: 80 }}")
    folder = copy / "explanations" / "array"
    code, _, err = run_cli(config, "--base-dir", copy, "--shard", "1/2")
    assert code == 0, err
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "running" and m["shards"] == 2 and m["shards_done"] == [1]
    assert not (folder / "records.jsonl").exists() and (folder / "records.jsonl.rank1.partial").exists()
    assert run_cli(config, "--base-dir", copy, "--shard", "0/3")[0] == 2  # another shard count
    changed = tmp_path / "changed.jsonnet"
    changed.write_text(f"(import '{SMALL}').jobs[2] {{ name: 'array', batch_size: 4, limit: 81 }}")
    assert run_cli(changed, "--base-dir", copy, "--shard", "0/2")[0] == 2  # another config
    code, _, err = run_cli(config, "--base-dir", copy, "--merge")
    assert code == 1 and "shards [0] of 2 have not finished" in err

    partial = folder / "records.jsonl.rank0.partial"
    cmd = [sys.executable, "run_job.py", config, "--base-dir", copy, "--shard", "0/2"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not partial.exists() or len(partial.read_text().splitlines()) < 8):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((folder / "manifest.json").read_text())["shards_done"] == [1]
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "2"}
    done = subprocess.run(cmd[:-2], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)  # task 0 of 2
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "finished" and m["world_size"] == 2 and m["shards"] == 2 and m["counts"]["records"] == 80
    assert not list(folder.glob("*.partial")), "shards merged and removed"
    merged = read_jsonl(folder / "records.jsonl")
    single = read_jsonl(base / "explanations/rt.explain.lig.tiny.train/records.jsonl")[:80]
    assert [r["idx"] for r in merged] == [r["idx"] for r in single] == list(range(80))
    assert {r["batch"] % 2 for r in merged} == {0, 1}, "both tasks explained instances"
    for a, b in zip(merged, single, strict=True):
        assert a["input_ids"] == b["input_ids"] and a["target"] == b["target"]
        assert a["attributions"] == pytest.approx(b["attributions"], abs=1e-4)
    assert run_cli(config, "--base-dir", copy, "--shard", "0/2")[0] == 0  # finished: skipped


def test_a_job_array_refuses_jobs_that_cannot_run_as_shards(tmp_path, run_cli):
    code, _, err = run_cli(SMALL, "--base-dir", tmp_path / "b", "--shard", "0/2")
    assert code == 2 and "Run those jobs first without --shard" in err and "'rt.download'" in err
    assert "(train): DDP: every rank trains on a share of every batch" in err  # each refused job says why
    assert not (tmp_path / "b").exists()
    code, out, _ = run_cli(SMALL, "--base-dir", tmp_path / "b", "--dry-run")
    assert code == 0 and "runs on: rank 0 only under torchrun" in out
    assert "runs on: all ranks under torchrun, not as a job array: DDP" in out  # train and distill, from Job.splits
    assert "runs on: all ranks under torchrun (each a share of the work) or the shards of a job array" in out


def _evaluate_config(tmp_path: Path, name: str) -> Path:
    config = tmp_path / f"{name}.jsonnet"
    config.write_text(
        f"std.filter(function(j) j.job == 'evaluate', (import '{SMALL}').jobs)[0] {{ name: '{name}', plots: false }}"
    )
    return config


def _same_evaluation(folder: Path, single: Path) -> None:
    """Outputs of a split evaluate job equal one process's: the table exactly, every per-instance value and
    summary to float noise (other batch compositions), the shares' forward passes counted."""
    assert (folder / "table.md").read_text() == (single / "table.md").read_text()
    mine, theirs = (
        [json.loads(line) for line in (f / "instances.jsonl").read_text().splitlines()] for f in (folder, single)
    )
    assert [(r["explanations"], r["idx"]) for r in mine] == [(r["explanations"], r["idx"]) for r in theirs]
    for a, b in zip(mine, theirs, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], str):
                assert a[key] == b[key]
            else:
                np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(b[key], float), atol=1e-6)
    results = json.loads((folder / "metrics.json").read_text())["results"]
    expected = json.loads((single / "metrics.json").read_text())["results"]
    assert results.keys() == expected.keys()
    for run in results:
        assert results[run] == pytest.approx(expected[run], abs=1e-6, nan_ok=True)
    assert not list(folder.glob("*.partial")), "share files removed"


def test_evaluate_split_over_two_torchrun_ranks_and_over_array_tasks_equals_one_process(base, tmp_path, run_cli):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    code, _, err = run_cli(_evaluate_config(tmp_path, "ev.single"), "--base-dir", copy)
    assert code == 0, err
    single = copy / "logs" / "ev.single"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29534", "run_job.py"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, _evaluate_config(tmp_path, "ev.ranks"), "--base-dir", copy],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = copy / "logs" / "ev.ranks"
    m = json.loads((ranks / "manifest.json").read_text())
    assert m["status"] == "finished" and m["world_size"] == 2 and m["evaluation_cost"]["shares"] == 2
    alone = json.loads((single / "manifest.json").read_text())["evaluation_cost"]
    # the finishing rank ran (almost) nothing again: the shares' rows were enough (a share batches fewer rows)
    assert alone["rows"] <= m["evaluation_cost"]["rows"] < 1.2 * alone["rows"]
    _same_evaluation(ranks, single)

    array = _evaluate_config(tmp_path, "ev.array")
    for task in ("1/2", "0/2"):
        code, _, err = run_cli(array, "--base-dir", copy, "--shard", task)
        assert code == 0, err
    m = json.loads((copy / "logs" / "ev.array" / "manifest.json").read_text())
    assert m["status"] == "finished" and m["shards"] == 2 and m["shards_done"] == [0, 1]
    _same_evaluation(copy / "logs" / "ev.array", single)


def test_teachers_axis_prices_each_learned_explainer_by_its_teacher(base, run_cli):
    """configs/lib/teachers.libsonnet: each teacher explains as many sentences as the budget buys, each design
    learns from it, and the evaluate table gives every learned explainer its teacher's recorded cost."""
    code, _, err = run_cli(FIXTURES / "configs" / "teachers.small.jsonnet", "--base-dir", base)
    assert code == 0, err
    budget = 0.5 * 120 * 19
    logs = base / "logs" / "rt.evaluate.teachers.tiny"
    results = json.loads((logs / "metrics.json").read_text())["results"]
    for teacher, passes in (("lig1", 5), ("lig4", 11)):
        explained = [
            read_jsonl(base / f"explanations/rt.explain.{teacher}.tiny.{split}/records.jsonl")
            for split in ("train", "validation")
        ]
        assert len(explained[0]) == min(120, int((budget - 40 * passes) // passes)) and len(explained[1]) == 40
        recorded = sum(r["forward_passes"] + r["backward_passes"] for records in explained for r in records)
        assert recorded <= budget * 1.01 and recorded == pytest.approx(sum(map(len, explained)) * passes)
        for design in ("heads", "shared"):
            name = f"rt.explain.empirical.tiny.{design}.{teacher}.test"
            row = results[name]
            assert row["teacher_instances"] == sum(map(len, explained)) and row["teacher_passes"] == recorded
            assert row["cost.forward_passes"] == 1 and -1 <= row["spearman"] <= 1
            assert manifest(base, "models", f"rt.distill.tiny.{design}.{teacher}")["mode"] == design
    assert "teacher_passes" not in results["rt.explain.lig1.tiny.test"]  # not a learned explainer
    table = (logs / "table.md").read_text()
    assert "teacher_passes" in table.splitlines()[0]
    assert (logs / "plots" / "teacher_cost_vs_spearman.png").read_bytes()[:4] == b"\x89PNG"
