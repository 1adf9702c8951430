"""The `heads` mode of the empirical explainer (attexp/distill/empirical/heads.py): a learned map over the read row's
attention, the value vectors it reads and the last hidden states, computed from the prediction forward.

The definition is checked against the models' own outputs (transformers' eager attention probabilities, the value
projections applied by hand, the hidden states), not against attexp's Encoder, on an encoder and a grouped-query
decoder; every layout runs; the map saves alone and loads only on its classifier; it learns through the distill
stage; the explain engine gives prediction and explanation from one forward.
"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file
from tiny import LAYOUT_CASES, tiny_classifier, word_tokenizer

from attexp.distill.empirical.explainer import EmpiricalConfig, EmpiricalExplainer
from attexp.distill.empirical.heads import HeadsExplainerModel
from attexp.distill.empirical.loading import load_explainer
from attexp.distill.empirical.training import DistillSettings, build_explainer
from attexp.errors import AttexpError
from attexp.explain.batching import explain_rows

WORDS = "a good great movie the film was dull and bad story plot".split()
TEXTS = ["a good movie", "the film was a dull and bad story", "great plot", "bad"]


def inputs_for(case: str):
    tokenizer = word_tokenizer(WORDS, segments=case == "bert")
    model = tiny_classifier(case, tokenizer.vocab_size + 2, num_labels=3, attention="sdpa")
    return model, tokenizer, dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


def randomised(model: HeadsExplainerModel, seed: int = 1) -> HeadsExplainerModel:
    """The map with every parameter drawn at random (a fresh map's are small), so every term shows in the scores."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith("classifier."):
                param.copy_(torch.randn(param.shape, generator=generator))
    return model


@pytest.mark.parametrize("case", sorted(LAYOUT_CASES))
def test_predicts_as_the_classifier_on_every_layout(case):
    model, _, inputs = inputs_for(case)
    explainer = randomised(HeadsExplainerModel(model))
    with torch.no_grad():
        logits, scores = explainer.predict_and_explain(**inputs)
        torch.testing.assert_close(logits, model(**inputs).logits, atol=1e-5, rtol=1e-5)
        mask = inputs["attention_mask"]
        assert scores.shape == mask.shape and torch.all(scores[mask == 0] == 0)
        assert scores[mask == 1].abs().min() > 0
        for i in range(len(TEXTS)):  # a row alone scores as in the padded batch
            alone = {k: v[i : i + 1, : int(mask[i].sum())] for k, v in inputs.items()}
            torch.testing.assert_close(explainer(**alone)[0], scores[i, : int(mask[i].sum())], atol=1e-4, rtol=1e-4)


def by_hand(model, inputs: dict, read: torch.Tensor, weights, directions, lexicon, bias) -> torch.Tensor:
    """score(j, c) for every token and class [B, T, C] from transformers' own outputs: eager attention
    probabilities, each layer's input hidden states through the layer's value projection (grouped key/value heads
    repeated per query head) and the final hidden states."""
    eager = copy.deepcopy(model)
    eager.config._attn_implementation = "eager"
    for module in eager.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = "eager"
    out = eager(**inputs, output_attentions=True, output_hidden_states=True)
    base = eager.base_model
    heads, size = directions.shape[1], directions.shape[2]
    rows = torch.arange(read.shape[0])
    total = bias.expand(*inputs["input_ids"].shape, -1).clone()
    for layer, probs in enumerate(out.attentions):
        a = probs[rows, :, read]  # [B, h, T]: the read row
        if hasattr(base, "encoder"):  # BERT: hidden_states[l] is layer l's input; value = Linear(hidden)
            v = base.encoder.layer[layer].attention.self.value(out.hidden_states[layer])
            v = v.view(*v.shape[:2], heads, size)
        else:  # Llama: value = v_proj(input_layernorm(hidden)), key/value heads repeated per query head
            block = base.layers[layer]
            v = block.self_attn.v_proj(block.input_layernorm(out.hidden_states[layer]))
            v = v.view(*v.shape[:2], -1, size).repeat_interleave(heads // (v.shape[-1] // size), dim=2)
        v = v.permute(0, 2, 1, 3)  # [B, h, T, d]
        total = total + torch.einsum("bht,hc->btc", a, weights[layer])
        total = total + torch.einsum("bht,bhtd,hdc->btc", a, v, directions[layer])
    return total + out.hidden_states[-1] @ lexicon  # transformers' last hidden state: the final norm applied


@pytest.mark.parametrize("case", ["bert", "llama"])
def test_scores_follow_the_definition(case):
    model, _, inputs = inputs_for(case)
    explainer = randomised(HeadsExplainerModel(model, head="class"))
    mask = inputs["attention_mask"]
    read = torch.zeros(len(TEXTS), dtype=torch.long) if case == "bert" else mask.sum(dim=1) - 1
    with torch.no_grad():
        expected = by_hand(
            model, inputs, read, explainer.weights, explainer.directions, explainer.lexicon, explainer.bias
        )
        expected = expected * mask[..., None]
        for target in range(3):
            targets = torch.full((len(TEXTS),), target)
            scores = explainer(**inputs, targets=targets)
            torch.testing.assert_close(scores, expected[..., target], atol=1e-4, rtol=1e-4)
        # no targets: the predicted class
        predicted = model(**inputs).logits.argmax(dim=-1)
        torch.testing.assert_close(explainer(**inputs), explainer(**inputs, targets=predicted))


def test_features_choose_the_terms():
    model, _, inputs = inputs_for("bert")
    terms = {}
    with torch.no_grad():
        for features in (["attention"], ["values"], ["hidden"], ["attention", "values", "hidden"]):
            explainer = randomised(HeadsExplainerModel(model, features=features))
            explainer.bias.zero_()
            terms[tuple(features)] = explainer(**inputs, targets=torch.zeros(len(TEXTS), dtype=torch.long))
    # the same seed draws the same parameters: the whole map is the sum of its terms
    torch.testing.assert_close(
        terms[("attention", "values", "hidden")],
        terms[("attention",)] + terms[("values",)] + terms[("hidden",)],
        atol=1e-4,
        rtol=1e-4,
    )
    with pytest.raises(AttexpError, match="choose one or more of"):
        HeadsExplainerModel(model, features=["norms"])


def test_saves_only_the_map_and_loads_only_on_its_classifier(tmp_path):
    model, _, inputs = inputs_for("llama")
    original = {k: v.clone() for k, v in model.state_dict().items()}
    explainer = randomised(HeadsExplainerModel(model, features=["values", "hidden"]))
    explainer.train()
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    explainer.save_pretrained(tmp_path / "heads")
    saved = load_file(tmp_path / "heads" / "explainer_head.safetensors")
    assert set(saved) == {"weights", "directions", "lexicon", "bias"}
    assert sum(v.numel() for v in saved.values()) < 0.1 * sum(p.numel() for p in model.parameters())
    fresh = copy.deepcopy(model).requires_grad_(True)
    loaded = load_explainer(tmp_path / "heads", fresh, device="cpu")
    assert isinstance(loaded, HeadsExplainerModel) and loaded.features == ("values", "hidden")
    assert all(p.requires_grad for p in fresh.parameters()), "loading to explain does not freeze the caller's model"
    explainer.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs), explainer(**inputs), atol=0, rtol=0)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.score.weight.add_(0.01)
    with pytest.raises(AttexpError, match="trained on another classifier"):
        load_explainer(tmp_path / "heads", other)
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())


