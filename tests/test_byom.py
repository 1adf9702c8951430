"""Bring your own model: jobs read a classifier that attexp did not train (a `save_pretrained` folder, a hub
model, the packaged MiniLM), its architecture is checked before anything runs, and config errors come all at once.

The model here is a tiny BERT saved with `save_pretrained` into a folder of its own, with class names of its own
(`neg`, `pos`); the data are the small local sentiment files of tests/fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny import tiny_bert, word_tokenizer
from transformers import (
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    GPT2Config,
    ModernBertConfig,
    ModernBertForSequenceClassification,
)

from attexp import registry
from attexp.config.loader import load_config
from attexp.errors import ConfigError
from attexp.explain.batching import explain_rows
from attexp.models.sources import folder_fingerprint, train_wordpiece

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "data"
DATA = {
    "type": "local",
    "files": {
        "train": str(FIXTURES / "tiny_sentiment" / "train.csv"),
        "validation": str(FIXTURES / "tiny_sentiment" / "validation.tsv"),
        "test": str(FIXTURES / "tiny_sentiment" / "test.jsonl"),
    },
    "text": "sentence",
    "label": "sentiment",
}
QUIET = {"progress": False}


def save_external_model(folder: Path) -> None:
    """A classifier saved outside attexp: a tiny BERT with its own WordPiece vocabulary and class names."""
    texts = [line for line in (FIXTURES / "tiny_sentiment" / "train.csv").read_text().splitlines()[1:]]
    tokenizer = train_wordpiece(texts, 300, True, 64)
    model = tiny_bert(len(tokenizer), seed=3, num_labels=2)
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def write(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


def local_pipeline(model_path: str) -> dict:
    return {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            {
                "job": "explain",
                "name": "s.explain.lig",
                "model": {"type": "local", "path": model_path},
                "data": "s.download",
                "explainer": {"type": "lig", "n_steps": 4},
                "max_length": 32,
                **QUIET,
            },
            {
                "job": "evaluate",
                "name": "s.evaluate",
                "explanations": ["s.explain.lig"],
                "metrics": [{"type": "eraser"}],
            },
        ]
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from attexp.cli import main

    base = tmp_path_factory.mktemp("byom")
    save_external_model(base / "external" / "model")
    config = write(base / "pipeline.json", local_pipeline("external/model"))  # relative to the base directory
    assert main([str(config), "--base-dir", str(base)]) == 0
    return base


def test_a_local_model_is_explained_and_evaluated_under_its_own_class_names(base):
    folder = base / "explanations" / "s.explain.lig"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["label_names"] == ["neg", "pos"]  # from the model's id2label, not the data
    assert manifest["models"]["model"] == {
        "source": {"type": "local", "path": "external/model", "dtype": "float32"},  # the dtype it was loaded in
        "sha256": folder_fingerprint(base / "external" / "model"),
    }
    records = [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(len(r["attributions"]) == len(r["tokens"]) for r in records)
    metrics = json.loads((base / "logs" / "s.evaluate" / "metrics.json").read_text())
    assert "eraser.comprehensiveness" in metrics["results"]["s.explain.lig"]  # the model was found from the explain job


def test_the_records_are_those_of_the_same_model_loaded_by_hand(base):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(base / "external" / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(base / "external" / "model")
    entry = registry.EXPLAINERS.get("lig")
    explainer = entry.cls(entry.config_type.model_validate({"type": "lig", "n_steps": 4}), model, tokenizer, {})
    rows = [json.loads(line) for line in (base / "data" / "s.download" / "test.jsonl").read_text().splitlines()]
    by_hand = {
        r["idx"]: r
        for batch in explain_rows(
            explainer,
            model,
            tokenizer,
            rows,
            batch_size=16,
            max_length=32,
            target="predicted",
            device="cpu",
            progress=False,
        )
        for r in batch
    }
    folder = base / "explanations" / "s.explain.lig"
    for record in map(json.loads, (folder / "records.jsonl").read_text().splitlines()):
        mine = by_hand[record["idx"]]
        assert record["tokens"] == mine["tokens"] and record["target"] == mine["target"]
        assert torch.allclose(torch.tensor(record["attributions"]), torch.tensor(mine["attributions"]), atol=1e-6)


def test_a_changed_model_folder_is_refused_like_a_changed_config(base, tmp_path, run_cli):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(base, copy)
    config = write(tmp_path / "pipeline.json", local_pipeline("external/model"))
    code, _, err = run_cli(config, "--base-dir", copy, "--dry-run")
    assert code == 0  # unchanged: every job is skipped
    (copy / "external" / "model" / "config.json").write_text(
        (copy / "external" / "model" / "config.json").read_text().replace('"neg"', '"negative"')
    )
    code, _, err = run_cli(config, "--base-dir", copy, "--dry-run")
    assert code == 2
    assert "s.explain.lig" in err and "changed since it ran" in err and "--force" in err
    code, _, err = run_cli(config, "--base-dir", copy, "--force")
    assert code == 0, err
    manifest = json.loads((copy / "explanations" / "s.explain.lig" / "manifest.json").read_text())
    assert manifest["label_names"] == ["negative", "pos"]


def _config_only(folder: Path, kind: str) -> None:
    """A model folder holding only config.json: enough for the check, nothing to load."""
    config = DebertaV2Config(num_labels=2) if kind == "deberta-v2" else GPT2Config(num_labels=2)
    config.save_pretrained(folder)


@pytest.mark.parametrize("kind", ["deberta-v2", "gpt2"])
def test_an_inside_explainer_on_an_unsupported_architecture_exits_2_before_training(kind, tmp_path, run_cli):
    _config_only(tmp_path / "outside", kind)
    base = tmp_path / "base"
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            {
                "job": "train",
                "name": "s.train",
                "data": "s.download",
                "model": {"type": "local", "path": str(tmp_path / "outside")},
            },
            {
                "job": "explain",
                "name": "s.alti",
                "model": "s.train",
                "data": "s.download",
                "explainer": {"type": "alti"},
            },
            {
                "job": "explain",
                "name": "s.iba",
                "model": {"type": "local", "path": str(tmp_path / "outside")},
                "data": "s.download",
                "explainer": {"type": "iba"},
            },
            {"job": "layer_flow", "name": "s.flow", "model": "s.train", "data": "s.download"},
        ]
    }
    code, _, err = run_cli(write(tmp_path / "c.json", config), "--base-dir", base, "--dry-run")
    assert code == 2
    assert "3 problem(s)" in err
    assert "jobs[2].explainer: explainer 'alti' does not support train job 's.train'" in err
    assert "jobs[3].explainer: explainer 'iba'" in err and "jobs[4]: job 'layer_flow'" in err
    assert f"a '{kind}' model" in err and "bert, camembert, distilbert" in err
    working = err.split("Explainers that work on")[1].split(".")[0]
    assert "lig" in working and "occlusion" in working and "alti" not in working
    assert not base.exists()  # nothing written


@pytest.mark.parametrize("kind", ["deberta-v2", "modernbert"])
def test_the_explainers_named_as_working_do_run_on_that_architecture(kind):
    """The error above names the explainers without an `architectures` limit as working: they do."""
    tokenizer = word_tokenizer("a good bad film plot".split())
    small = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    if kind == "deberta-v2":
        model = DebertaV2ForSequenceClassification(DebertaV2Config(**small)).eval()
    else:
        ids = dict(bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3)
        model = ModernBertForSequenceClassification(ModernBertConfig(**small, **ids)).eval()
    rows = [
        {"idx": i, "text": t, "label": i % 2} for i, t in enumerate(["a good film", "bad plot a film film", "good"])
    ]
    registry.load_all()
    ran = []
    for name in registry.EXPLAINERS.names():
        entry = registry.EXPLAINERS.get(name)
        if entry.cls.architectures is not None or name == "empirical":  # empirical needs a distill job
            continue
        explainer = entry.cls(entry.config_type.model_validate({"type": name}), model, tokenizer, {})
        batches = explain_rows(
            explainer,
            model,
            tokenizer,
            rows,
            batch_size=2,
            max_length=16,
            target="predicted",
            device="cpu",
            progress=False,
        )
        records = [r for batch in batches for r in batch]
        assert [r["idx"] for r in records] and all(
            len(r["attributions"]) == len(r["tokens"]) and all(map(torch.isfinite, torch.tensor(r["attributions"])))
            for r in records
        ), name
        ran.append(name)
    assert {"lig", "ig", "occlusion", "lime", "saliency"} <= set(ran)


def test_sources_a_job_cannot_read_are_reported_at_validation(tmp_path, run_cli):
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            {
                "job": "explain",
                "name": "a",
                "model": {"type": "tiny"},
                "data": "s.download",
                "explainer": {"type": "lig"},
            },
            {
                "job": "explain",
                "name": "b",
                "model": {"type": "local", "path": "not/there"},
                "data": "s.download",
                "explainer": {"type": "lig"},
            },
            {"job": "explain", "name": "c", "model": {"path": "x"}, "data": "s.download", "explainer": {"type": "lig"}},
        ]
    }
    code, _, err = run_cli(write(tmp_path / "c.json", config), "--base-dir", tmp_path / "base")
    assert code == 2 and "3 problem(s)" in err
    assert "jobs[1].model.type: 'tiny' given; allowed here: hub, local, packaged" in err
    assert "jobs[2].model: model.path 'not/there' resolves to" in err
    assert "jobs[3].model: expected an object with a 'type' key (or the name of an upstream train job)" in err
    assert not (tmp_path / "base").exists()


def test_three_typos_in_three_jobs_are_reported_in_one_run(tmp_path):
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": {**DATA, "txt": "sentence"}},
            {"job": "train", "name": "s.train", "data": "s.download", "model": {"type": "tiny"}, "epocs": 1},
            {
                "job": "explain",
                "name": "s.explain",
                "model": "s.train",
                "data": "s.download",
                "explainer": {"type": "lig", "n_step": 3},
                "batch_sise": 4,
            },
        ]
    }
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "c.json", config), base_dir=tmp_path)
    message = str(info.value)
    assert "jobs[0].source.txt: unknown key 'txt'" in message and "Did you mean 'text'?" in message
    assert "jobs[1].epocs: unknown key 'epocs'" in message and "Did you mean 'epochs'?" in message
    assert "jobs[2].explainer.n_step: unknown key 'n_step'" in message and "Did you mean 'n_steps'?" in message
    assert "jobs[2].batch_sise: unknown key 'batch_sise'" in message  # the other fields of a job with a bad explainer
    assert "4 problem(s)" in message


def _fake_hub_snapshot(hf_home: Path, repo: str, make) -> Path:
    """A model in the Hugging Face cache laid out as `from_pretrained` leaves it (refs/main -> a snapshot)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / commit
    make(snapshot)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    return snapshot


