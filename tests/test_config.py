"""Config loading and validation: every shipped config validates, every error kind has a broken fixture."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import FIXTURES, ROOT, files_under

from attexp.config.jsonnet import apply_overrides, parse_value
from attexp.config.loader import load_config
from attexp.errors import ConfigError

BROKEN = sorted((FIXTURES / "configs" / "broken").glob("*.jsonnet"))
SHIPPED = sorted(p for p in (ROOT / "configs").rglob("*.jsonnet"))
PIPELINES = sorted((ROOT / "configs" / "pipelines").glob("*.jsonnet")) + [ROOT / "configs" / "run_job.jsonnet"]


def expectations(path: Path) -> list[str]:
    return re.findall(r"^// expect: (.+)$", path.read_text(), flags=re.M)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_config_exits_2_with_a_named_message_and_writes_nothing(path, tmp_path, run_cli):
    code, out, err = run_cli(path, "--base-dir", tmp_path / "base")
    assert code == 2
    assert "Traceback" not in err
    assert str(path) in err, "the message names the config file"
    for fragment in expectations(path):
        assert fragment in err, f"expected {fragment!r} in:\n{err}"
    assert not (tmp_path / "base").exists() or not files_under(tmp_path / "base")


def test_every_error_is_reported_at_once(tmp_path):
    config = tmp_path / "two.jsonnet"
    config.write_text("{ job: 'train', name: 't', data: 'd', model: { type: 'tiny' }, epocs: 1, lr: 'fast' }")
    with pytest.raises(ConfigError) as info:
        load_config(config, base_dir=tmp_path, check_upstream=False)
    message = str(info.value)
    assert "epocs: unknown key" in message and "Did you mean 'epochs'?" in message
    assert "lr:" in message and "'fast'" in message
    assert "2 problem(s)" in message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_shipped_config_validates(path, tmp_path):
    plan = load_config(path, base_dir=tmp_path, check_upstream=False)
    assert plan.jobs
    for job in plan.jobs:
        dumped = job.model_dump(mode="json")
        assert dumped["name"] == job.name
        # the dump round-trips through validation (what config.json stores is a valid config)
        again = load_config_from_dict(dumped, tmp_path)
        assert again.model_dump(mode="json") == dumped


def load_config_from_dict(data: dict, tmp_path: Path):
    from attexp.config.loader import validate

    return validate(data, source="<dump>", base_dir=tmp_path, check_upstream=False).jobs[0]


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.stem)
def test_pipelines_pass_dry_run_offline_and_write_nothing(path, tmp_path, run_cli):
    code, out, err = run_cli(path, "--base-dir", tmp_path, "--dry-run")
    assert code == 0, err
    assert "would run" in out
    assert "reads" in out and "written earlier in this pipeline" in out
    assert files_under(tmp_path) == []


def test_single_stage_config_needs_its_upstream_on_disk(tmp_path, run_cli):
    code, _, err = run_cli(ROOT / "configs/rotten_tomatoes/train.tiny.jsonnet", "--base-dir", tmp_path, "--dry-run")
    assert code == 2
    assert "data: unknown upstream job 'rt.download'" in err
    assert "Run that job first" in err


def test_overrides_parse_json_and_address_list_items():
    data = {"jobs": [{"a": 1}, {"b": {"c": "x"}}]}
    out = apply_overrides(data, ["jobs.1.b.c=3", "jobs.0.flag=true", "jobs.0.s=hello", "jobs.0.l=[1,2]"], "src")
    assert out["jobs"][1]["b"]["c"] == 3
    assert out["jobs"][0] == {"a": 1, "flag": True, "s": "hello", "l": [1, 2]}
    assert data["jobs"][1]["b"]["c"] == "x", "the input is not modified"
    assert parse_value("1e-3") == 1e-3
    with pytest.raises(ConfigError, match="index '5' given; allowed: 0..1"):
        apply_overrides(data, ["jobs.5.a=1"], "src")


def test_cli_override_forms_reach_the_config(tmp_path, run_cli):
    config = ROOT / "configs/rotten_tomatoes/download.jsonnet"
    code, out, _ = run_cli(
        config,
        "--base-dir",
        tmp_path,
        "--dry-run",
        "--seed=7",
        "--override",
        "limit.train=100",
        "--source.corpus",
        "rt_snippets",
    )
    assert code == 0
    resolved = json.loads(out.split("resolved config: ", 1)[1].replace("\n    ", "\n"))
    assert resolved["seed"] == 7 and resolved["limit"] == {"train": 100}
    assert resolved["source"]["corpus"] == "rt_snippets"


def test_ext_vars_from_cli_and_environment(tmp_path, run_cli, monkeypatch):
    config = tmp_path / "ext.jsonnet"
    config.write_text(
        "{ job: 'download', name: std.extVar('NAME'), seed: std.parseInt(std.extVar('SEED')),"
        " source: { type: 'packaged', corpus: 'rt_sentences' } }"
    )
    monkeypatch.setenv("NAME", "from-env")
    code, out, err = run_cli(config, "--base-dir", tmp_path / "b", "--dry-run", "--ext-var", "SEED=5")
    assert code == 0, err
    assert "download from-env" in out and '"seed": 5' in out
    code, _, err = run_cli(config, "--base-dir", tmp_path / "b", "--dry-run")
    assert code == 2 and "SEED" in err


def test_unknown_cli_argument_is_a_config_error(run_cli):
    code, _, err = run_cli("configs/run_job.jsonnet", "stray")
    assert code == 2 and "unrecognised argument 'stray'" in err


def test_list_names_every_registry(run_cli):
    code, out, _ = run_cli("--list")
    assert code == 0
    for heading in ("jobs:", "explainers:", "metrics:", "data sources:", "model sources:"):
        assert heading in out
    for name in ("download", "train", "explain", "distill", "evaluate", "visualize", "lig", "empirical", "mse"):
        assert re.search(rf"^\s+{re.escape(name)}\s", out, flags=re.M), name


@pytest.mark.parametrize("entry", [["run_job.py"], ["-m", "attexp"]], ids=["run_job.py", "python -m attexp"])
def test_entry_points_run_the_cli(entry, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, *entry, "--list"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "explainers:" in proc.stdout and "lig" in proc.stdout
    broken = FIXTURES / "configs" / "broken" / "unknown_job.jsonnet"
    proc = subprocess.run(
        [sys.executable, *entry, broken, "--base-dir", tmp_path], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "unknown job 'explian'" in proc.stderr and "Traceback" not in proc.stderr