def test_settings():
    model, _, _ = inputs_for("bert")
    built = build_explainer(model, DistillSettings(mode="heads", head="class", features=["attention"]))
    assert isinstance(built, HeadsExplainerModel) and built.features == ("attention",)
    assert build_explainer(model, DistillSettings(mode="heads")).head_type == "token"
    with pytest.raises(ValueError, match="features is a setting of mode 'heads'"):
        DistillSettings(mode="shared", features=["attention"])
    with pytest.raises(ValueError, match="head 'flat'"):
        DistillSettings(mode="heads", head="flat")


def test_explain_engine_takes_prediction_and_explanation_from_one_forward(tmp_path):
    model, tokenizer, _ = inputs_for("bert")
    HeadsExplainerModel(model, head="class").save_pretrained(tmp_path / "heads" / "model")
    explainer = EmpiricalExplainer(EmpiricalConfig(model="heads"), model, tokenizer, {"heads": tmp_path / "heads"})
    assert explainer.predicts
    rows = [{"idx": i, "text": t, "label": 0} for i, t in enumerate(TEXTS)]
    batches = explain_rows(
        explainer, model, tokenizer, rows, batch_size=3, max_length=32, target="predicted", device="cpu", progress=False
    )
    records = [r for batch in batches for r in batch]
    enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    for record in records:
        assert record["forward_passes"] == 1 and record["backward_passes"] == 0
        assert record["logits"] == pytest.approx(logits[record["idx"]].tolist(), abs=1e-5)
        assert len(record["attributions"]) == len(record["input_ids"])
