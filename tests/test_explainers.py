"""Properties every explainer promises, table-driven over the EXPLAINERS registry, plus what LIG promises.

A new explainer enrols itself in the generic tests by registering (its package's `__init__` imports
its module). If its config names an upstream job, add a builder for that artifact to
UPSTREAM_BUILDERS; if its defaults are slow on a tiny model, add cheaper settings to FAST_SETTINGS.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import tiny
import torch
import transformers
from pydantic import ValidationError
from tiny import make_batch, word_tokenizer

from attexp.config.schema import Upstream
from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import reduce_hidden
from attexp.explain.gradient import LayerIntegratedGradientsExplainer, LIGConfig
from attexp.models.inputs import Batch, structural_positions
from attexp.registry import EXPLAINERS, load_all

transformers.logging.set_verbosity_error()

load_all()  # every package registers its explainers when it is imported

WORDS = "the a movie film plot actors was is were good great fun bad awful boring not very and but".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
TEXTS = ["the movie was good", "a very boring and awful plot , not fun", "great", "the actors were bad but fun"]


def tiny_tokenizer():
    return word_tokenizer(WORDS)


def tiny_bert(seed: int = 0, num_labels: int = 3):
    """A 2-layer BERT with random weights over the test vocabulary (see tests/tiny.py)."""
    return tiny.tiny_bert(len(VOCAB), seed=seed, num_labels=num_labels)


def build_empirical(model, tokenizer, folder: Path) -> Path:
    """A distill artifact holding an empirical explainer built from the classifier (untrained head)."""
    from attexp.distill.empirical.model import EmpiricalExplainerModel

    torch.manual_seed(1)
    explainer_model = EmpiricalExplainerModel.from_classifier(model, head="token", max_length=64)
    explainer_model.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    return folder


def build_attexplainer_agent(model, tokenizer, folder: Path) -> Path:
    """A train_agent artifact holding an untrained AttExplainer agent (random Q-network, greedy)."""
    from attexp.distill.attexplainer import Agent, AgentSettings, GameSettings

    Agent(AgentSettings(), GameSettings(), seed=1).save(folder / "agent")
    return folder


# explainer name -> builder(model, tokenizer, folder) of the upstream artifact its config names
UPSTREAM_BUILDERS: dict[str, Callable[..., Path]] = {
    "empirical": build_empirical,
    "attexplainer": build_attexplainer_agent,
}
# explainer name -> config values that keep the tests fast on a tiny model
FAST_SETTINGS: dict[str, dict] = {
    "lig": {"n_steps": 8},
    "attattr": {"steps": 4},
    "iba": {"layer": 0, "steps": 3, "samples": 3},
    "ig": {"n_steps": 8},
    "gradient_shap": {"n_samples": 8},
    "shapley_sampling": {"n_samples": 4},
    "kernel_shap": {"n_samples": 30},
    "lime": {"n_samples": 30},
    "attexplainer": {"max_steps": 5},
}


def make_explainer(name: str, model, tokenizer, tmp_path: Path, **settings):
    entry = EXPLAINERS.get(name)
    values, upstream = dict(FAST_SETTINGS.get(name, {})), {}
    for field_name, field in entry.config_type.model_fields.items():
        if any(isinstance(mark, Upstream) for mark in field.metadata):
            if name not in UPSTREAM_BUILDERS:
                pytest.skip(f"{name}: add an upstream artifact builder to UPSTREAM_BUILDERS in {__file__}")
            job = f"upstream-{field_name}"
            values[field_name] = job
            upstream[job] = UPSTREAM_BUILDERS[name](model, tokenizer, tmp_path / job)
    values.update(settings)
    return entry.cls(entry.config_type(**values), model, tokenizer, upstream)


def run(explainer, batch: Batch):
    """Call explain the way the engine does (autograd only for explainers that need it)."""
    context = torch.enable_grad() if explainer.needs_gradients else torch.inference_mode()
    with context:
        return explainer.explain(batch)


def hooks(model: torch.nn.Module) -> list[str]:
    found = []
    for name, module in model.named_modules():
        for kind in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            if getattr(module, kind, None):
                found.append(f"{name or '<model>'}.{kind}")
    return found


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def model():
    return tiny_bert()


NAMES = EXPLAINERS.names()


def test_registry_has_the_explainers_of_this_module():
    assert {"lig", "empirical"} <= set(NAMES)


# ---------------------------------------------------------------- generic properties, every explainer


@pytest.mark.parametrize("name", NAMES)
def test_one_score_per_token_and_none_on_padding(name, model, tokenizer, tmp_path):
    explainer = make_explainer(name, model, tokenizer, tmp_path)
    batch = make_batch(tokenizer, TEXTS)
    out = run(explainer, batch)
    assert out.attributions.shape == batch.input_ids.shape
    assert out.attributions.is_floating_point()
    assert torch.isfinite(out.attributions).all()
    padding = batch.attention_mask == 0
    assert padding.any()  # the test batch really has padding
    assert (out.attributions[padding] == 0).all()
    assert out.attributions[~padding].abs().sum() > 0
    assert len(out.forward_passes) == len(out.backward_passes) == len(batch)
    assert all(isinstance(n, int) and n >= 0 for n in out.forward_passes + out.backward_passes)
    assert sum(out.forward_passes) > 0 or not getattr(explainer, "runs_model", True)  # `random` runs no model


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(name, model, tokenizer, tmp_path):
    explainer = make_explainer(name, model, tokenizer, tmp_path)
    batch = make_batch(tokenizer, TEXTS)
    torch.manual_seed(7)
    first = run(explainer, batch)
    torch.manual_seed(7)
    second = run(explainer, batch)
    torch.testing.assert_close(first.attributions, second.attributions, rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_one_by_one(name, model, tokenizer, tmp_path):
    explainer = make_explainer(name, model, tokenizer, tmp_path)
    if not explainer.deterministic:
        pytest.skip(f"{name} is stochastic: its output depends on the RNG state, hence on the batch")
    batch = make_batch(tokenizer, TEXTS)
    together = run(explainer, batch)
    for i, text in enumerate(TEXTS):
        alone = run(explainer, make_batch(tokenizer, [text], [int(batch.targets[i])]))
        n = int(batch.attention_mask[i].sum())
        assert alone.attributions.shape[1] == n
        torch.testing.assert_close(together.attributions[i, :n], alone.attributions[0], atol=1e-4, rtol=1e-3)
        assert together.forward_passes[i] == alone.forward_passes[0]
        assert together.backward_passes[i] == alone.backward_passes[0]


@pytest.mark.parametrize("name", NAMES)
def test_no_hooks_left_and_model_untouched(name, model, tokenizer, tmp_path):
    before = {key: value.clone() for key, value in model.state_dict().items()}
    assert hooks(model) == []
    explainer = make_explainer(name, model, tokenizer, tmp_path)
    run(explainer, make_batch(tokenizer, TEXTS))
    run(explainer, make_batch(tokenizer, TEXTS[:1]))
    assert hooks(model) == []
    assert not model.training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------- Layer Integrated Gradients


def logit(model, ids, batch: Batch) -> torch.Tensor:
    """f(ids)_target [B], the quantity LIG attributes."""
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids).logits
    return logits.gather(1, batch.targets[:, None])[:, 0]


def pad_baseline(tokenizer, batch: Batch) -> torch.Tensor:
    """Written out independently of the explainer: real non-special tokens -> [PAD]."""
    ids = batch.input_ids.clone()
    special = torch.isin(ids, torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]))
    ids[~special] = tokenizer.pad_token_id
    return ids


@pytest.mark.parametrize("layer", ["word_embeddings", "embeddings"])
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_lig_completeness(layer, method, model, tokenizer):
    steps = 64 if method == "gausslegendre" else 300
    config = LIGConfig(n_steps=steps, method=method, layer=layer, return_delta=True)
    explainer = LayerIntegratedGradientsExplainer(config, model, tokenizer, {})
    batch = make_batch(tokenizer, TEXTS)
    out = run(explainer, batch)
    gap = logit(model, batch.input_ids, batch) - logit(model, pad_baseline(tokenizer, batch), batch)
    assert gap.abs().min() > 1e-2  # the check below has something to check
    total = out.attributions.sum(dim=1)
    torch.testing.assert_close(total, gap, atol=2e-3, rtol=2e-3)
    # our own delta agrees with Captum's convergence delta
    torch.testing.assert_close(out.extras["convergence_delta"], total - gap, atol=1e-4, rtol=0)


def test_lig_few_steps_leave_a_delta_that_more_steps_shrink(model, tokenizer):
    batch = make_batch(tokenizer, TEXTS)
    deltas = []
    for steps in (2, 50):
        config = LIGConfig(n_steps=steps, method="riemann_trapezoid", return_delta=True)
        deltas.append(run(LayerIntegratedGradientsExplainer(config, model, tokenizer, {}), batch).extras)
    assert deltas[1]["convergence_delta"].abs().sum() < deltas[0]["convergence_delta"].abs().sum()


def test_lig_target_matters_and_each_target_is_complete(model, tokenizer):
    explainer = LayerIntegratedGradientsExplainer(LIGConfig(n_steps=64), model, tokenizer, {})
    results = []
    for target in (0, 1):
        batch = make_batch(tokenizer, TEXTS, [target] * len(TEXTS))
        out = run(explainer, batch)
        gap = logit(model, batch.input_ids, batch) - logit(model, pad_baseline(tokenizer, batch), batch)
        torch.testing.assert_close(out.attributions.sum(dim=1), gap, atol=2e-3, rtol=2e-3)
        results.append(out.attributions)
    assert not torch.allclose(results[0], results[1], atol=1e-3)


def test_lig_explains_probabilities_when_asked(model, tokenizer):
    config = LIGConfig(n_steps=64, output="probabilities")
    batch = make_batch(tokenizer, TEXTS)
    out = run(LayerIntegratedGradientsExplainer(config, model, tokenizer, {}), batch)
    with torch.no_grad():
        kwargs = {"attention_mask": batch.attention_mask, "token_type_ids": batch.token_type_ids}
        p_x = model(input_ids=batch.input_ids, **kwargs).logits.softmax(-1)
        p_b = model(input_ids=pad_baseline(tokenizer, batch), **kwargs).logits.softmax(-1)
    gap = (p_x - p_b).gather(1, batch.targets[:, None])[:, 0]
    torch.testing.assert_close(out.attributions.sum(dim=1), gap, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("layer", ["word_embeddings", "embeddings"])
def test_lig_gives_specials_exactly_zero(layer, model, tokenizer):
    batch = make_batch(tokenizer, TEXTS)
    out = run(LayerIntegratedGradientsExplainer(LIGConfig(n_steps=4, layer=layer), model, tokenizer, {}), batch)
    keep = structural_positions(batch.input_ids, batch.attention_mask, tokenizer)
    assert (out.attributions[keep] == 0).all()
    assert (out.attributions[~keep] != 0).all()


@pytest.mark.parametrize("baseline", ["pad", "mask", "unk"])
def test_lig_baseline_ids(baseline, model, tokenizer):
    explainer = LayerIntegratedGradientsExplainer(LIGConfig(baseline=baseline), model, tokenizer, {})
    batch = make_batch(tokenizer, ["the [UNK] movie", "good"])
    ids = explainer.baseline_ids(batch)
    token = getattr(tokenizer, f"{baseline}_token_id")
    # row 0: [CLS] the [UNK] movie [SEP]; row 1: [CLS] good [SEP] [PAD] [PAD]
    assert ids[0].tolist() == [tokenizer.cls_token_id, token, token, token, tokenizer.sep_token_id]
    pad = tokenizer.pad_token_id
    assert ids[1].tolist() == [tokenizer.cls_token_id, token, tokenizer.sep_token_id, pad, pad]


def test_lig_reductions(model, tokenizer):
    batch = make_batch(tokenizer, TEXTS)
    out = {
        how: run(LayerIntegratedGradientsExplainer(LIGConfig(n_steps=4, reduce=how), model, tokenizer, {}), batch)
        for how in ("sum", "l2", "mean")
    }
    torch.testing.assert_close(out["mean"].attributions * model.config.hidden_size, out["sum"].attributions)
    assert (out["l2"].attributions >= 0).all()
    assert (out["l2"].attributions >= out["sum"].attributions.abs() / model.config.hidden_size**0.5 - 1e-6).all()
    hidden = torch.tensor([[[3.0, 4.0], [1.0, -1.0]]])
    torch.testing.assert_close(reduce_hidden(hidden, "l2"), torch.tensor([[5.0, 2.0**0.5]]))
    torch.testing.assert_close(reduce_hidden(hidden, "mean"), torch.tensor([[3.5, 0.0]]))


def test_lig_counts_the_passes_captum_runs(model, tokenizer):
    batch = make_batch(tokenizer, TEXTS)
    rows = []
    original = model.forward

    def counting(*args, **kwargs):
        rows.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    model.forward = counting
    for delta, chunk in ((False, None), (True, None), (False, 8)):
        rows.clear()
        config = LIGConfig(n_steps=5, return_delta=delta, internal_batch_size=chunk)
        out = run(LayerIntegratedGradientsExplainer(config, model, tokenizer, {}), batch)
        assert out.backward_passes == [5] * len(batch)
        assert out.forward_passes == [sum(rows) // len(batch)] * len(batch)
        assert out.forward_passes[0] == 5 + 2 + (2 if delta else 0)  # path steps + input and baseline layer reads
        if chunk:
            assert max(rows) <= chunk


def test_lig_internal_batch_size_changes_nothing_but_memory(model, tokenizer):
    batch = make_batch(tokenizer, TEXTS)
    whole = run(LayerIntegratedGradientsExplainer(LIGConfig(n_steps=6), model, tokenizer, {}), batch)
    config = LIGConfig(n_steps=6, internal_batch_size=len(TEXTS) + 1)
    chunked = run(LayerIntegratedGradientsExplainer(config, model, tokenizer, {}), batch)
    torch.testing.assert_close(whole.attributions, chunked.attributions, atol=1e-5, rtol=1e-4)


def test_lig_errors_say_what_to_fix(model, tokenizer):
    batch = make_batch(tokenizer, TEXTS)
    with pytest.raises(ConfigError, match="internal_batch_size=2 is smaller than the batch size 4"):
        run(LayerIntegratedGradientsExplainer(LIGConfig(internal_batch_size=2), model, tokenizer, {}), batch)
    explainer = LayerIntegratedGradientsExplainer(LIGConfig(), model, tokenizer, {})
    with torch.inference_mode(), pytest.raises(AttexpError, match="inference_mode"):
        explainer.explain(batch)
    with pytest.raises(ValidationError):
        LIGConfig(method="simpson")
    with pytest.raises(ValidationError):
        LIGConfig(n_step=3)
    with pytest.raises(ConfigError, match="n_steps must be at least 1"):
        LayerIntegratedGradientsExplainer(LIGConfig(n_steps=0), model, tokenizer, {})
    assert hooks(model) == []


# ---------------------------------------------------------------- empirical explainer


def test_empirical_is_one_forward_of_the_distilled_model(model, tokenizer, tmp_path):
    from attexp.distill.empirical.model import EmpiricalExplainerModel

    explainer = make_explainer("empirical", model, tokenizer, tmp_path)
    batch = make_batch(tokenizer, TEXTS)
    out = run(explainer, batch)
    assert out.forward_passes == [1] * len(batch) and out.backward_passes == [0] * len(batch)
    reference = EmpiricalExplainerModel.from_pretrained(tmp_path / "upstream-model" / "model")
    with torch.no_grad():
        expected = reference(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    torch.testing.assert_close(out.attributions, expected * batch.attention_mask)
    # the targets are not an input of a distilled explainer
    other = Batch(batch.input_ids, batch.attention_mask, batch.token_type_ids, (batch.targets + 1) % 3)
    torch.testing.assert_close(run(explainer, other).attributions, out.attributions)


def test_empirical_missing_upstream_names_the_job(model, tokenizer):
    entry = EXPLAINERS.get("empirical")
    with pytest.raises(ConfigError, match="rt.distill.emp"):
        entry.cls(entry.config_type(model="rt.distill.emp"), model, tokenizer, {})


# ---------------------------------------------------------------- inside-the-model explainers


def build_download(model, tokenizer, folder: Path) -> Path:
    """A download artifact (train split of TEXTS): the data IBA's dataset prior is estimated from."""
    from attexp.io.files import write_jsonl

    write_jsonl(folder / "train.jsonl", [{"idx": i, "text": text, "label": 0} for i, text in enumerate(TEXTS)])
    return folder


UPSTREAM_BUILDERS["iba"] = build_download
