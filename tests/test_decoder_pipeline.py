"""A decoder classifier end to end through the CLI: tests/fixtures/configs/pipeline.decoder.small.jsonnet, the
shipped configs/pipelines/rotten_tomatoes.decoder.jsonnet shrunk (a 2-layer Llama with grouped-query attention on
a few hundred real RT sentences): fine-tune, every explainer that runs on a decoder, shared, student and heads
empirical explainers, evaluate, summary.html, head pruning, triggers, layer flow. One module-scoped run feeds the
checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FIXTURES, ROOT
from transformers import AutoModelForSequenceClassification

from attexp.io.files import read_jsonl
from attexp.registry import EXPLAINERS, load_all

SMALL = FIXTURES / "configs" / "pipeline.decoder.small.jsonnet"


def run_config(config: Path, base: Path, cache_dir: Path) -> None:
    """Run `config` through the CLI into `base`; it must succeed."""
    env = {**os.environ, "ATTEXP_CACHE_DIR": str(cache_dir)}
    command = [sys.executable, "run_job.py", config, "--base-dir", base]
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def base(tmp_path_factory, cache_dir) -> Path:
    base = tmp_path_factory.mktemp("decoder")
    run_config(SMALL, base, cache_dir)
    return base


SHIPPED = ROOT / "configs" / "pipelines" / "rotten_tomatoes.decoder.jsonnet"


def dry_run(base: Path, *overrides: str) -> str:
    """`--dry-run` the shipped decoder pipeline with `overrides`; it must succeed and write nothing. Its stdout."""
    proc = subprocess.run(
        [sys.executable, "run_job.py", str(SHIPPED), "--dry-run", *overrides],
        cwd=ROOT,
        env={**os.environ, "ATTEXP_BASE_DIR": str(base)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not base.exists()
    return proc.stdout


def test_the_shipped_decoder_pipeline_dry_runs_offline(tmp_path):
    assert "rt.evaluate.decoder" in dry_run(tmp_path / "base")


def test_the_hub_decoder_its_comment_documents_dry_runs_offline(tmp_path):
    """The override the shipped config's comment gives for a real decoder (a hub Qwen2) is taken as written."""
    [line] = [line for line in SHIPPED.read_text().splitlines() if "--jobs.1.model=" in line]
    stdout = dry_run(tmp_path / "base", line.strip().lstrip("/").strip().strip("'"))
    assert '"name": "Qwen/Qwen2.5-0.5B"' in stdout and '"type": "hub"' in stdout


def test_the_classifier_is_a_decoder_reading_its_last_token(base):
    folder = base / "models" / "rt.train.decoder" / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_key_value_heads"] < config["num_attention_heads"]
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    records = list(read_jsonl(base / "explanations" / "rt.explain.alti.decoder.test" / "records.jsonl"))
    # the records' predictions (batches of mixed lengths, right-padded) are the model's on each text alone
    for record in records:
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([record["input_ids"]])).logits[0].softmax(-1)
        assert torch.allclose(torch.tensor(record["predictions"]), alone, atol=1e-5), record["idx"]
        assert record["target"] == int(alone.argmax())


def test_every_explainer_that_supports_a_decoder_ran_and_was_evaluated(base):
    load_all()
    limits = {name: EXPLAINERS.get(name).cls.architectures for name in EXPLAINERS.names()}
    expected = {name for name, limited in limits.items() if limited is None or "llama" in limited}
    assert "attexplainer" not in expected  # refused on decoders (its [MASK] action), at validation
    table = (base / "logs" / "rt.evaluate.decoder" / "table.md").read_text()
    rows = [line.split("|")[2].strip() for line in table.split("\n\n")[0].splitlines()[2:]]
    assert expected == set(rows)
    for folder in (base / "explanations").glob("rt.explain.*.decoder.test"):
        for record in read_jsonl(folder / "records.jsonl"):
            assert len(record["attributions"]) == len(record["input_ids"])
            assert all(map(lambda x: x == x, record["attributions"]))  # no NaN
    summary = (base / "visualizations" / "rt.visualize.decoder" / "summary.html").read_text()
    assert "alti" in summary and "attattr" in summary


def test_the_analyses_ran_on_the_decoder(base):
    pruning = json.loads((base / "logs" / "rt.prune_heads.decoder" / "metrics.json").read_text())
    trained = json.loads((base / "models" / "rt.train.decoder" / "manifest.json").read_text())
    # the analysis reads the test split with the saved tokenizer and its own batches: the model's own accuracy
    assert pruning["model_accuracy"] == pytest.approx(trained["test"]["accuracy"], abs=1e-9)
    assert (base / "logs" / "rt.triggers.decoder" / "table.md").is_file()
    flow = list(read_jsonl(base / "visualizations" / "rt.layer_flow.decoder" / "flow.jsonl"))
    assert len(flow) == 2 and all(len(r["scores"]) == 2 for r in flow)  # 2 instances x 2 layers


def test_the_analyses_and_inside_explainers_run_on_modernbert(tmp_path, cache_dir):
    run_config(FIXTURES / "configs" / "analyses.modernbert.small.jsonnet", tmp_path, cache_dir)
    folder = tmp_path / "models" / "rt.train.modernbert" / "model"
    assert json.loads((folder / "config.json").read_text())["layer_types"][1] == "sliding_attention"
    for record in read_jsonl(tmp_path / "explanations" / "rt.explain.alti.modernbert" / "records.jsonl"):
        assert abs(sum(record["attributions"]) - 1) < 1e-4  # ALTI's scores are the [CLS] row of a rollout
    trees = list(read_jsonl(tmp_path / "visualizations" / "rt.tree.modernbert" / "trees.jsonl"))
    assert len(trees) == 2 and all(tree["edges"] is not None for tree in trees)
    assert (tmp_path / "logs" / "rt.prune_heads.modernbert" / "table.md").is_file()
    assert (tmp_path / "logs" / "rt.triggers.modernbert" / "table.md").is_file()
    assert len(list(read_jsonl(tmp_path / "visualizations" / "rt.layer_flow.modernbert" / "flow.jsonl"))) == 2
