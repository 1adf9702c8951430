"""Record schemas guard the format between stages (attexp.io.records): golden records of each current version
are read back, a newer version or another schema is refused with a message that names both, and a base
directory written by the layout before the house move is read without `--force`."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pytest

from attexp.config.loader import load_config
from attexp.errors import AttexpError, ConfigError
from attexp.io.artifacts import find_artifact
from attexp.io.records import DATASET, EVALUATION, EXPLANATIONS, SCHEMAS, STRUCTURAL_TOKENS
from attexp.runner import prepare

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "records" / "v1"
ROOT = Path(__file__).resolve().parent.parent
GOLDEN_FILES = [
    ("rt.download", DATASET, "test.jsonl"),
    ("rt.explain.lig.tiny.test", EXPLANATIONS, None),
    ("rt.evaluate.tiny", EVALUATION, None),
]


@pytest.mark.parametrize(("name", "schema", "file"), GOLDEN_FILES, ids=[g[0] for g in GOLDEN_FILES])
def test_golden_records_of_the_current_version_are_read(name, schema, file, caplog):
    artifact = find_artifact(GOLDEN, name)
    assert artifact is not None and artifact.finished
    with caplog.at_level(logging.INFO, logger="attexp.io.artifacts"):
        records = artifact.read(schema, file)
    assert len(records) == 3
    for record in records:
        assert set(schema.required) <= set(record), sorted(set(schema.required) - set(record))
        assert set(record) <= set(schema.required) | set(schema.optional) | _open_fields(schema, record)
    assert f"{schema.name} version {schema.version}" in caplog.text, "the reader says which version it read"


def _open_fields(schema, record: dict) -> set[str]:
    """Evaluation records carry one field per metric column: any name is allowed there."""
    return set(record) if schema is EVALUATION else set()


def test_golden_explanations_keep_the_documented_fields():
    record = find_artifact(GOLDEN, "rt.explain.lig.tiny.test").read(EXPLANATIONS)[0]
    n = len(record["input_ids"])
    assert len(record["tokens"]) == n and len(record["attributions"]) == n
    assert record["tokens"][0] in STRUCTURAL_TOKENS and record["tokens"][-1] in STRUCTURAL_TOKENS
    assert abs(sum(record["predictions"]) - 1.0) < 1e-6 and 0 <= record["target"] < len(record["predictions"])
    assert record["forward_passes"] >= 1 and record["seconds"] > 0


def test_every_stage_declares_a_schema_of_the_table():
    from attexp.registry import JOBS, load_all

    load_all()
    for entry in JOBS.entries():
        assert SCHEMAS[entry.cls.schema.name] is entry.cls.schema, entry.name
        assert entry.cls.folder in {"data", "models", "explanations", "logs", "visualizations"}, entry.name


def copy_artifact(tmp_path: Path, folder: str, change) -> Path:
    base = tmp_path / "base"
    shutil.copytree(GOLDEN / folder, base / folder)
    manifest = base / folder / "manifest.json"
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data))
    return base


def test_a_newer_version_is_refused_naming_both_versions(tmp_path):
    newer = EXPLANATIONS.version + 1
    base = copy_artifact(tmp_path, "explanations/rt.explain.lig.tiny.test", lambda m: m["schema"].update(version=newer))
    with pytest.raises(AttexpError, match=rf"version {newer}.*reads version {EXPLANATIONS.version}"):
        find_artifact(base, "rt.explain.lig.tiny.test").read(EXPLANATIONS)


def test_another_schema_is_refused(tmp_path):
    base = copy_artifact(tmp_path, "data/rt.download", lambda m: None)
    with pytest.raises(AttexpError, match="declares schema 'attexp.dataset'.*'attexp.explanations'"):
        find_artifact(base, "rt.download").read(EXPLANATIONS, "test.jsonl")


CHANGED_SINCE = {"rt.evaluate.tiny", "rt.visualize.tiny"}
"""Demo jobs whose config changed after the previous layout was written (the demo's evaluate job gained ERASER on
the model and its visualize job a summary page; issue 12)."""


def test_previous_layout_base_dir_is_skipped_without_force():
    """Every job of the demo pipeline, as the layout before the house move wrote it, has the same config hash now,
    except those whose config the demo changed since: they are refused (not overwritten) and the fix is named."""
    base = FIXTURES / "previous_layout"
    plan = load_config(ROOT / "configs" / "run_job.jsonnet", base_dir=base)
    unchanged = dataclasses.replace(plan, jobs=[job for job in plan.jobs if job.name not in CHANGED_SINCE])
    actions = {item.config.name: item.action for item in prepare(unchanged, base, force=False)}
    assert actions and set(actions.values()) == {"skip"}, actions
    with pytest.raises(ConfigError) as refused:
        prepare(plan, base, force=False)
    assert all(f"job {name!r} already finished with a different config" in str(refused.value) for name in CHANGED_SINCE)
    assert "--force" in str(refused.value)
