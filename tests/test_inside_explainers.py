"""What the inside-the-model explainers promise: raw attention, rollout, ALTI, Self-Attention Attribution, IBA,
and the encoder access they share, on tiny random BERT, RoBERTa, DistilBERT and ELECTRA classifiers.

The generic properties (one score per token, none on padding, determinism, batched = one by one, no hooks
left) are checked for every registered explainer in tests/test_explainers.py; here each method's own
guarantees are checked against independent computations: the model's own forward pass, LayerNorm outputs
captured during it, and a direct transcription of the ALTI paper's formulas.
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from test_explainers import TEXTS, build_download, hooks, make_batch, tiny_bert, tiny_tokenizer
from transformers import (
    AlbertConfig,
    AlbertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    ElectraConfig,
    ElectraForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

import attexp.explain.attention as attention_module
from attexp.errors import AttexpError, ConfigError
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution
from attexp.explain.attention import ALTI, ALTIConfig, RawAttention, RawAttentionConfig, Rollout, RolloutConfig
from attexp.explain.attention import decompose as alti_decompose
from attexp.explain.bottleneck import IBAConfig, InformationBottleneck
from attexp.models.encoder import Encoder
from attexp.models.inputs import Batch

transformers.logging.set_verbosity_error()

FAMILIES = ["bert", "roberta", "distilbert", "electra"]


def tiny_model(family: str, attention: str = "sdpa", seed: int = 0) -> torch.nn.Module:
    """A 2-layer classifier of `family` with random weights, sized for the tiny tokenizer's vocabulary."""
    if family == "bert":
        torch.manual_seed(seed)
        model = tiny_bert(seed)
        model.config._attn_implementation = attention
        return model
    torch.manual_seed(seed)
    common = dict(vocab_size=30, max_position_embeddings=64, num_labels=3, initializer_range=0.2, pad_token_id=0)
    common["attn_implementation"] = attention
    if family == "roberta":
        config = RobertaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **common
        )
        return RobertaForSequenceClassification(config).eval()
    if family == "distilbert":
        config = DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, **common)
        return DistilBertForSequenceClassification(config).eval()
    config = ElectraConfig(  # embedding_size != hidden_size: exercises embeddings_project
        embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, **common
    )
    return ElectraForSequenceClassification(config).eval()


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def batch(tokenizer) -> Batch:
    return make_batch(tokenizer, TEXTS)


def as_inputs(model, batch: Batch) -> dict:
    """The batch as keyword arguments this model's forward accepts (DistilBERT takes no token types)."""
    inputs = batch.model_inputs()
    if "distilbert" in type(model).__name__.lower():
        inputs.pop("token_type_ids", None)
    return inputs


def target_probability(model, batch: Batch) -> torch.Tensor:
    with torch.no_grad():
        probabilities = model(**as_inputs(model, batch)).logits.softmax(-1)
    return probabilities.gather(1, batch.targets[:, None])[:, 0]


# ---------------------------------------------------------------- encoder access


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_reproduces_the_model(family, attention, batch):
    model = tiny_model(family, attention)
    encoder = Encoder(model)
    with torch.no_grad():
        expected = model(**as_inputs(model, batch)).logits
        got = encoder.logits(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        hidden = encoder.embed(batch.input_ids, batch.token_type_ids)
        context = encoder.context(batch.attention_mask, hidden.dtype, batch.input_ids)
        with encoder.attention():
            first = encoder.run(hidden, context, 0, 1)
            full = encoder.run(first, context, 1)
        cls = encoder.read_last(first, context)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cls, full[:, 0], atol=1e-5, rtol=1e-4)  # [CLS]-only last layer
    assert model.config._attn_implementation == attention  # switched for the block only
    assert hooks(model) == []


