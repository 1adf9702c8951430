"""The Captum explainer family: what each method promises, checked against quantities computed independently.

The generic properties (one score per real token, none on padding, same seed same output, batched equals one
by one, no hooks left) are covered for every explainer by tests/test_explainers.py. Here: completeness and
exact values where a method has them (IG, DeepLift where the Rescale rule applies, Shapley efficiency, feature
ablation = leave-one-out, every perturbation method recovering an additive model), specials never perturbed,
honest pass counts, the memory budget, seeding, and the errors.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from pydantic import ValidationError
from test_explainers import TEXTS, hooks, make_batch, run, tiny_bert, tiny_tokenizer

from attexp.errors import AttexpError, ConfigError
from attexp.explain.batching import explain_rows, rows_per_forward
from attexp.explain.gradient import LayerIntegratedGradientsExplainer, LIGConfig
from attexp.models.inputs import Batch, structural_positions
from attexp.registry import EXPLAINERS, load_all

load_all()

GRADIENT = ["ig", "saliency", "input_x_gradient", "deeplift", "gradient_shap"]
PERTURBATION = ["occlusion", "feature_ablation", "shapley_sampling", "kernel_shap", "lime"]
CAPTUM = ["lig", *GRADIENT, *PERTURBATION]
FAST = {
    "ig": {"n_steps": 8},
    "lig": {"n_steps": 8},
    "gradient_shap": {"n_samples": 6},
    "shapley_sampling": {"n_samples": 3},
}
FAST |= {"kernel_shap": {"n_samples": 20}, "lime": {"n_samples": 20}}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_bert()


@pytest.fixture(scope="module")
def batch(tokenizer):
    return make_batch(tokenizer, TEXTS)


def build(name: str, model, tokenizer, **settings):
    entry = EXPLAINERS.get(name)
    return entry.cls(entry.config_type(**{**FAST.get(name, {}), **settings}), model, tokenizer, {})


def real_tokens(batch: Batch, tokenizer) -> torch.Tensor:
    return ~structural_positions(batch.input_ids, batch.attention_mask, tokenizer)


def replaced(batch: Batch, tokenizer, where: torch.Tensor, token: str = "pad") -> torch.Tensor:
    """Ids [B, T] with the real tokens at `where` replaced by `token`, written out independently."""
    ids = batch.input_ids.clone()
    ids[where & real_tokens(batch, tokenizer)] = getattr(tokenizer, f"{token}_token_id")
    return ids


def target_score(model, batch: Batch, ids=None, embeds=None, probabilities=False) -> torch.Tensor:
    """f(.)_target [B] for ids or word embeddings, with the batch's mask and segments."""
    with torch.no_grad():
        inputs = {"input_ids": ids} if embeds is None else {"inputs_embeds": embeds}
        logits = model(**inputs, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids).logits
    scores = logits.softmax(-1) if probabilities else logits
    return scores.gather(1, batch.targets[:, None])[:, 0]


