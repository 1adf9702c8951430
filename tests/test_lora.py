"""LoRA classifiers (peft): the train stage's `lora:` writes an adapter over its base, every downstream job reads it
merged, the `peft` model source reads an adapter folder made elsewhere, and nothing in an adapter folder runs code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_parallel import FILLER, NEGATIVE, POSITIVE, QUIET, sentences
from tiny import tiny_classifier, word_tokenizer

from attexp.errors import AttexpError
from attexp.models.adapters import load_adapter_classifier
from attexp.models.loading import load_classifier

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Data files (96 / 32 / 32 rows) and a tiny Llama-style decoder classifier saved as a local model (the base)."""
    root = tmp_path_factory.mktemp("lora")
    for split, n, seed in (("train", 96, 0), ("validation", 32, 1), ("test", 32, 2)):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sentences(n, seed)))
    tokenizer = word_tokenizer(POSITIVE + NEGATIVE + FILLER, segments=False)
    model = tiny_classifier("llama", len(tokenizer.vocab), seed=5, num_labels=2)
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    model.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    return root


def jobs(world: Path, model: dict, **train) -> list[dict]:
    data = {"type": "local", "files": {s: str(world / f"{s}.jsonl") for s in ("train", "validation", "test")}}
    settings = {"epochs": 3, "batch_size": 16, "lr": 5e-3, "max_length": 32, **QUIET, **train}
    return [
        {"job": "download", "name": "d", "source": data},
        {"job": "train", "name": "t", "data": "d", "model": model, "lora": LORA, **settings},
    ]


def run(tmp_path: Path, run_cli, config: dict, base: Path) -> None:
    path = tmp_path / f"config{len(list(tmp_path.glob('config*.json')))}.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 0, err


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory) -> Path:
    """A LoRA fine-tune of the local decoder, and explain jobs over it (one per family)."""
    from attexp.cli import main

    base = tmp_path_factory.mktemp("lora-base")
    explain = [
        {"job": "explain", "name": f"e.{kind}", "model": "t", "data": "d", "explainer": {"type": kind, **extra},
         "max_length": 32, **QUIET}
        for kind, extra in (("lig", {"n_steps": 8}), ("alti", {}), ("attattr", {"steps": 4}), ("occlusion", {}))
    ]  # fmt: skip
    config = tmp_path_factory.mktemp("lora-config") / "c.json"
    config.write_text(json.dumps({"jobs": jobs(world, {"type": "local", "path": str(world / "base")}) + explain}))
    assert main([str(config), "--base-dir", str(base)]) == 0
    return base


def test_a_lora_train_job_writes_a_small_adapter_over_its_base_with_both_hashed(world, trained):
    folder = trained / "models" / "t" / "model"
    names = {p.name for p in folder.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "attexp_adapter.json", "tokenizer.json"} <= names
    assert (
        "model.safetensors" not in names and not (trained / "models" / "t" / "base").exists()
    )  # the base is referred to
    adapter = (folder / "adapter_model.safetensors").stat().st_size
    assert adapter < 0.5 * (world / "base" / "model.safetensors").stat().st_size
    manifest = json.loads((trained / "models" / "t" / "manifest.json").read_text())
    from attexp.models.sources import folder_fingerprint

    assert manifest["adapter"]["lora"]["r"] == 4 and manifest["adapter"]["trainable_parameters"] > 0
    assert manifest["adapter"]["base"]["sha256"] == folder_fingerprint(world / "base")
    assert manifest["adapter"]["sha256"] == folder_fingerprint(folder)
    assert manifest["test"]["accuracy"] > 0.7  # the adapters learned the task (the base alone is at chance)
    assert json.loads((folder / "attexp_adapter.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}


def test_merged_and_unmerged_adapters_give_the_same_logits(trained):
    folder = trained / "models" / "t" / "model"
    merged, tokenizer = load_adapter_classifier(folder)
    unmerged, _ = load_adapter_classifier(folder, merge=False)
    assert (
        type(merged).__name__ == "LlamaForSequenceClassification" and type(unmerged).__name__ != type(merged).__name__
    )
    batch = tokenizer(["good film and warm acting", "the plot was dull", "weak"], padding=True, return_tensors="pt")
    with torch.no_grad():
        a = merged(**batch).logits
        b = unmerged(**batch).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_every_explainer_family_runs_on_the_adapter_and_sees_the_trained_model(trained):
    model, tokenizer = load_classifier(trained / "models" / "t" / "model")
    for kind in ("lig", "alti", "attattr", "occlusion"):
        records = [json.loads(line) for line in (trained / "explanations" / f"e.{kind}" / "records.jsonl").open()]
        assert len(records) == 32 and all(np.all(np.isfinite(r["attributions"])) for r in records)
        with torch.no_grad():  # the records' predictions are the adapted model's
            alone = model(input_ids=torch.tensor([records[0]["input_ids"]])).logits[0].softmax(-1)
        torch.testing.assert_close(torch.tensor(records[0]["predictions"]), alone, atol=1e-5, rtol=1e-4)


def test_a_tiny_base_built_from_a_config_is_saved_beside_its_adapter(world, tmp_path, run_cli):
    base = tmp_path / "base"
    tiny = {"type": "tiny", "architecture": "llama", "hidden_size": 32, "intermediate_size": 64, "vocab_size": 200}
    run(tmp_path, run_cli, {"jobs": jobs(world, tiny, epochs=1)}, base)
    folder = base / "models" / "t"
    assert (folder / "base" / "model.safetensors").is_file()
    assert json.loads((folder / "model" / "attexp_adapter.json").read_text())["base"] == "../base"
    model, _ = load_classifier(folder / "model")
    assert model.config.model_type == "llama" and model.config.id2label == {0: "neg", 1: "pos"}


def test_a_peft_adapter_folder_is_a_model_source_and_pickles_are_refused(world, trained, tmp_path, run_cli):
    """An adapter folder made elsewhere (here: the train job's, moved away from its base record) over a base given
    by the config; a folder with pickled weights is refused before anything loads it."""
    import shutil

    adapter = tmp_path / "adapter"
    shutil.copytree(trained / "models" / "t" / "model", adapter)
    (adapter / "attexp_adapter.json").unlink()  # as peft writes it: the base named in adapter_config.json only
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "org/unreachable"}))
    data = {"type": "local", "files": {s: str(world / f"{s}.jsonl") for s in ("train", "validation", "test")}}
    source = {"type": "peft", "path": str(adapter), "base": {"type": "local", "path": str(world / "base")}}
    explain = {"job": "explain", "name": "e", "model": source, "data": "d", "explainer": {"type": "saliency"},
               "max_length": 32, **QUIET}  # fmt: skip
    base = tmp_path / "base"
    run(tmp_path, run_cli, {"jobs": [{"job": "download", "name": "d", "source": data}, explain]}, base)
    records = [json.loads(line) for line in (base / "explanations" / "e" / "records.jsonl").open()]
    trained_records = [json.loads(line) for line in (trained / "explanations" / "e.lig" / "records.jsonl").open()]
    got, expected = ([r["predictions"] for r in rs] for rs in (records, trained_records))
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-5)

    torch.save({"weights": torch.zeros(1)}, adapter / "adapter_model.bin")
    with pytest.raises(AttexpError, match="pickled weights.*safetensors only"):
        load_adapter_classifier(adapter, base=world / "base")
    path = tmp_path / "pickled.json"
    path.write_text(json.dumps({"jobs": [{"job": "download", "name": "d", "source": data}, {**explain, "name": "e2"}]}))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 1 and "safetensors only" in err and not (base / "explanations" / "e2" / "records.jsonl").exists()


