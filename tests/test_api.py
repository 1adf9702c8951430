"""The Python API (`attexp.explain`, `attexp.Explanations`, `attexp.evaluate`) against the jobs it shares its code
with: for a classifier saved outside attexp (a local `save_pretrained` folder), every registered explainer gives
the same records from an explain job and from `attexp.explain`; the evaluation equals the evaluate job's; pages
render escaped text in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_byom import DATA, save_external_model

import attexp
from attexp import registry
from attexp.errors import ConfigError

MODEL = "external/model"
FAST = {  # settings that keep each explainer quick on the tiny model; the same for job and API
    "lig": {"n_steps": 4},
    "ig": {"n_steps": 4},
    "attattr": {"steps": 3},
    "gradient_shap": {"n_samples": 3},
    "shapley_sampling": {"n_samples": 2},
    "kernel_shap": {"n_samples": 12},
    "lime": {"n_samples": 12},
    "iba": {"steps": 3},
    "empirical": {"model": "s.distill"},
    "attexplainer": {"agent": "s.agent"},
}
QUIET = {"progress": False}


def explainers() -> list[str]:
    registry.load_all()
    return registry.EXPLAINERS.names()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Data, the external model, the upstream artifacts of `empirical` and `attexplainer`, and one explain job per
    registered explainer on the test split."""
    from attexp.cli import main

    base = tmp_path_factory.mktemp("api")
    save_external_model(base / MODEL)
    model = {"type": "local", "path": MODEL}

    def explain(name: str, split: str, spec: dict) -> dict:
        return {
            "job": "explain",
            "name": name,
            "model": model,
            "data": "s.download",
            "split": split,
            "explainer": spec,
            "batch_size": 3,
            "max_length": 32,
            **QUIET,
        }

    jobs = [
        {"job": "download", "name": "s.download", "source": DATA},
        explain("s.lig.train", "train", {"type": "lig", "n_steps": 4}),
        explain("s.lig.validation", "validation", {"type": "lig", "n_steps": 4}),
        {
            "job": "distill",
            "name": "s.distill",
            "model": model,
            "train": "s.lig.train",
            "validation": "s.lig.validation",
            "epochs": 1,
            "max_length": 32,
            **QUIET,
        },
        {
            "job": "train_agent",
            "name": "s.agent",
            "model": model,
            "data": "s.download",
            "batch_size": 4,
            "episodes": 2,
            "checkpoint_every": 1,
            "log_every": 1,
            "max_length": 32,
            **QUIET,
            "game": {"done_threshold": 0.5, "max_steps": 3, "bins": 8},
            "agent": {"batch_size": 8, "learn_every": 1},
        },
    ]
    jobs += [explain(f"s.{name}", "test", {"type": name, **FAST.get(name, {})}) for name in explainers()]
    config = base / "pipeline.json"
    config.write_text(json.dumps({"jobs": jobs}))
    assert main([str(config), "--base-dir", str(base)]) == 0
    return base


def job_records(base: Path, name: str) -> list[dict]:
    path = base / "explanations" / name / "records.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_explanations_carry_text_logits_and_words(base):
    for record in job_records(base, "s.lig"):
        assert record["text"] and len(record["logits"]) == 2
        assert len(record["word_ids"]) == len(record["tokens"]) and record["words"]
        # the words, in order, are the text as written (a prefix of it where max_length cut the text)
        joined, text = "".join(record["words"]), "".join(record["text"].split())
        assert joined and text.startswith(joined) and all(word in record["text"] for word in record["words"])