def test_encoder_trace_records_the_models_attention(batch):
    model = tiny_model("bert", "eager")
    reference = copy.deepcopy(model)  # output_attentions installs capture hooks: keep them off `model`
    with torch.no_grad():
        expected = reference(**as_inputs(reference, batch), output_attentions=True).attentions
        trace = Encoder(model).trace(batch.input_ids, batch.attention_mask, batch.token_type_ids, values=True)
    assert len(trace.probs) == len(expected) == 2
    for got, want in zip(trace.probs, expected, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert trace.values[0].shape == (len(batch), 2, batch.input_ids.shape[1], 16)
    assert hooks(model) == []


def test_encoder_names_what_it_cannot_read():
    albert = AlbertForSequenceClassification(
        AlbertConfig(vocab_size=30, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    )
    with pytest.raises(
        AttexpError, match=r"AlbertForSequenceClassification .*'albert'.* bert \(bert.*llama \(.*modernbert"
    ):
        Encoder(albert)
    with pytest.raises(AttexpError, match="Linear is not a sequence classifier"):
        Encoder(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- raw attention and rollout


def test_raw_attention_is_the_cls_row_averaged_over_heads(tokenizer, batch):
    model = tiny_model("bert", "eager")
    reference = copy.deepcopy(model)
    with torch.no_grad():
        attentions = reference(**as_inputs(reference, batch), output_attentions=True).attentions
    for layer in (0, -1):
        explainer = RawAttention(RawAttentionConfig(layer=layer), model, tokenizer, {})
        with torch.inference_mode():
            out = explainer.explain(batch)
        torch.testing.assert_close(out.attributions, attentions[layer][:, :, 0].mean(1), atol=1e-6, rtol=1e-5)
    with pytest.raises(ConfigError, match="layer=2 is out of range for a model with 2 layers"):
        RawAttention(RawAttentionConfig(layer=2), model, tokenizer, {})


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_rollout_rows_sum_to_one_and_match_the_definition(family, tokenizer, batch):
    model = tiny_model(family)
    out = Rollout(RolloutConfig(return_matrices=True), model, tokenizer, {}).explain(batch)
    matrices = out.extras["rollout"]  # [B, L, T, T]
    lengths = batch.attention_mask.sum(1).tolist()
    for i, n in enumerate(lengths):
        rows = matrices[i, :, :n, :n].sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))
        assert (matrices[i, :, n:] == 0).all() and (matrices[i, :, :, n:] == 0).all()
        # the definition, on the unpadded instance: average heads, add I, renormalise, multiply
        with torch.no_grad():
            trace = Encoder(model).trace(batch.input_ids[i : i + 1, :n], batch.attention_mask[i : i + 1, :n])
        product = torch.eye(n)
        for probs in trace.probs:
            mixed = probs[0].mean(0) + torch.eye(n)
            product = (mixed / mixed.sum(-1, keepdim=True)) @ product
        torch.testing.assert_close(out.attributions[i, :n], product[0], atol=1e-6, rtol=1e-5)
        assert out.attributions[i, :n].sum() == pytest.approx(1.0, abs=1e-5)


def test_attention_explainers_switch_an_sdpa_model_and_leave_it_so(tokenizer, batch):
    sdpa, eager = tiny_model("bert", "sdpa"), tiny_model("bert", "eager")
    for cls, config in ((Rollout, RolloutConfig()), (ALTI, ALTIConfig())):
        got = cls(config, sdpa, tokenizer, {}).explain(batch).attributions
        want = cls(config, eager, tokenizer, {}).explain(batch).attributions
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"


# ---------------------------------------------------------------- ALTI


def layer_norm_outputs(model, encoder: Encoder, batch: Batch) -> list[torch.Tensor]:
    """The first LayerNorm's output of every layer, captured during the model's own forward pass."""
    captured, handles = [], []
    for layer in encoder.layers:
        handles.append(layer.norm.register_forward_hook(lambda module, args, output: captured.append(output)))
    try:
        with torch.no_grad():
            model(**as_inputs(model, batch))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def reference_alti(layer, inputs, heads: int, measure: str = "alti", std: str = "layernorm") -> torch.Tensor:
    """The paper's formulas for one unpadded instance, written out directly: the heads x n x n x H tensor of
    per-head transformed vectors is built explicitly, as in the official code. inputs [n, H] -> C [n, n]."""
    n, hidden = inputs.shape
    size = hidden // heads
    query = layer.query(inputs).view(n, heads, size).transpose(0, 1)
    key = layer.key(inputs).view(n, heads, size).transpose(0, 1)
    value = layer.value(inputs).view(n, heads, size).transpose(0, 1)  # bias included
    probs = (query @ key.transpose(1, 2) / size**0.5).softmax(-1)  # [h, n, n]
    weight = layer.output.weight  # [H, h * d]
    per_head = torch.stack([value[h] @ weight[:, h * size : (h + 1) * size].T for h in range(heads)])  # [h, n, H]
    vectors = probs[..., None] * per_head[:, None, :, :]  # [h, n_i, n_j, H]
    mixed = vectors.sum(0) + torch.eye(n)[..., None] * inputs[None, :, :]  # residual x_j where i = j
    pre_norm = mixed.sum(1) + layer.output.bias
    if std == "official":
        sigma = pre_norm.std(-1)
    else:
        sigma = (pre_norm.var(-1, unbiased=False) + layer.norm.eps).sqrt()
    gamma, beta = layer.norm.weight, layer.norm.bias
    transformed = (mixed - mixed.mean(-1, keepdim=True)) * gamma / sigma[:, None, None]
    output = (pre_norm - pre_norm.mean(-1, keepdim=True)) * gamma / sigma[:, None] + beta
    if measure == "norm":
        scores = transformed.norm(dim=-1)
    else:
        p = 1 if measure == "alti" else 2
        scores = (output.norm(p=p, dim=-1)[:, None] - (output[:, None] - transformed).norm(p=p, dim=-1)).clamp(min=0)
    return scores / scores.sum(-1, keepdim=True)


@pytest.mark.parametrize("family", FAMILIES)
def test_alti_decomposition_reconstructs_the_layer_norm_output(family, batch):
    model = tiny_model(family)
    encoder = Encoder(model)
    expected = layer_norm_outputs(model, encoder, batch)
    with torch.no_grad():
        trace = encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids, values=True)
        for index, layer in enumerate(encoder.layers):
            for i, n in enumerate(batch.attention_mask.sum(1).tolist()):
                pick = slice(i, i + 1)
                vectors, remainder = alti_decompose(
                    layer,
                    trace.inputs[index][pick, :n],
                    trace.probs[index][pick, :, :n, :n],
                    trace.values[index][pick, :, :n],
                )
                assert vectors.shape == (1, n, n, trace.inputs[index].shape[-1])
                error = (vectors.sum(2) + remainder - expected[index][pick, :n]).abs().max()
                assert error < 1e-4, (family, index, i, float(error))


