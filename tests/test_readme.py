"""The README's Python example runs as written (against a stand-in for the demo's classifier at the same path)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from test_byom import save_external_model

ROOT = Path(__file__).resolve().parent.parent


def python_block(section: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", body, re.S)
    assert blocks, f"README section {section!r} has no python block"
    return blocks[0]


def test_the_from_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    save_external_model(tmp_path / "models" / "rt.train.tiny" / "model")  # where the demo's classifier is
    monkeypatch.chdir(tmp_path)
    exec(compile(python_block("From Python"), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "comprehensiveness" in printed and "random floor" in printed
    manifest = json.loads((tmp_path / "explanations" / "my.lig" / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["explainer"]["n_steps"] == 20
    records = (tmp_path / "explanations" / "my.lig" / "records.jsonl").read_text().splitlines()
    assert len(records) == 2 and json.loads(records[1])["text"].endswith("<b>mess</b>.")


def test_the_architecture_table_is_the_registrys():
    """The README's architecture table is generated from the registry, so it cannot drift: regenerate it with
    `python -c "from attexp.models.architectures import architecture_table; print(architecture_table())"`."""
    from attexp.models.architectures import architecture_table

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- architectures:start -->\n")[1].split("\n<!-- architectures:end -->")[0]
    assert block == architecture_table()
    assert "| llama (gemma, llama, mistral, qwen2, qwen3) | ✔" in block  # the decoders are there
