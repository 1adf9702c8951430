"""Paper reproductions: the `paper:` block of an evaluate job reaches table.md, metrics.json and summary.html as
(paper, measured, difference); every config of configs/papers/ passes --dry-run offline on the paper's hub data and
checkpoints, and runs end to end on the tiny offline stand-in with the paper's table beside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_byom import DATA, QUIET, save_external_model

PAPER = {
    "citation": "Ferrando et al. (2022), Measuring the Mixing of Contextual Information in the Transformer",
    "table": "Table 2 (SST-2, RoBERTa)",
    "source": "the issue's quotation of the paper's table",
    "numbers": {"s.lig": {"comprehensiveness": 0.223, "sufficiency": 0.074}, "rollout": {"comprehensiveness": 0.076}},
    "note": "a tiny stand-in model on local sentences",
}


def test_paper_numbers_are_put_beside_the_measured_ones(tmp_path, run_cli):
    save_external_model(tmp_path / "model")
    model = {"type": "local", "path": str(tmp_path / "model")}
    explain = {"job": "explain", "model": model, "data": "s.download", "max_length": 32, **QUIET}
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            {**explain, "name": "s.lig", "explainer": {"type": "lig", "n_steps": 4}},
            {**explain, "name": "s.occlusion", "explainer": {"type": "occlusion"}},
            {
                "job": "evaluate",
                "name": "s.evaluate",
                "explanations": ["s.lig", "s.occlusion"],
                "metrics": [{"type": "eraser"}],
                "paper": PAPER,
            },
            {"job": "visualize", "name": "s.pages", "explanations": ["s.lig"], "evaluation": "s.evaluate"},
        ]
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    base = tmp_path / "base"
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 0, err

    metrics = json.loads((base / "logs" / "s.evaluate" / "metrics.json").read_text())
    row = next(r for r in metrics["table"]["rows"] if r[0] == "s.lig")
    measured = dict(zip(metrics["table"]["columns"], row, strict=True))
    comparison = {(c["row"], c["column"]): c for c in metrics["paper"]["comparison"]}
    lig = comparison[("s.lig", "comprehensiveness")]
    assert lig["paper"] == 0.223 and lig["measured"] == measured["comprehensiveness"]
    assert lig["difference"] == measured["comprehensiveness"] - 0.223
    assert comparison[("rollout", "comprehensiveness")]["measured"] is None  # no rollout row in this run

    table = (base / "logs" / "s.evaluate" / "table.md").read_text()
    assert "Paper: Ferrando et al. (2022)" in table and "Table 2 (SST-2, RoBERTa)" in table
    assert "Not measured by this run: rollout.comprehensiveness" in table
    summary = (base / "visualizations" / "s.pages" / "summary.html").read_text()
    assert "Against the paper" in summary and "0.2230" in summary and "not measured" in summary


def test_an_unset_paper_block_leaves_the_config_hash_as_it_was():
    from attexp.config.hashing import config_hash

    job = {"job": "evaluate", "name": "e", "explanations": ["x"], "metrics": [{"type": "eraser"}]}
    assert config_hash({**job, "paper": None}) == config_hash(job)
    assert config_hash({**job, "paper": PAPER}) != config_hash(job)


PAPERS = sorted((Path(__file__).resolve().parent.parent / "configs" / "papers").glob("*.jsonnet"))


@pytest.mark.parametrize("config", PAPERS, ids=lambda p: p.stem)
def test_paper_config_passes_dry_run_offline_and_writes_nothing(config, tmp_path, run_cli):
    code, out, err = run_cli(config, "--base-dir", tmp_path / "base", "--dry-run")
    assert code == 0, err
    assert not (tmp_path / "base").exists()
    assert "'type': 'hub'" in out or '"type": "hub"' in out  # the paper's own checkpoints


# ALTI's stand-in run is the default suite's; the others take a minute or more each and run with -m slow
STAND_INS = [pytest.param(p, id=p.stem, marks=() if p.stem.startswith("alti.") else pytest.mark.slow) for p in PAPERS]


@pytest.mark.parametrize("config", STAND_INS)
def test_paper_config_runs_on_the_tiny_stand_in_with_the_paper_table_beside(config, tmp_path, run_cli):
    base = tmp_path / "base"
    code, out, err = run_cli(config, "--base-dir", base, "--ext-var", "standin=tiny")
    assert code == 0, err
    evaluations = sorted((base / "logs").glob("*/metrics.json"))  # every table of a paper config has its block
    assert evaluations
    for path in evaluations:
        paper = json.loads(path.read_text())["paper"]
        assert paper["citation"] and paper["source"] and "stand-in" in paper["note"]
        if not paper["comparison"]:  # the paper's numbers could not be read: the table says so
            assert "could not be read" in paper["note"]
            assert "No numbers of the paper" in (path.parent / "table.md").read_text()
        assert all(c["measured"] is not None for c in paper["comparison"]), path  # every paper number has a row
        assert "Paper: " in (path.parent / "table.md").read_text()
    assert "Open:" in out
    # the stand-in classifier learned something (a chance-level one would make every table shape-only)
    trained = sorted((base / "models").glob("*.train.tiny/manifest.json"))
    assert trained
    for manifest in trained:
        assert json.loads(manifest.read_text())["test"]["accuracy"] > 0.55, manifest


def test_a_paper_block_without_numbers_must_say_why():
    from attexp.config.schema import PaperNumbers

    block = {"citation": "c", "table": "t", "source": "s"}
    with pytest.raises(ValueError, match="say in note why"):
        PaperNumbers(**block)
    assert PaperNumbers(**block, note="the table could not be read").numbers == {}


def test_analysis_jobs_put_the_paper_beside_their_table(tmp_path):
    """head_pruning and triggers take a `paper:` block; its rows are their tables' rates and ranks."""
    from attexp.analyze.model_analysis import with_paper as _with_paper
    from attexp.analyze.pruning_job import HeadPruningConfig

    paper = {"citation": "c", "table": "t", "source": "s", "numbers": {"10": {"attattr": 0.8, "taylor": 0.7}}}
    config = HeadPruningConfig(name="p", model="m", data="d", paper=paper)
    rows = [{"rate": 0, "attattr": 0.9}, {"rate": 10, "attattr": 0.85}]
    metrics: dict = {}
    table = _with_paper(config, metrics, "TABLE", rows, "rate")
    comparison = {(c["row"], c["column"]): c for c in metrics["paper"]["comparison"]}
    assert comparison[("10", "attattr")]["measured"] == 0.85
    assert comparison[("10", "attattr")]["difference"] == pytest.approx(0.05)
    assert comparison[("10", "taylor")]["measured"] is None
    assert table.startswith("TABLE\n\nPaper: c, t") and "Not measured by this run: 10.taylor" in table
    untouched: dict = {}
    assert _with_paper(HeadPruningConfig(name="p", model="m", data="d"), untouched, "TABLE", rows, "rate") == "TABLE"
    assert untouched == {}


def test_the_normalised_aopc_joins_a_reproduction_only_when_asked():
    from attexp.config.loader import load_config

    config = Path(__file__).resolve().parents[1] / "configs" / "papers" / "alti.sst2.jsonnet"

    def metric_types(ext_vars: dict) -> set[str]:
        plan = load_config(config, base_dir=Path("/nonexistent-base"), ext_vars=ext_vars)
        jobs = [job for job in plan.jobs if job.job == "evaluate"]
        assert jobs
        return {m.type for job in jobs for m in job.metrics}

    assert "naopc" not in metric_types({})
    assert {"naopc", "eraser"} <= metric_types({"normalised": "1"})