@pytest.mark.parametrize("measure", ["alti", "alti_l2", "norm"])
@pytest.mark.parametrize("family", FAMILIES)
def test_alti_contributions_are_row_stochastic_and_match_the_paper(family, measure, tokenizer, batch, monkeypatch):
    model = tiny_model(family)
    explainer = ALTI(ALTIConfig(measure=measure, return_matrices=True), model, tokenizer, {})
    out = explainer.explain(batch)
    matrices = out.extras["contributions"]  # [B, L, T, T]
    assert matrices.shape == (len(batch), 2, *batch.input_ids.shape[1:], batch.input_ids.shape[1])
    with torch.no_grad():
        trace = explainer.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    for i, n in enumerate(batch.attention_mask.sum(1).tolist()):
        rows = matrices[i, :, :n, :n].sum(-1)
        torch.testing.assert_close(rows, torch.ones_like(rows))  # every row of every layer sums to 1
        assert (matrices[i, :, :n, :n] >= 0).all()
        assert (matrices[i, :, n:] == 0).all() and (matrices[i, :, :, n:] == 0).all()
        expected = []
        with torch.no_grad():
            for index, layer in enumerate(explainer.encoder.layers):
                expected.append(reference_alti(layer, trace.inputs[index][i, :n], 2, measure))
        torch.testing.assert_close(matrices[i, :, :n, :n], torch.stack(expected), atol=1e-5, rtol=1e-4)
        rolled = expected[1] @ expected[0]
        torch.testing.assert_close(out.attributions[i, :n], rolled[0], atol=1e-5, rtol=1e-4)
    # tiles of a few query rows (as for long inputs) give the same matrices
    monkeypatch.setattr(attention_module, "_TILE_ELEMENTS", 3 * 32 * 11)
    tiled = explainer.explain(batch).extras["contributions"]
    torch.testing.assert_close(tiled, matrices, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.bfloat16, 0.03)])
def test_alti_runs_on_a_model_that_is_not_float32(family, dtype, tolerance, tokenizer, batch):
    """Contributions are computed in the model's dtype; the scores are float32 (a float64 or bfloat16 model
    failed with "Index put requires the source and destination dtypes match")."""
    reference = ALTI(ALTIConfig(), tiny_model(family), tokenizer, {}).explain(batch).attributions
    other = ALTI(ALTIConfig(), tiny_model(family).to(dtype), tokenizer, {}).explain(batch).attributions
    assert other.dtype == torch.float32
    assert torch.allclose(other, reference, atol=tolerance)
    assert other.abs().sum() > 0