class Bag(torch.nn.Module):
    """An HF-shaped classifier small enough to reason about: logits = W2 act(W1 sum_t mask_t e_t) (+ bias).

    With `hidden=None` it is additive in the tokens (logits = W sum_t e_t), so every token's effect is separate.
    """

    def __init__(self, vocab: int, hidden: int | None = 8, labels: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.embed = torch.nn.Embedding(vocab, 6)
        layers = [torch.nn.Linear(6, labels)] if hidden is None else [
            torch.nn.Linear(6, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
            torch.nn.Linear(hidden, labels),
        ]  # fmt: skip
        self.head = torch.nn.Sequential(*layers)

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, token_type_ids=None):
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # [B, T, E]
        return SimpleNamespace(logits=self.head((x * attention_mask.unsqueeze(-1)).sum(1)))


# ---------------------------------------------------------------- the family


def test_all_ten_are_registered_with_documented_configs():
    for name in CAPTUM:
        entry = EXPLAINERS.get(name)
        assert entry.summary, f"{name}: the class docstring's first line is its summary"
        assert re.search(r", \d{4}\)", (entry.cls.__doc__ or "") + (entry.config_type.__doc__ or "")), f"{name}: cite"
        config = entry.config_type()
        assert config.type == name and config.output == "logits"
    assert EXPLAINERS.get("shapley_sampling").config_type().n_samples == 25  # Thermostat's setting
    assert EXPLAINERS.get("feature_ablation").config_type().max_tokens_per_forward == 16384
    assert EXPLAINERS.get("ig").config_type().max_tokens_per_forward is None


# ---------------------------------------------------------------- gradient methods


def test_ig_is_lig_on_word_embeddings_without_the_two_layer_reads(model, tokenizer, batch):
    ig = run(build("ig", model, tokenizer, n_steps=16), batch)
    lig = run(LayerIntegratedGradientsExplainer(LIGConfig(n_steps=16), model, tokenizer, {}), batch)
    torch.testing.assert_close(ig.attributions, lig.attributions, atol=1e-5, rtol=1e-4)
    assert ig.forward_passes == [16] * len(batch) and lig.forward_passes == [18] * len(batch)
    assert ig.backward_passes == lig.backward_passes == [16] * len(batch)


@pytest.mark.parametrize("baseline", ["pad", "mask", "zero"])
def test_ig_completeness_for_each_baseline(baseline, model, tokenizer, batch):
    out = run(build("ig", model, tokenizer, n_steps=64, baseline=baseline, return_delta=True), batch)
    embed = model.get_input_embeddings()
    with torch.no_grad():
        x = embed(batch.input_ids)
        if baseline == "zero":
            b = x * (~real_tokens(batch, tokenizer)).unsqueeze(-1)
        else:
            b = embed(replaced(batch, tokenizer, torch.ones_like(batch.input_ids, dtype=torch.bool), baseline))
    gap = target_score(model, batch, embeds=x) - target_score(model, batch, embeds=b)
    assert gap.abs().min() > 1e-2
    torch.testing.assert_close(out.attributions.sum(1), gap, atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(out.extras["convergence_delta"], out.attributions.sum(1) - gap, atol=1e-4, rtol=0)
    keep = structural_positions(batch.input_ids, batch.attention_mask, tokenizer)
    assert (out.attributions[keep] == 0).all()
    assert out.forward_passes == [66] * len(batch)  # 64 steps + f(x) and f(baseline) for the delta


def embedding_gradient(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Word embeddings [B, T, H] and d f_target / d embeddings, by plain autograd."""
    x = model.get_input_embeddings()(batch.input_ids).detach().requires_grad_()
    logits = model(inputs_embeds=x, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids).logits
    (grad,) = torch.autograd.grad(logits.gather(1, batch.targets[:, None]).sum(), x)
    return x.detach(), grad


@pytest.mark.parametrize("reduce", ["sum", "l2", "mean"])
def test_saliency_and_input_x_gradient_are_the_plain_gradient(reduce, model, tokenizer, batch):
    x, grad = embedding_gradient(model, batch)
    pad = (batch.attention_mask == 0).unsqueeze(-1)
    expected = {
        "saliency": grad.abs(),
        "input_x_gradient": x * grad,
    }
    for name, hidden in expected.items():
        out = run(build(name, model, tokenizer, reduce=reduce), batch)
        want = {"sum": hidden.sum(-1), "l2": hidden.norm(dim=-1), "mean": hidden.mean(-1)}[reduce]
        torch.testing.assert_close(out.attributions, want.masked_fill(pad[..., 0], 0), atol=1e-5, rtol=1e-4)
        assert out.forward_passes == out.backward_passes == [1] * len(batch)
    signed = run(build("saliency", model, tokenizer, abs=False), batch)
    torch.testing.assert_close(signed.attributions, grad.sum(-1).masked_fill(pad[..., 0], 0), atol=1e-5, rtol=1e-4)


def test_deeplift_sums_to_delta_where_the_rescale_rule_applies(tokenizer, batch):
    # every non-linearity is an nn.ReLU / nn.Tanh module between linear maps: summation-to-delta is exact
    bag = Bag(len(tokenizer.get_vocab())).eval()
    out = run(build("deeplift", bag, tokenizer, return_delta=True), batch)
    ids = replaced(batch, tokenizer, torch.ones_like(batch.input_ids, dtype=torch.bool))
    gap = target_score(bag, batch, ids=batch.input_ids) - target_score(bag, batch, ids=ids)
    assert gap.abs().min() > 1e-3
    torch.testing.assert_close(out.attributions.sum(1), gap, atol=1e-5, rtol=1e-4)
    assert out.extras["convergence_delta"].abs().max() < 1e-5
    assert out.forward_passes == [4] * len(batch) and out.backward_passes == [2] * len(batch)


def test_deeplift_on_bert_reports_its_gap_and_leaves_specials_at_zero(model, tokenizer, batch):
    out = run(build("deeplift", model, tokenizer, return_delta=True), batch)
    ids = replaced(batch, tokenizer, torch.ones_like(batch.input_ids, dtype=torch.bool))
    gap = target_score(model, batch, ids=batch.input_ids) - target_score(model, batch, ids=ids)
    torch.testing.assert_close(out.extras["convergence_delta"], out.attributions.sum(1) - gap, atol=1e-4, rtol=1e-4)
    # GELU, softmax and LayerNorm pass plain gradients: the documented limitation is real
    assert out.extras["convergence_delta"].abs().max() > 1e-3
    keep = structural_positions(batch.input_ids, batch.attention_mask, tokenizer)
    assert (out.attributions[keep] == 0).all()
    assert hooks(model) == []


def test_gradient_shap_gives_each_instance_its_own_baseline(model, tokenizer, batch):
    """Noise-free Gradient SHAP is Monte Carlo IG: many samples land on IG, with each instance's own baseline."""
    ig = run(build("ig", model, tokenizer, n_steps=32), batch)
    shap = run(build("gradient_shap", model, tokenizer, n_samples=200), batch)
    keep = structural_positions(batch.input_ids, batch.attention_mask, tokenizer)
    assert (shap.attributions[keep] == 0).all()
    error = (shap.attributions - ig.attributions).abs().max()
    assert error < 0.1 * ig.attributions.abs().max(), error  # about 0.03 at 200 samples
    assert shap.forward_passes == shap.backward_passes == [200] * len(batch)
    noisy = run(build("gradient_shap", model, tokenizer, stdevs=0.1), batch)
    assert not torch.equal(noisy.attributions, run(build("gradient_shap", model, tokenizer), batch).attributions)


# ---------------------------------------------------------------- perturbation methods


def test_feature_ablation_is_leave_one_out(model, tokenizer, batch):
    out = run(build("feature_ablation", model, tokenizer, baseline="mask"), batch)
    real = real_tokens(batch, tokenizer)
    full = target_score(model, batch, ids=batch.input_ids)
    expected = torch.zeros_like(out.attributions)
    for t in range(batch.input_ids.shape[1]):
        only_t = torch.zeros_like(real)
        only_t[:, t] = True
        drop = full - target_score(model, batch, ids=replaced(batch, tokenizer, only_t, "mask"))
        expected[:, t] = torch.where(real[:, t], drop, 0.0)
    torch.testing.assert_close(out.attributions, expected, atol=1e-5, rtol=1e-4)
    assert out.forward_passes == [1 + int(n) for n in real.sum(1)]  # the input, then one per real token
    assert out.backward_passes == [0] * len(batch)


def test_occlusion_window_one_is_feature_ablation_and_windows_average(model, tokenizer, batch):
    one = run(build("occlusion", model, tokenizer, window=1), batch)
    torch.testing.assert_close(one.attributions, run(build("feature_ablation", model, tokenizer), batch).attributions)
    # "great": [CLS] great [SEP]; window 2 -> windows {CLS, great}, {great, SEP}: both replace only "great"
    single = make_batch(tokenizer, ["great"], [1])
    out = run(build("occlusion", model, tokenizer, window=2), single)
    drop = target_score(model, single, ids=single.input_ids) - target_score(
        model, single, ids=replaced(single, tokenizer, torch.ones_like(single.input_ids, dtype=torch.bool))
    )
    torch.testing.assert_close(out.attributions, torch.tensor([[0.0, float(drop), 0.0]]), atol=1e-5, rtol=1e-4)
    assert out.forward_passes == [2]  # the input and one distinct perturbed row (both windows give the same)


def test_shapley_sampling_is_efficient_per_instance(model, tokenizer, batch):
    out = run(build("shapley_sampling", model, tokenizer, n_samples=5), batch)
    ids = replaced(batch, tokenizer, torch.ones_like(batch.input_ids, dtype=torch.bool))
    gap = target_score(model, batch, ids=batch.input_ids) - target_score(model, batch, ids=ids)
    torch.testing.assert_close(out.attributions.sum(1), gap, atol=1e-5, rtol=1e-4)
    n = real_tokens(batch, tokenizer).sum(1).tolist()
    assert all(passes <= 2 + 5 * (k - 1) for passes, k in zip(out.forward_passes, n, strict=True))
    assert out.forward_passes[2] == 2  # "great": the baseline and the input, whatever the order


@pytest.mark.parametrize("name", ["occlusion", "shapley_sampling", "kernel_shap", "lime"])
def test_every_perturbation_method_recovers_an_additive_model(name, tokenizer, batch):
    """On logits = W sum_t e_t each token's effect is separate: all methods must return leave-one-out."""
    bag = Bag(len(tokenizer.get_vocab()), hidden=None).eval()
    settings = {"window": 1} if name == "occlusion" else {"n_samples": 60}
    if name == "lime":
        settings["alpha"] = 0.0  # ordinary least squares fits an additive model exactly
    out = run(build(name, bag, tokenizer, **settings), batch)
    expected = run(build("feature_ablation", bag, tokenizer), batch)
    torch.testing.assert_close(out.attributions, expected.attributions, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", PERTURBATION)
def test_perturbations_touch_only_real_tokens_and_passes_are_rows_run(name, model, tokenizer, batch):
    seen, original = [], model.forward

    def spy(*args, **kwargs):
        seen.append((kwargs["input_ids"].clone(), kwargs["attention_mask"].clone()))
        return original(*args, **kwargs)

    model.forward = spy
    try:
        out = run(build(name, model, tokenizer), batch)
    finally:
        del model.forward
    assert sum(out.forward_passes) == sum(ids.shape[0] for ids, _ in seen)
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id}
    for ids, mask in seen:
        rows = [row[: int(m.sum())].tolist() for row, m in zip(ids, mask, strict=True)]
        assert all(row[0] == tokenizer.cls_token_id and row[-1] == tokenizer.sep_token_id for row in rows)
        assert all(sum(t in specials for t in row) == 2 for row in rows)  # specials never replaced nor moved
        assert (ids[mask == 0] == tokenizer.pad_token_id).all()
        assert len({tuple(row) for row in rows}) == len(rows) or name in {"feature_ablation", "shapley_sampling"}


def test_probabilities_are_explained_when_asked(model, tokenizer, batch):
    out = run(build("feature_ablation", model, tokenizer, output="probabilities"), batch)
    real = real_tokens(batch, tokenizer)
    first = torch.zeros_like(real)
    first[:, 1] = True  # the first real token of every text
    drop = target_score(model, batch, ids=batch.input_ids, probabilities=True) - target_score(
        model, batch, ids=replaced(batch, tokenizer, first), probabilities=True
    )
    torch.testing.assert_close(out.attributions[:, 1], drop, atol=1e-6, rtol=1e-4)
    assert out.attributions.abs().max() <= 1


# ---------------------------------------------------------------- budget, seeding, engine


@pytest.mark.parametrize("name", CAPTUM)
def test_max_tokens_per_forward_bounds_every_model_call(name, model, tokenizer, batch):
    budget = 3 * batch.input_ids.shape[1]  # 3 rows of the padded width
    widths, original = [], model.forward

    def spy(*args, **kwargs):
        first = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
        widths.append(first.shape[0] * first.shape[1])
        return original(*args, **kwargs)

    model.forward = spy
    try:
        limited = run(build(name, model, tokenizer, max_tokens_per_forward=budget), batch)
    finally:
        del model.forward
    smallest_unit = {"deeplift": 2, "gradient_shap": FAST["gradient_shap"]["n_samples"]}.get(name, 1)
    assert max(widths) <= max(budget, smallest_unit * batch.input_ids.shape[1])
    if EXPLAINERS.get(name).cls.deterministic:
        unlimited = run(build(name, model, tokenizer, max_tokens_per_forward=None), batch)
        torch.testing.assert_close(limited.attributions, unlimited.attributions, atol=1e-5, rtol=1e-4)
        assert limited.forward_passes == unlimited.forward_passes


def test_rows_per_forward():
    assert rows_per_forward(None, 40) is None
    assert rows_per_forward(1000, 40) == 25
    assert rows_per_forward(10, 40) == 1


@pytest.mark.parametrize("name", ["gradient_shap", "shapley_sampling", "kernel_shap", "lime"])
def test_stochastic_methods_draw_from_their_own_seed(name, model, tokenizer, batch):
    torch.manual_seed(1)
    first = run(build(name, model, tokenizer), batch)
    after = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after)  # the job's stream is left where it was ...
    torch.manual_seed(2)
    again = run(build(name, model, tokenizer), batch)  # ... and a different one does not matter
    torch.testing.assert_close(first.attributions, again.attributions, rtol=0, atol=0)
    other = run(build(name, model, tokenizer, seed=1), batch)
    assert not torch.equal(other.attributions, first.attributions)


@pytest.mark.parametrize("name", ["shapley_sampling", "deeplift", "occlusion"])
def test_explain_rows_runs_the_family_and_a_resumed_run_writes_the_same(name, model, tokenizer):
    rows = [{"idx": i, "text": text, "label": i % 3} for i, text in enumerate(TEXTS * 2)]
    explainer = build(name, model, tokenizer)
    kwargs = dict(batch_size=3, max_length=32, target="label", device="cpu", progress=False)
    batches = list(explain_rows(explainer, model, tokenizer, rows, **kwargs))
    full = {r["idx"]: r for records in batches for r in records}
    assert sorted(full) == list(range(len(rows)))
    done = {r["idx"] for r in batches[0]}
    resumed = {
        r["idx"]: r
        for records in explain_rows(explainer, model, tokenizer, rows, skip_idx=done, **kwargs)
        for r in records
    }
    for idx, record in resumed.items():
        assert record["attributions"] == full[idx]["attributions"]
        assert record["forward_passes"] == full[idx]["forward_passes"]
    for record in full.values():
        assert record["attributions"][0] == record["attributions"][-1] == 0.0  # [CLS], [SEP]


def test_errors_say_what_to_fix(model, tokenizer, batch):
    no_mask = tiny_tokenizer()
    no_mask.mask_token = None
    with pytest.raises(ConfigError, match="baseline='mask' needs the tokenizer's mask_token_id"):
        build("feature_ablation", model, no_mask, baseline="mask")
    with pytest.raises(ConfigError, match="internal_batch_size=2 is smaller than the batch size 4"):
        run(build("ig", model, tokenizer, internal_batch_size=2), batch)
    for name in GRADIENT:
        with torch.inference_mode(), pytest.raises(AttexpError, match="inference_mode"):
            build(name, model, tokenizer).explain(batch)
    with pytest.raises(ValidationError):
        EXPLAINERS.get("occlusion").config_type(window=0)
    with pytest.raises(ValidationError):
        EXPLAINERS.get("feature_ablation").config_type(baseline="zero")  # no zero token to put in the ids
    with pytest.raises(ValidationError):
        EXPLAINERS.get("lime").config_type(n_sample=10)