def test_lora_config_errors_exit_2(world, tmp_path, run_cli):
    bad = jobs(world, {"type": "local", "path": str(world / "base")})
    bad[1]["lora"] = {"r": 0, "alfa": 3}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"jobs": bad}))
    code, _, err = run_cli(path, "--base-dir", tmp_path / "b")
    assert code == 2 and "jobs[1].lora.r" in err and "alfa" in err and not (tmp_path / "b").exists()
    bf16 = jobs(world, {"type": "local", "path": str(world / "base"), "dtype": "bfloat16"})
    path.write_text(json.dumps({"jobs": bf16}))
    assert run_cli(path, "--base-dir", tmp_path / "b", "--dry-run")[0] == 0  # a frozen bf16 base is fine under LoRA
    del bf16[1]["lora"]
    path.write_text(json.dumps({"jobs": bf16}))
    assert run_cli(path, "--base-dir", tmp_path / "b", "--dry-run")[0] == 2


LORA_PIPELINE = Path(__file__).resolve().parent.parent / "configs" / "pipelines" / "rotten_tomatoes.lora.jsonnet"


def test_the_shipped_lora_pipeline_and_its_hub_override_dry_run_offline(tmp_path, run_cli):
    code, out, err = run_cli(LORA_PIPELINE, "--base-dir", tmp_path / "base", "--dry-run")
    assert code == 0, err
    assert '"lora": {' in out and "rt.evaluate.lora" in out and not (tmp_path / "base").exists()
    [line] = [line for line in LORA_PIPELINE.read_text().splitlines() if "--jobs.1.model=" in line]
    override = line.strip().lstrip("/").strip().strip("'")
    code, out, err = run_cli(LORA_PIPELINE, "--base-dir", tmp_path / "base", "--dry-run", override)
    assert code == 0, err
    assert '"name": "Qwen/Qwen2.5-0.5B"' in out and '"dtype": "bfloat16"' in out


def test_the_lora_pipeline_shrunk_runs_every_explainer_on_the_adapter(tmp_path, cache_dir, monkeypatch):
    """tests/fixtures/configs/pipeline.lora.small.jsonnet: the shipped LoRA pipeline on a few hundred RT sentences."""
    from conftest import FIXTURES

    from attexp.cli import main
    from attexp.registry import EXPLAINERS, load_all

    monkeypatch.setenv("ATTEXP_CACHE_DIR", str(cache_dir))
    base = tmp_path / "base"
    assert main([str(FIXTURES / "configs" / "pipeline.lora.small.jsonnet"), "--base-dir", str(base), "-q"]) == 0
    assert (base / "models" / "rt.train.lora" / "model" / "adapter_model.safetensors").is_file()
    table = (base / "logs" / "rt.evaluate.lora" / "table.md").read_text()
    load_all()
    expected = set(EXPLAINERS.names()) - {"attexplainer"}  # the agent reads the BERT family only
    assert {line.split("|")[2].strip() for line in table.splitlines()[2:] if line.startswith("| rt.")} >= expected
    assert (base / "visualizations" / "rt.visualize.lora" / "summary.html").is_file()
    manifest = json.loads((base / "models" / "rt.train.lora" / "manifest.json").read_text())
    assert manifest["adapter"]["base"]["path"] == "../base" and manifest["adapter"]["base"]["sha256"]