@pytest.mark.parametrize(
    "explainer",
    [
        lambda m, t: RawAttention(RawAttentionConfig(), m, t, {}),
        lambda m, t: Rollout(RolloutConfig(), m, t, {}),
        lambda m, t: AttentionAttribution(AttAttrConfig(steps=4), m, t, {}),
    ],
    ids=["raw_attention", "rollout", "attattr"],
)
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-5), (torch.bfloat16, 0.03)])
def test_inside_explainers_run_on_a_model_that_is_not_float32(explainer, dtype, tolerance, tokenizer, batch):
    """A handler's float32 probabilities (AttAttr's alpha-scaled ones) meet a bfloat16 model's values in the
    encoder's attention function, which casts them; AttAttr sums its gradients in float32."""
    reference = explainer(tiny_model("bert"), tokenizer)
    other = explainer(tiny_model("bert").to(dtype), tokenizer)
    with torch.enable_grad():
        expected, got = reference.explain(batch).attributions, other.explain(batch).attributions
    assert got.dtype == torch.float32 and torch.allclose(got, expected, atol=tolerance)


def test_iba_runs_on_a_bfloat16_model(tokenizer, batch):
    """IBA's bottleneck is built in float32 (alpha, noise) and cast to the model's dtype by the encoder."""
    with torch.enable_grad():
        out = iba(tiny_model("bert").to(torch.bfloat16), tokenizer, steps=2, samples=2).explain(batch)
    capacity = out.extras["capacity"]
    assert torch.isfinite(capacity).all() and capacity[batch.attention_mask.bool()].sum() > 0


