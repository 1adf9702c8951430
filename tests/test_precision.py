"""Mixed precision (`precision: fp32 | bf16 | fp16`): training, prediction forwards and the faithfulness scorer run
under torch's autocast, gradient explainers stay float32. CPU bf16/fp16 autocast exercises the same code paths as
a GPU would (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_byom import DATA, QUIET, save_external_model

from attexp import registry
from attexp.evaluate.faithfulness import Eraser, EraserConfig
from attexp.evaluate.model_scorer import ModelScorer
from attexp.explain.batching import explain_rows
from attexp.models.precision import autocast, grad_scaler


def test_autocast_and_scaler_follow_the_precision():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("cpu", None):
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    assert grad_scaler("cpu", "fp16").is_enabled() and not grad_scaler("cpu", "bf16").is_enabled()


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    folder = tmp_path_factory.mktemp("precision") / "model"
    save_external_model(folder)
    from attexp.models.loading import load_classifier

    return load_classifier(folder)


ROWS = [
    {"idx": 0, "text": "a warm, funny and moving film", "label": 1},
    {"idx": 1, "text": "a dull and lifeless mess", "label": 0},
    {"idx": 2, "text": "the plot is thin but the actors are wonderful", "label": 1},
]


def run(explainer_name, model, tokenizer, precision, **settings):
    entry = registry.EXPLAINERS.get(explainer_name)
    explainer = entry.cls(entry.config_type.model_validate({"type": explainer_name, **settings}), model, tokenizer, {})
    batches = explain_rows(
        explainer,
        model,
        tokenizer,
        ROWS,
        batch_size=2,
        max_length=32,
        target="label",
        device="cpu",
        progress=False,
        precision=precision,
    )
    return {r["idx"]: r for batch in batches for r in batch}


def test_bf16_predictions_are_close_and_gradient_explainers_stay_float32(external):
    registry.load_all()
    model, tokenizer = external
    full = run("lig", model, tokenizer, None, n_steps=4)
    mixed = run("lig", model, tokenizer, "bf16", n_steps=4)
    for idx in full:
        assert mixed[idx]["predictions"] == pytest.approx(full[idx]["predictions"], abs=0.03)
        assert mixed[idx]["predictions"] != full[idx]["predictions"]  # the forward really ran in bf16
        assert mixed[idx]["attributions"] == full[idx]["attributions"]  # LIG itself did not


def test_bf16_scorer_is_close_to_float32(external):
    model, tokenizer = external
    records = list(run("occlusion", model, tokenizer, None).values())
    values = {}
    for precision in (None, "bf16"):
        scorer = ModelScorer(model, tokenizer, "cpu", batch_size=8, precision=precision)
        values[precision] = Eraser(EraserConfig()).compute(records, scorer=scorer).summary["comprehensiveness"]
    assert values["bf16"] == pytest.approx(values[None], abs=0.03) and values["bf16"] != values[None]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_in_mixed_precision_runs_and_learns(precision, tmp_path, run_cli):
    save_external_model(tmp_path / "model")
    train = {
        "job": "train",
        "name": "s.train",
        "data": "s.download",
        "model": {"type": "local", "path": str(tmp_path / "model")},
        "epochs": 2,
        "lr": 1e-3,
        "batch_size": 4,
        "max_length": 32,
        "precision": precision,
        **QUIET,
    }
    config = {
        "jobs": [
            {"job": "download", "name": "s.download", "source": DATA},
            train,
            {
                "job": "explain",
                "name": "s.e",
                "model": "s.train",
                "data": "s.download",
                "explainer": {"type": "lig"},
                "max_length": 32,
                "precision": precision,
                **QUIET,
            },
            {
                "job": "evaluate",
                "name": "s.ev",
                "explanations": ["s.e"],
                "metrics": [{"type": "eraser"}],
                "precision": precision,
            },
        ]
    }
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", tmp_path / "base")
    assert code == 0, err
    history = [json.loads(line) for line in (tmp_path / "base/models/s.train/metrics.jsonl").read_text().splitlines()]
    losses = [h["train_loss"] for h in history if "train_loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    metrics = json.loads((tmp_path / "base/logs/s.ev/metrics.json").read_text())
    assert torch.isfinite(torch.tensor(metrics["results"]["s.e"]["eraser.comprehensiveness"]))


def test_precision_left_unset_keeps_the_config_hash():
    from attexp.config.hashing import config_hash

    job = {"job": "train", "name": "t", "data": "d", "model": {"type": "tiny"}}
    assert config_hash({**job, "precision": None}) == config_hash(job)
    assert config_hash({**job, "precision": "bf16"}) != config_hash(job)


@pytest.mark.parametrize("name", ["lig", "saliency", "input_x_gradient"])
def test_a_gradient_explainer_asked_for_mixed_precision_runs_in_it(external, name):
    """`mixed_precision: true` on a Captum explainer: the attributions move (bf16 ran) but stay close."""
    registry.load_all()
    model, tokenizer = external
    full = run(name, model, tokenizer, "bf16")
    mixed = run(name, model, tokenizer, "bf16", mixed_precision=True)
    for idx in full:
        a, b = torch.tensor(full[idx]["attributions"]), torch.tensor(mixed[idx]["attributions"])
        assert not torch.equal(a, b)
        assert (a - b).abs().mean() < 0.1 * a.abs().mean() + 1e-6


def test_explainer_mixed_precision_left_false_keeps_the_config_hash():
    from attexp.config.hashing import config_hash

    job = {"job": "explain", "name": "e", "explainer": {"type": "lig", "n_steps": 20}}
    off = {**job, "explainer": {**job["explainer"], "mixed_precision": False}}
    on = {**job, "explainer": {**job["explainer"], "mixed_precision": True}}
    assert config_hash(off) == config_hash(job) != config_hash(on)


# ------------------------------------------------------------------------- weights dtype (bf16 checkpoints)

# benchmarks/dtype_attributions.py measures every explainer with bf16 weights against float32 weights; the tests
# hold the documented floor: the median per-instance Spearman >= 0.9 on a tiny random Llama-style decoder.
DTYPE_SPEARMAN_FLOOR = 0.9
DTYPE_CASES = ["lig", "gradient_shap", "occlusion", "raw_attention", "alti", "attattr", "iba"]


def _decoder():
    from tiny import tiny_classifier, word_tokenizer

    words = "a warm funny and moving film dull lifeless mess the plot is thin but actors are wonderful".split()
    tokenizer = word_tokenizer(words, segments=False)
    return tiny_classifier("llama", len(tokenizer.vocab), num_labels=2), tokenizer


@pytest.mark.parametrize("name", DTYPE_CASES)
def test_bf16_weights_keep_every_explainers_ranking(name):
    """The same decoder in float32 and in bf16 weights: the attributions rank the tokens alike (Spearman), and the
    float32 accumulation (embeddings paths, ALTI's decomposition, AttAttr's sums) keeps them finite and close."""
    from scipy import stats

    import attexp

    model, tokenizer = _decoder()
    texts = [row["text"] for row in ROWS] * 2
    settings = {"lig": {"n_steps": 8}, "gradient_shap": {"n_samples": 6}, "attattr": {"steps": 6}, "iba": {"steps": 4}}
    runs = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.to(dtype)
        out = attexp.explain(model, tokenizer, texts, name, device="cpu", max_length=32, **settings.get(name, {}))
        runs[dtype] = [r["attributions"] for r in out.records]
    rhos = [stats.spearmanr(a, b).statistic for a, b in zip(runs[torch.float32], runs[torch.bfloat16], strict=True)]
    assert all(all(map(np.isfinite, r)) for r in runs[torch.bfloat16])
    assert runs[torch.bfloat16] != runs[torch.float32], "the bf16 weights were used"
    assert float(np.median(rhos)) >= DTYPE_SPEARMAN_FLOOR, rhos


def test_every_model_source_takes_a_dtype_that_leaves_old_hashes_alone(tmp_path, run_cli):
    from attexp.config.hashing import hash_config
    from attexp.explain.job import ExplainConfig
    from attexp.registry import MODELS

    registry.load_all()
    for name in ("packaged", "local", "hub", "tiny"):
        assert MODELS.get(name).config_type.model_fields["dtype"].default == "float32", name
    job = {"job": "explain", "name": "e", "data": "d", "explainer": {"type": "lig"}}
    local = {"type": "local", "path": "m"}
    without = hash_config(ExplainConfig, {**job, "model": local}, 1)
    assert hash_config(ExplainConfig, {**job, "model": {**local, "dtype": "float32"}}, 1) == without
    assert hash_config(ExplainConfig, {**job, "model": {**local, "dtype": "bfloat16"}}, 1) != without
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps({"jobs": [
        {"job": "download", "name": "d", "source": DATA},
        {"job": "train", "name": "t", "data": "d", "model": {"type": "tiny", "dtype": "bfloat16"}},
    ]}))  # fmt: skip
    code, _, err = run_cli(bad, "--base-dir", tmp_path / "base")
    assert code == 2 and "model.dtype='bfloat16'" in err and "precision: 'bf16'" in err
    assert not (tmp_path / "base").exists()


def test_an_explain_job_loads_a_local_model_in_the_dtype_its_source_names(tmp_path, run_cli):
    """`dtype: bfloat16` on a model source: the job's classifier runs in bf16 (its predictions differ from the
    float32 run's at bf16's precision), the records stay finite, and the manifest records the source with it."""
    folder = tmp_path / "model"
    save_external_model(folder)
    base = tmp_path / "base"
    results = {}
    for dtype in ("float32", "bfloat16"):
        config = tmp_path / f"{dtype}.json"
        config.write_text(json.dumps({"jobs": [
            {"job": "download", "name": "d", "source": DATA},
            {"job": "explain", "name": f"e.{dtype}", "data": "d", "max_length": 32, "limit": 6, **QUIET,
             "model": {"type": "local", "path": str(folder), "dtype": dtype}, "explainer": {"type": "occlusion"}},
        ]}))  # fmt: skip
        code, _, err = run_cli(config, "--base-dir", base)
        assert code == 0, err
        out = base / "explanations" / f"e.{dtype}"
        results[dtype] = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["models"]["model"]["source"]["dtype"] == dtype
    for a, b in zip(results["float32"], results["bfloat16"], strict=True):
        assert a["predictions"] != b["predictions"]
        assert b["predictions"] == pytest.approx(a["predictions"], abs=0.03)
        assert all(np.isfinite(b["attributions"]))


@pytest.mark.parametrize("name", ["lig", "saliency", "attattr", "iba"])
def test_gradient_explainers_run_on_frozen_weights_and_leave_them_as_they_were(name):
    """While a gradient explainer runs with autograd on, no weight requires a gradient (`frozen_weights`: autograd
    keeps nothing for the weights' gradients); afterwards `requires_grad` is as it was, mixed state included."""
    import attexp

    model, tokenizer = _decoder()
    model.requires_grad_(True)
    model.score.requires_grad_(False)
    seen = []
    hook = model.model.layers[-1].register_forward_pre_hook(
        lambda module, args: (
            seen.append(any(p.requires_grad for p in model.parameters())) if torch.is_grad_enabled() else None
        )
    )
    settings = {"lig": {"n_steps": 4}, "attattr": {"steps": 3}, "iba": {"steps": 2}}.get(name, {})
    try:
        attexp.explain(model, tokenizer, [r["text"] for r in ROWS], name, device="cpu", max_length=32, **settings)
    finally:
        hook.remove()
    assert seen and not any(seen), "a weight required a gradient while the explainer ran"
    assert [p.requires_grad for p in model.score.parameters()] == [False]
    assert all(p.requires_grad for n, p in model.named_parameters() if not n.startswith("score"))


@pytest.mark.parametrize("name", ["lig", "occlusion", "attattr", "iba"])
def test_one_job_budget_sizes_every_explainers_passes(name):
    """`max_tokens_per_pass` (the explain job's, or attexp.explain's): no pass through the last layer holds more
    padded positions than the budget, and the deterministic explainers give what they give unbudgeted."""
    import attexp

    model, tokenizer = _decoder()
    texts = [r["text"] for r in ROWS] * 2
    settings = {"lig": {"n_steps": 6}, "attattr": {"steps": 4}, "iba": {"steps": 2, "samples": 2}}.get(name, {})
    sizes = []
    hook = model.model.layers[-1].register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append((args[0] if args else kwargs["hidden_states"]).shape[:2].numel()),
        with_kwargs=True,
    )
    runs = {}
    try:
        for budget in (None, 24):
            sizes.clear()
            out = attexp.explain(  # batches of 2 texts of at most 11 tokens: the prediction pass fits the budget
                model,
                tokenizer,
                texts,
                name,
                device="cpu",
                max_length=32,
                batch_size=2,
                max_tokens_per_pass=budget,
                **settings,
            )
            runs[budget] = ([r["attributions"] for r in out.records], max(sizes))
    finally:
        hook.remove()
    assert runs[24][1] <= 24 < runs[None][1], (runs[24][1], runs[None][1])
    if name != "iba":  # IBA's noise is drawn per pass
        for a, b in zip(runs[None][0], runs[24][0], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