def test_a_hub_model_in_the_cache_is_explained_offline_and_its_architecture_checked(tmp_path):
    """The `hub` source is the real `from_pretrained(name, revision)`: offline it reads the hub cache, and the
    architecture check reads the cached config.json (nothing is fetched). In a subprocess, since the hub cache's
    location is fixed when huggingface_hub is imported."""
    hf_home = tmp_path / "hf"
    _fake_hub_snapshot(hf_home, "someone/tiny-sentiment", save_external_model)
    _fake_hub_snapshot(hf_home, "someone/deberta", lambda folder: _config_only(folder, "deberta-v2"))
    hub = {"type": "hub", "name": "someone/tiny-sentiment", "revision": "main"}
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            {
                "job": "explain",
                "name": "s.hub",
                "model": hub,
                "data": "s.download",
                "explainer": {"type": "rollout"},
                "max_length": 32,
                **QUIET,
            },
        ]
    }
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(ROOT / "run_job.py"), str(write(tmp_path / "c.json", config)), *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    base = tmp_path / "base"
    done = run("--base-dir", str(base))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((base / "explanations" / "s.hub" / "manifest.json").read_text())
    assert manifest["label_names"] == ["neg", "pos"]
    assert manifest["models"]["model"]["sha256"] == "someone/tiny-sentiment@0123456789abcdef0123456789abcdef01234567"

    config["jobs"][1]["model"] = {"type": "hub", "name": "someone/deberta"}
    refused = run("--base-dir", str(tmp_path / "other"), "--dry-run")
    assert refused.returncode == 2
    assert "explainer 'rollout' does not support the hub model" in refused.stderr and "'deberta-v2'" in refused.stderr


def test_a_max_length_beyond_the_models_positions_exits_2_before_training(tmp_path, run_cli):
    base = tmp_path / "base"
    tiny = {"type": "tiny", "vocab_size": 200, "hidden_size": 16, "max_position_embeddings": 64}
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            {"job": "train", "name": "s.train", "data": "s.download", "model": tiny, "max_length": 64},
            {
                "job": "explain",
                "name": "s.lig",
                "model": "s.train",
                "data": "s.download",
                "max_length": 128,
                "explainer": {"type": "lig"},
            },
        ]
    }
    code, _, err = run_cli(write(tmp_path / "c.json", config), "--base-dir", base)
    assert code == 2
    assert "jobs[2].max_length: max_length=128 exceeds the max_position_embeddings=64" in err and "at most 64" in err
    assert not base.exists()  # nothing written, the train job never ran