def test_alti_official_std_follows_the_official_code(tokenizer, batch):
    model = tiny_model("bert")
    explainer = ALTI(ALTIConfig(std="official", return_matrices=True), model, tokenizer, {})
    matrices = explainer.explain(batch).extras["contributions"]
    default = ALTI(ALTIConfig(return_matrices=True), model, tokenizer, {}).explain(batch).extras["contributions"]
    n = int(batch.attention_mask[1].sum())
    with torch.no_grad():
        trace = explainer.encoder.trace(batch.input_ids[1:2, :n], batch.attention_mask[1:2, :n])
        expected = reference_alti(explainer.encoder.layers[0], trace.inputs[0][0], 2, std="official")
    torch.testing.assert_close(matrices[1, 0, :n, :n], expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(matrices, default, atol=1e-7)  # the parity flag changes something


# ---------------------------------------------------------------- Self-Attention Attribution


def attattr(model, tokenizer, **settings) -> AttentionAttribution:
    return AttentionAttribution(AttAttrConfig(**settings), model, tokenizer, {})


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_attattr_substituting_the_true_attention_reproduces_the_logits(family, tokenizer, batch):
    model = tiny_model(family)
    explainer = attattr(model, tokenizer)
    naive = attattr(model, tokenizer, prefix_cache=False)
    every = torch.arange(len(batch))
    with torch.no_grad():
        expected = model(**as_inputs(model, batch)).logits
        trace = explainer.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        for layer in range(2):
            cached = explainer.logits(batch, layer, trace.probs[layer], every, trace.inputs[layer])
            torch.testing.assert_close(cached, expected, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(
                naive.logits(batch, layer, trace.probs[layer], every), expected, atol=1e-5, rtol=1e-4
            )
            zeroed = explainer.logits(batch, layer, torch.zeros_like(trace.probs[layer]), every, trace.inputs[layer])
            assert (zeroed - expected).abs().max() > 1e-3  # the substitution really reaches the output


# relative completeness error allowed for the trapezoid rule at m = 40: BERT's and RoBERTa's heads are smooth
# (tanh), so the error is O(1/m^2); DistilBERT's head has a ReLU, whose kinks leave an O(1/m) error
TRAPEZOID_TOLERANCE = {"bert": 2e-3, "roberta": 2e-3, "distilbert": 5e-2}


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_attattr_is_complete_per_layer_and_converges(family, tokenizer, batch):
    model = tiny_model(family)
    every = torch.arange(len(batch))
    reader = attattr(model, tokenizer)
    with torch.no_grad():
        trace = reader.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        gaps = []
        for layer in range(2):
            probs, inputs = trace.probs[layer], trace.inputs[layer]
            full = reader.target_probability(batch, layer, probs, every, inputs)
            gaps.append(full - reader.target_probability(batch, layer, torch.zeros_like(probs), every, inputs))
    gap = torch.stack(gaps, dim=1)  # F(A_l) - F(0) per instance and layer: [B, L]
    assert gap.abs().max() > 1e-2  # there is something to be complete about
    totals = {}
    for steps in (4, 40):
        for rule in ("left", "right"):
            maps = attattr(model, tokenizer, steps=steps, rule=rule, return_maps=True).explain(batch).extras["maps"]
            totals[steps, rule] = maps.sum(dim=(2, 3, 4))  # per instance and layer: [B, L]
    errors = {steps: (totals[steps, "left"] - gap).abs().max() for steps in (4, 40)}
    assert errors[40] < errors[4] / 4  # the left Riemann error shrinks like 1/m
    trapezoid = (totals[40, "left"] + totals[40, "right"]) / 2
    assert (trapezoid - gap).abs().max() < TRAPEZOID_TOLERANCE[family] * gap.abs().max()


def test_attattr_prefix_caching_and_chunking_change_nothing_but_cost(tokenizer, batch):
    model = tiny_model("bert")
    cached = attattr(model, tokenizer, steps=5, return_maps=True).explain(batch)
    naive = attattr(model, tokenizer, steps=5, return_maps=True, prefix_cache=False).explain(batch)
    chunked = attattr(model, tokenizer, steps=5, return_maps=True, internal_batch_size=3).explain(batch)
    torch.testing.assert_close(naive.extras["maps"], cached.extras["maps"], atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(chunked.extras["maps"], cached.extras["maps"], atol=1e-6, rtol=1e-4)
    assert cached.forward_passes == [1 + 2 * 5] * len(batch) and cached.backward_passes == [2 * 5] * len(batch)
    assert naive.forward_passes == [1 + 2 * 5 + 2] * len(batch)  # plus one forward per layer, as the original
    padding = batch.attention_mask == 0
    maps = cached.extras["maps"]
    assert (maps.permute(0, 3, 1, 2, 4)[padding] == 0).all() and (maps.permute(0, 4, 1, 2, 3)[padding] == 0).all()


def test_attattr_options(tokenizer, batch):
    model = tiny_model("bert")
    left = attattr(model, tokenizer, steps=4, return_maps=True)
    right = attattr(model, tokenizer, steps=4, return_maps=True, rule="right")
    assert left.alphas(torch.device("cpu")).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert right.alphas(torch.device("cpu")).tolist() == [0.25, 0.5, 0.75, 1.0]
    maps = left.explain(batch).extras["maps"]
    assert not torch.allclose(maps, right.explain(batch).extras["maps"])
    cls = attattr(model, tokenizer, steps=4, aggregate="cls").explain(batch).attributions
    received = left.explain(batch).attributions
    torch.testing.assert_close(received, maps.sum(dim=(2, 3)).mean(1) * batch.attention_mask)
    torch.testing.assert_close(cls, maps[:, :, :, 0].sum(2).mean(1) * batch.attention_mask)
    last = attattr(model, tokenizer, steps=4, layers=[-1], return_maps=True).explain(batch)
    torch.testing.assert_close(last.extras["maps"][:, 0], maps[:, 1], atol=1e-7, rtol=1e-5)
    assert last.forward_passes == [1 + 4] * len(batch)
    # in the last layer only [CLS]'s attention reaches the classifier
    assert (last.extras["maps"][:, 0, :, 1:] == 0).all()


def test_attattr_errors_say_what_to_fix(tokenizer, batch):
    model = tiny_model("bert")
    with pytest.raises(ConfigError, match=r"layers\[...\]=5 is out of range for a model with 2 layers"):
        attattr(model, tokenizer, layers=[0, 5])
    with pytest.raises(ConfigError, match="layers=\\[\\] attributes nothing"):
        attattr(model, tokenizer, layers=[])
    with torch.inference_mode(), pytest.raises(AttexpError, match="inference_mode"):
        attattr(model, tokenizer).explain(batch)


# ---------------------------------------------------------------- IBA


def iba(model, tokenizer, upstream=None, **settings) -> InformationBottleneck:
    return InformationBottleneck(IBAConfig(**settings), model, tokenizer, upstream or {})


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_iba_leaves_the_model_unchanged_and_capacities_are_nonnegative(family, tokenizer, batch):
    model = tiny_model(family)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    probability = target_probability(model, batch)
    torch.manual_seed(0)
    out = iba(model, tokenizer, layer=0, steps=4, samples=3).explain(batch)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters()) and not model.training
    torch.testing.assert_close(target_probability(model, batch), probability)
    capacity = out.extras["capacity"]
    assert (capacity >= 0).all() and (capacity[batch.attention_mask == 0] == 0).all()
    for i, n in enumerate(batch.attention_mask.sum(1).tolist()):
        scores = out.attributions[i, :n]
        assert scores.min() == 0 and scores.max() == pytest.approx(1.0)  # min-max normalised
        assert torch.equal(scores.argmax(), capacity[i, :n].argmax())
    assert out.forward_passes == [1 + 12] * len(batch) and out.backward_passes == [12] * len(batch)


@pytest.mark.parametrize("prior", ["dataset", "official"])
@pytest.mark.parametrize("layer", [0, 1])
def test_iba_prefix_caching_changes_nothing_but_cost(layer, prior, tokenizer, batch):
    model = tiny_model("bert")
    results = []
    for cache in (True, False):
        torch.manual_seed(3)
        results.append(
            iba(model, tokenizer, layer=layer, prior=prior, steps=3, samples=2, prefix_cache=cache).explain(batch)
        )
    torch.testing.assert_close(results[0].attributions, results[1].attributions, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(results[0].extras["capacity"], results[1].extras["capacity"], atol=1e-3, rtol=1e-4)


def test_iba_mask_learns_what_the_target_needs(tokenizer, batch):
    model = tiny_model("bert")
    torch.manual_seed(0)
    short = iba(model, tokenizer, layer=0, steps=1, samples=2).explain(batch).extras["capacity"]
    torch.manual_seed(0)
    longer = iba(model, tokenizer, layer=0, steps=10, samples=2, beta=1.0).explain(batch).extras["capacity"]
    assert longer.sum() < short.sum()  # a strong capacity penalty closes the bottleneck


def test_iba_layer_defaults_to_two_thirds_of_the_depth_but_never_the_last(tokenizer):
    for layers, expected in ((1, 0), (2, 0), (3, 1), (4, 2), (6, 4), (12, 8)):
        model = transformers.BertForSequenceClassification(
            transformers.BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=layers, num_attention_heads=2)
        )
        assert iba(model, tokenizer).layer == expected


def test_iba_after_the_last_layer_explains_nothing_and_warns(tokenizer, batch, caplog):
    """After the last layer only [CLS] reaches the head: every other token's capacity is the same whichever
    class is explained. The default layer of a shallow model is below it, where the class matters."""
    model = tiny_model("bert")  # 2 layers

    def capacities(layer, target):
        torch.manual_seed(0)
        explained = Batch(
            batch.input_ids, batch.attention_mask, batch.token_type_ids, torch.full_like(batch.targets, target)
        )
        settings = {} if layer is None else {"layer": layer}
        return iba(model, tokenizer, steps=3, samples=2, **settings).explain(explained).extras["capacity"]

    with caplog.at_level("WARNING"):
        last = [capacities(-1, target) for target in (0, 1)]
    assert "after the last layer" in caplog.text and "Pick a lower layer (default: 0)" in caplog.text
    real = batch.attention_mask.bool().clone()
    real[:, 0] = False  # every token but [CLS]
    assert torch.allclose(last[0][real], last[1][real])  # the class does not matter: nothing explained
    caplog.clear()
    with caplog.at_level("WARNING"):
        default = [capacities(None, target) for target in (0, 1)]
    assert "after the last layer" not in caplog.text
    assert not torch.allclose(default[0][real], default[1][real], atol=1e-4)
    with pytest.raises(ConfigError, match="iba: layer=2 is out of range for a model with 2 layers"):
        iba(tiny_model("bert"), tokenizer, layer=2)


def test_iba_dataset_prior_comes_from_the_download_job(tokenizer, batch, tmp_path):
    model = tiny_model("bert")
    folder = build_download(model, tokenizer, tmp_path / "rt.download")
    explainer = iba(model, tokenizer, {"rt.download": folder}, layer=0, prior_data="rt.download")
    encoded = make_batch(tokenizer, TEXTS)
    with torch.no_grad():
        hidden, _ = explainer.bottleneck_input(encoded.input_ids, encoded.attention_mask, encoded.token_type_ids)
    real = hidden[encoded.attention_mask.bool()]  # [tokens, H]
    mean, std = explainer.prior
    torch.testing.assert_close(mean, real.mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(std, real.std(0, unbiased=False), atol=1e-5, rtol=1e-4)
    # without prior_data the batch being explained is the data: here the same texts, so the same scores
    torch.manual_seed(1)
    with_data = explainer.explain(batch).attributions
    torch.manual_seed(1)
    from_batch = iba(model, tokenizer, layer=0).explain(batch).attributions
    torch.testing.assert_close(with_data, from_batch, atol=1e-4, rtol=1e-4)


def test_iba_errors_say_what_to_fix(tokenizer, batch, tmp_path):
    model = tiny_model("bert")
    with pytest.raises(ConfigError, match="prior_data='rt.download' names an upstream job whose artifact"):
        iba(model, tokenizer, prior_data="rt.download")
    with pytest.raises(ConfigError, match="prior='official' uses each instance's own hidden states"):
        iba(model, tokenizer, {"rt.download": tmp_path}, prior="official", prior_data="rt.download")
    with torch.inference_mode(), pytest.raises(AttexpError, match="inference_mode"):
        iba(model, tokenizer).explain(batch)


@pytest.mark.parametrize("prior", ["dataset", "official"])
def test_iba_batched_equals_one_by_one_given_the_same_noise(prior, tokenizer, batch, tmp_path, monkeypatch):
    model = tiny_model("bert")
    upstream = {"rt.download": build_download(model, tokenizer, tmp_path / "rt.download")}
    data = "rt.download" if prior == "dataset" else None
    explainer = iba(model, tokenizer, upstream, layer=0, steps=4, samples=2, prior=prior, prior_data=data)
    monkeypatch.setattr(torch, "randn", lambda *shape, **kwargs: torch.zeros(*shape, **kwargs))  # noise: its mean
    together = explainer.explain(batch)
    for i, text in enumerate(TEXTS):
        alone = explainer.explain(make_batch(tokenizer, [text], [int(batch.targets[i])]))
        n = alone.attributions.shape[1]
        torch.testing.assert_close(together.attributions[i, :n], alone.attributions[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            together.extras["capacity"][i, :n], alone.extras["capacity"][0], atol=1e-4, rtol=1e-4
        )


# ---------------------------------------------------------------- through the explain stage


def test_explain_jobs_run_the_inside_explainers_end_to_end(tmp_path, run_cli):
    """download (local fixture files) -> train a tiny BERT -> explain with each inside explainer; IBA's prior
    comes from the download job named by prior_data, which the config loader checks is a download job."""
    import json

    from conftest import FIXTURES

    from attexp.io.files import read_jsonl

    data = FIXTURES / "data" / "tiny_sentiment"
    source = {"type": "local", "text": "sentence", "label": "sentiment"}
    source["files"] = {"train": str(data / "train.csv"), "validation": str(data / "validation.tsv")}
    source["files"]["test"] = str(data / "test.jsonl")
    tiny = {"type": "tiny", "vocab_size": 200, "hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 32}
    explain = {"job": "explain", "model": "t.train", "data": "t.download", "progress": False}
    explainers = {
        "raw_attention": {},
        "rollout": {},
        "alti": {},
        "attattr": {"steps": 3},
        "iba": {"prior_data": "t.download", "steps": 2, "samples": 2},
    }
    jobs = [
        {"job": "download", "name": "t.download", "source": source},
        {"job": "train", "name": "t.train", "data": "t.download", "model": tiny, "epochs": 1, "progress": False},
    ]
    jobs += [{**explain, "name": f"t.{name}", "explainer": {"type": name, **cfg}} for name, cfg in explainers.items()]
    config = tmp_path / "inside.jsonnet"
    config.write_text(json.dumps({"jobs": jobs}))
    code, _, err = run_cli(config, "--base-dir", tmp_path / "base")
    assert code == 0, err[-3000:]
    for name in explainers:
        records = read_jsonl(tmp_path / "base" / "explanations" / f"t.{name}" / "records.jsonl")
        assert len(records) == 4
        for record in records:
            assert len(record["attributions"]) == len(record["input_ids"])
            assert any(score != 0 for score in record["attributions"])

    jobs[-1]["explainer"]["prior_data"] = "t.train"
    config.write_text(json.dumps({"jobs": jobs}))
    code, _, err = run_cli(config, "--base-dir", tmp_path / "other", "--dry-run")
    assert code == 2 and "prior_data: 't.train' is a train job; allowed here: a download job" in err