@pytest.mark.parametrize("name", explainers())
def test_api_and_job_give_identical_records(base, name):
    rows = [json.loads(line) for line in (base / "data" / "s.download" / "test.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in rows] == list(range(len(rows)))  # so the API's idx (positions) are the job's
    options = {"type": name, **FAST.get(name, {})}
    exp = attexp.explain(
        base / MODEL, None, [r["text"] for r in rows], options, batch_size=3, max_length=32, base_dir=base
    )
    mine = exp.records
    theirs = job_records(base, f"s.{name}")
    assert len(mine) == len(theirs) == len(rows)
    for a, b in zip(mine, theirs, strict=True):
        a, b = dict(a), dict(b)
        a.pop("seconds"), b.pop("seconds")  # wall time
        a.pop("label"), b.pop("label")  # the API was given no labels
        assert a == b, name


def test_explain_accepts_objects_and_a_typo_gets_the_job_message(base):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(base / MODEL)
    tokenizer = AutoTokenizer.from_pretrained(base / MODEL)
    exp = attexp.explain(model, tokenizer, "a warm, funny film", "occlusion", max_length=32)
    assert len(exp) == 1 and exp.label_names == ["neg", "pos"]
    with pytest.raises(ConfigError, match="Did you mean 'n_steps'"):
        attexp.explain(model, tokenizer, ["x"], "lig", n_step=3, max_length=32)
    with pytest.raises(ConfigError, match="Did you mean 'lig'"):
        attexp.explain(model, tokenizer, ["x"], "lgi", max_length=32)
    with pytest.raises(ConfigError, match="does not exist"):
        attexp.explain(base / "no-such-model", None, ["x"], "occlusion")
    with pytest.raises(ConfigError, match="base_dir"):
        attexp.explain(model, tokenizer, ["x"], "empirical", model="s.distill", max_length=32)


def test_evaluate_equals_the_evaluate_job(base, tmp_path):
    from attexp.cli import main

    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    config = tmp_path / "evaluate.json"
    job = {
        "job": "evaluate",
        "name": "s.evaluate",
        "explanations": ["s.lig", "s.occlusion"],
        "reference": "s.lig",
        "metrics": [{"type": "eraser"}, {"type": "spearman"}],
    }
    config.write_text(json.dumps(job))
    assert main([str(config), "--base-dir", str(copy)]) == 0
    written = json.loads((copy / "logs" / "s.evaluate" / "metrics.json").read_text())

    runs = {name: attexp.Explanations.load(copy / "explanations" / name) for name in ("s.lig", "s.occlusion")}
    result = attexp.evaluate(runs, copy / MODEL, metrics=["eraser", "spearman"], reference="s.lig")
    assert result.metrics["table"] == written["table"]
    assert result.metrics["random_floor"] == written["random_floor"]
    assert result.table == (copy / "logs" / "s.evaluate" / "table.md").read_text().strip()
    assert "random floor" in result.table


def test_save_writes_an_artifact_the_jobs_read(base, tmp_path, run_cli):
    copy = tmp_path / "base"
    shutil.copytree(base, copy)
    rows = [json.loads(line) for line in (copy / "data" / "s.download" / "test.jsonl").read_text().splitlines()]
    exp = attexp.explain(copy / MODEL, None, [r["text"] for r in rows], "saliency", max_length=32)
    exp.save(copy / "explanations" / "api.saliency")
    dataset = exp.to_dataset()
    assert len(dataset) == len(rows) and dataset[0]["tokens"] == exp[0]["tokens"]
    assert all(
        set(f) == {"text", "tokens", "scores", "explainer", "target"} or hasattr(f, "scores") for f in exp.to_ferret()
    )
    config = tmp_path / "visualize.json"
    config.write_text(json.dumps({"job": "visualize", "name": "v", "explanations": ["api.saliency", "s.lig"]}))
    code, _, err = run_cli(config, "--base-dir", copy)
    assert code == 0, err
    page = (copy / "visualizations" / "v" / "instances" / "0.html").read_text()
    assert "api.saliency" in page


HOSTILE = ["<script>document.title='pwned'</script> a fine film", "<img src=x onerror=\"document.title='pwned'\"> dull"]


def test_show_renders_hostile_text_as_text_in_chromium(base, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no Chromium on this machine")
    exp = attexp.explain(base / MODEL, None, HOSTILE, "lig", n_steps=4, max_length=32)
    html = exp._repr_html_()
    assert "<script>" not in html and "<img" not in html and "&lt;" in html
    page = tmp_path / "show.html"
    exp.show(path=page)
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "pwned" not in dom.split("<title>")[1].split("</title>")[0]  # nothing ran
    assert "<script" not in dom.split("<body>")[1] and "<img" not in dom  # no element was made from the text
    assert "script" in dom and "onerror" in dom  # it is shown, as text
