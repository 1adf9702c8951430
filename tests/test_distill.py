"""The empirical explainer (Schwarzenberg et al. 2021): model properties, save/load, and distillation."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from attexp.distill.empirical.explainer import EmpiricalConfig, EmpiricalExplainer
from attexp.distill.empirical.loading import load_explainer
from attexp.distill.empirical.model import (
    HEAD_SETTINGS,
    EmpiricalExplainerModel,
    SharedExplainerModel,
)
from attexp.distill.empirical.training import (
    DistillSettings,
    build_explainer,
    distill,
    encode_records,
    evaluate_explainer,
    masked_pearson,
    token_type_ids_from_sep,
)
from attexp.errors import AttexpError
from attexp.explain.batching import explain_rows
from attexp.models.encoder import layer_stack as layer_list
from attexp.models.sources import TinyModel, TinyModelConfig
from attexp.train.batches import pad_collate

WORDS = ["the", "movie", "film", "was", "good", "bad", "plot", "acting", "great", "dull", "a", "story"]
SCORED = {"good": 1.0, "great": 0.5, "bad": -1.0, "dull": -0.5}


def sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def classifier():
    config = TinyModelConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return TinyModel(config).load(2, ["neg", "pos"], sentences(200, 0), Path("unused"), seed=0)


def records(tokenizer, texts: list[str]) -> list[dict]:
    """Synthetic explanation records: each token's target is a fixed function of its id (sentiment words)."""
    out = []
    for idx, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        out.append(
            {"idx": idx, "input_ids": ids, "tokens": tokens, "attributions": [SCORED.get(t, 0.0) for t in tokens]}
        )
    return out


def padded_batch(tokenizer, texts):
    features = [{"input_ids": tokenizer(t)["input_ids"]} for t in texts]
    return pad_collate(features, tokenizer.pad_token_id)


@pytest.mark.parametrize("head", ["token", "flat"])
def test_scores_are_zero_on_padding_and_independent_of_it(classifier, head):
    model, tokenizer = classifier
    explainer = EmpiricalExplainerModel.from_classifier(model, head=head, max_length=24).eval()
    texts = ["a good movie", "the film was a dull and bad story with great acting"]
    batch = padded_batch(tokenizer, texts)
    with torch.no_grad():
        scores = explainer(batch["input_ids"], batch["attention_mask"])  # [2, T]
        alone = explainer(**{k: v[:1, : batch["attention_mask"][0].sum()] for k, v in batch.items()})
    assert scores.shape == batch["input_ids"].shape
    assert torch.all(scores[batch["attention_mask"] == 0] == 0)
    assert scores[0, 0] != 0
    n = int(batch["attention_mask"][0].sum())
    torch.testing.assert_close(scores[0, :n], alone[0], rtol=1e-5, atol=1e-6)


def test_from_classifier_copies_the_encoder(classifier):
    model, _ = classifier
    explainer = EmpiricalExplainerModel.from_classifier(model)
    for (name, a), b in zip(
        model.base_model.state_dict().items(), explainer.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with torch.no_grad():
        explainer.encoder.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(
        explainer.encoder.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight
    )
    assert explainer.head.weight.shape == (1, 32)


def test_flat_head_shapes_and_length_limit(classifier):
    model, tokenizer = classifier
    explainer = EmpiricalExplainerModel.from_classifier(model, head="flat", max_length=16).eval()
    assert explainer.head.weight.shape == (16, 16 * 32)
    batch = padded_batch(tokenizer, ["a good movie", "the plot"])
    assert explainer(batch["input_ids"], batch["attention_mask"]).shape == batch["input_ids"].shape
    too_long = torch.ones((1, 17), dtype=torch.long)
    with pytest.raises(AttexpError, match="max_length=16"):
        explainer(too_long, too_long)


@pytest.mark.parametrize("head", ["token", "flat"])
def test_save_load_round_trip(classifier, tmp_path, head):
    model, tokenizer = classifier
    explainer = EmpiricalExplainerModel.from_classifier(model, head=head, max_length=20).eval()
    with torch.no_grad():
        explainer.head.bias.fill_(0.25)  # something the fresh model would not have
    explainer.save_pretrained(tmp_path / "explainer")
    assert json.loads((tmp_path / "explainer" / HEAD_SETTINGS).read_text())["head"] == head
    loaded = EmpiricalExplainerModel.from_pretrained(tmp_path / "explainer", device="cpu")
    assert not loaded.training and loaded.head_type == head and loaded.max_length == 20
    batch = padded_batch(tokenizer, ["a good movie", "the film was dull and bad"])
    token_types = torch.zeros_like(batch["input_ids"])
    with torch.no_grad():
        assert torch.equal(explainer(**batch, token_type_ids=token_types), loaded(**batch, token_type_ids=token_types))
    with pytest.raises(AttexpError, match="not a saved empirical explainer"):
        EmpiricalExplainerModel.from_pretrained(tmp_path)


def test_records_are_checked_and_segments_derived():
    assert token_type_ids_from_sep([2, 7, 3, 8, 9, 3], sep_token_id=3) == [0, 0, 0, 1, 1, 1]
    good = {"idx": 1, "input_ids": [2, 7, 3], "attributions": [0.0, 1.0, 0.0]}
    assert encode_records([good], max_length=3, sep_token_id=3)[0]["token_type_ids"] == [0, 0, 0]
    with pytest.raises(AttexpError, match="3 input_ids but 2 attributions"):
        encode_records([dict(good, attributions=[0.0, 1.0])], max_length=8)
    with pytest.raises(AttexpError, match="more than the distill max_length=2"):
        encode_records([good], max_length=2)


def test_distill_learns_synthetic_attributions_and_resumes(classifier, tmp_path):
    model, tokenizer = classifier
    train, val = records(tokenizer, sentences(192, 1)), records(tokenizer, sentences(48, 2))
    config = DistillSettings(epochs=3, batch_size=16, lr=2e-3, max_length=32, progress=False, patience=5)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    before = evaluate_explainer(EmpiricalExplainerModel.from_classifier(model), val, 32, "cpu")["mse"]

    def killed_after_first_epoch(entry: dict) -> None:
        if entry["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        distill(model, train, val, config, tmp_path, "cpu", on_epoch=killed_after_first_epoch)
    seen: list[dict] = []
    result = distill(model, train, val, config, tmp_path, "cpu", on_epoch=seen.append)
    assert result.resumed_from_epoch == 1 and [e["epoch"] for e in seen] == [2, 3]
    assert set(seen[0]) == {"epoch", "train_loss", "val_mse", "seconds"}
    assert [e["epoch"] for e in result.history] == [1, 2, 3]
    assert result.best_val_mse == min(e["val_mse"] for e in result.history)
    assert result.best_val_mse < 0.2 * before
    after = evaluate_explainer(result.model, val, 32, "cpu")
    assert after["n"] == 48 and after["mse"] == pytest.approx(result.best_val_mse, rel=1e-5)
    # the explainer ranks the scored words the way the targets do
    batch = padded_batch(tokenizer, ["good great dull bad"])
    with torch.no_grad():
        scores = result.model(batch["input_ids"], batch["attention_mask"])[0, 1:-1].tolist()
    assert scores == sorted(scores, reverse=True)
    # the classifier itself is untouched by distillation
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------------------------------------
# Modes: student (the first layers only) and shared (the frozen classifier + a branch over its hidden states)


def test_student_keeps_the_first_layers_and_round_trips(classifier, tmp_path):
    model, tokenizer = classifier
    student = EmpiricalExplainerModel.from_classifier(model, layers=1).eval()
    assert student.mode == "student" and student.student_layers == 1
    assert len(layer_list(student.encoder)) == 1 and model.config.num_hidden_layers == 2  # the classifier keeps 2
    first = layer_list(model.base_model)[0].state_dict()
    for (name, a), b in zip(first.items(), layer_list(student.encoder)[0].state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    batch = padded_batch(tokenizer, ["a good movie", "the film was dull and bad"])
    with torch.no_grad():
        hidden = model.eval().base_model(**batch, output_hidden_states=True).hidden_states[1]  # after layer 1
        assert torch.allclose(student.encoder(**batch).last_hidden_state, hidden, atol=1e-6)
    student.save_pretrained(tmp_path / "student")
    loaded = load_explainer(tmp_path / "student", classifier=None, device="cpu")
    assert loaded.mode == "student" and len(layer_list(loaded.encoder)) == 1
    with torch.no_grad():
        assert torch.equal(student(**batch), loaded(**batch))
    with pytest.raises(AttexpError, match="student_layers=3: the classifier has 2 layers"):
        EmpiricalExplainerModel.from_classifier(model, layers=3)


def test_shared_predicts_as_the_classifier_and_saves_only_its_branch(classifier, tmp_path):
    model, tokenizer = classifier
    original = {k: v.clone() for k, v in model.state_dict().items()}
    shared = SharedExplainerModel(model, branch_layers=1)
    shared.train()
    assert not model.training  # the frozen classifier's dropout stays off while the branch trains
    assert all(not p.requires_grad for p in model.parameters()) and all(
        p.requires_grad for p in shared.learned_parameters()
    )
    batch = padded_batch(tokenizer, ["a good movie", "the film was a dull and bad story"])
    shared.eval()
    with torch.no_grad():
        logits, scores = shared.predict_and_explain(batch["input_ids"], batch["attention_mask"])
        assert torch.equal(logits, model(**batch).logits)
    assert torch.all(scores[batch["attention_mask"] == 0] == 0) and scores.shape == batch["input_ids"].shape
    shared.save_pretrained(tmp_path / "shared")
    saved = load_file(tmp_path / "shared" / "explainer_head.safetensors")
    assert saved and not any(k.startswith("classifier.") for k in saved)
    fresh = copy.deepcopy(model).requires_grad_(True)  # a caller's classifier, trainable
    loaded = load_explainer(tmp_path / "shared", fresh, device="cpu")
    assert isinstance(loaded, SharedExplainerModel) and not loaded.training
    assert all(p.requires_grad for p in fresh.parameters()), "loading to explain does not freeze the caller's model"
    with torch.no_grad():
        assert torch.equal(loaded(**batch), scores)
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.classifier.weight.add_(0.01)
    with pytest.raises(AttexpError, match="trained on another classifier"):
        load_explainer(tmp_path / "shared", other)
    with pytest.raises(AttexpError, match="load_explainer"):
        EmpiricalExplainerModel.from_pretrained(tmp_path / "shared")
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())


def tiny_distilbert(vocab_size: int) -> DistilBertForSequenceClassification:
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=48, num_labels=2)
    return DistilBertForSequenceClassification(config).eval()


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_shared_branch_starts_as_the_classifier_top_layers(classifier, family):
    """branch_init 'top_layers' (the default where the layout allows it): run on the hidden states entering the
    classifier's top layers, the fresh branch reproduces the classifier's last hidden states."""
    bert, tokenizer = classifier
    model = bert if family == "bert" else tiny_distilbert(tokenizer.vocab_size)
    batch = padded_batch(tokenizer, ["a good movie", "the film was a dull and bad story"])
    real = batch["attention_mask"] == 1
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    for layers in (1, 2):
        shared = SharedExplainerModel(model, branch_layers=layers).eval()
        assert shared.branch_init == "top_layers"
        hidden = states[-1 - layers]
        with torch.no_grad():
            for layer in shared.branch:
                hidden = layer(hidden, src_key_padding_mask=~real)
        torch.testing.assert_close(hidden[real], states[-1][real], atol=2e-5, rtol=1e-4)
        fresh = SharedExplainerModel(model, branch_layers=layers, branch_init="random").eval()
        assert fresh.branch_init == "random"
        with torch.no_grad():
            other = fresh.branch[0](states[-1 - layers], src_key_padding_mask=~real)
        assert not torch.allclose(other[real], states[-layers][real], atol=1e-2)


def test_shared_branch_init_is_checked(classifier):
    model, _ = classifier  # two layers
    assert SharedExplainerModel(model, branch_layers=3).branch_init == "random"  # nothing to copy: fresh
    with pytest.raises(AttexpError, match="branch_layers=3 but the classifier has 2 layers.*branch_init: 'random'"):
        SharedExplainerModel(model, branch_layers=3, branch_init="top_layers")
    with pytest.raises(ValueError, match="branch_init is a setting of mode 'shared'"):
        DistillSettings(branch_init="random")


def test_masked_pearson_matches_numpy():
    torch.manual_seed(0)
    scores, targets = torch.randn(3, 7), torch.randn(3, 7)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    got = masked_pearson(scores, targets, mask)
    for i, n in enumerate(mask.sum(dim=1).tolist()):
        expected = np.corrcoef(scores[i, :n].numpy(), targets[i, :n].numpy())[0, 1]
        assert got[i].item() == pytest.approx(expected, abs=1e-5)
    # padding values do not matter
    noisy = scores.clone()
    noisy[mask == 0] = 100.0
    torch.testing.assert_close(masked_pearson(noisy, targets, mask), got)


@pytest.mark.parametrize(
    "settings",
    [
        {"mode": "student", "student_layers": 1},
        {"mode": "shared", "branch_layers": 1},
        {"mode": "shared", "branch_layers": 0, "correlation_weight": 1.0},
    ],
    ids=["student", "shared", "shared-0-layers-correlation"],
)
def test_every_mode_learns_synthetic_attributions(classifier, tmp_path, settings):
    model, tokenizer = classifier
    train, val = records(tokenizer, sentences(192, 1)), records(tokenizer, sentences(48, 2))
    config = DistillSettings(epochs=8, batch_size=16, lr=3e-3, max_length=32, progress=False, patience=5, **settings)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    before = evaluate_explainer(build_explainer(model, config), val, 32, "cpu")["mse"]
    result = distill(model, train, val, config, tmp_path, "cpu")
    assert result.model.mode == settings["mode"]
    assert result.best_val_mse < 0.3 * before, (before, result.best_val_mse)
    if settings.get("branch_layers") != 0:  # a linear map of the frozen tiny classifier's states ranks less well
        batch = padded_batch(tokenizer, ["good great dull bad"])
        with torch.no_grad():
            scores = result.model(batch["input_ids"], batch["attention_mask"])[0, 1:-1].tolist()
        assert scores == sorted(scores, reverse=True)
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items())


def test_mode_settings_are_checked():
    with pytest.raises(ValueError, match="student_layers is a setting of mode 'student'"):
        DistillSettings(student_layers=2)
    with pytest.raises(ValueError, match="branch_layers is a setting of mode 'shared'"):
        DistillSettings(mode="student", branch_layers=2)
    with pytest.raises(ValueError, match="head 'flat' is emp-exp's decoder for mode 'copy'"):
        DistillSettings(mode="shared", head="flat")


def explain_all(explainer, model, tokenizer, rows: list[dict], target) -> list[dict]:
    """The explain engine's records for `rows`, in batches of 4."""
    batches = explain_rows(
        explainer, model, tokenizer, rows, batch_size=4, max_length=32, target=target, device="cpu", progress=False
    )
    return [record for batch in batches for record in batch]


def test_shared_explainer_uses_the_prediction_forward(classifier, tmp_path):
    """Through the explain engine: a shared explainer's records carry the classifier's own predictions, and the
    instance cost is the one prediction forward (a copy explainer's is two)."""
    model, tokenizer = classifier
    model.eval()
    rows = [{"idx": i, "text": t, "label": 0} for i, t in enumerate(sentences(10, 3))]
    per_mode = {}
    for mode, explainer_model in {
        "shared": SharedExplainerModel(model, branch_layers=1),
        "copy": EmpiricalExplainerModel.from_classifier(model),
    }.items():
        explainer_model.save_pretrained(tmp_path / mode / "model")
        config = EmpiricalConfig(model=mode)
        explainer = EmpiricalExplainer(config, model, tokenizer, {mode: tmp_path / mode})
        assert explainer.predicts == (mode == "shared")
        per_mode[mode] = explain_all(explainer, model, tokenizer, rows, "predicted")
    for shared, copied in zip(per_mode["shared"], per_mode["copy"], strict=True):
        assert shared["idx"] == copied["idx"]
        assert shared["logits"] == pytest.approx(copied["logits"], abs=1e-5)  # the classifier's own forward
        assert (shared["forward_passes"], copied["forward_passes"]) == (1, 2)
        assert shared["backward_passes"] == copied["backward_passes"] == 0
        assert len(shared["attributions"]) == len(shared["input_ids"])


def signed_records(tokenizer, texts: list[str], seed: int) -> list[dict]:
    """Records explained for a random class each: class 1's scores are SCORED, class 0's their negatives (as a
    teacher's scores for the two logits of a binary classifier roughly are)."""
    rng = random.Random(seed)
    out = []
    for record in records(tokenizer, texts):
        target = rng.randint(0, 1)
        sign = 1.0 if target == 1 else -1.0
        out.append(dict(record, target=target, attributions=[sign * a for a in record["attributions"]]))
    return out


@pytest.mark.parametrize("mode", ["shared", "student", "heads"])
def test_class_head_learns_what_a_single_output_cannot(classifier, tmp_path, mode):
    """The teacher's scores flip sign with the explained class, which the input does not show: a one-output
    head can only learn their mean (about 0); the per-class head is told the class and learns both."""
    model, tokenizer = classifier
    train, val = signed_records(tokenizer, sentences(192, 1), 1), signed_records(tokenizer, sentences(48, 2), 2)
    lr = 3e-2 if mode == "heads" else 3e-3  # the heads map: a few hundred parameters, a linear model
    common = dict(mode=mode, epochs=8, batch_size=16, lr=lr, max_length=32, progress=False, patience=5)
    results = {}
    for head in ("token", "class"):
        results[head] = distill(model, train, val, DistillSettings(head=head, **common), tmp_path / head, "cpu")
    assert results["class"].best_val_mse < 0.3 * results["token"].best_val_mse
    explainer = results["class"].model.eval()
    batch = padded_batch(tokenizer, ["good great dull bad"] * 2)
    with torch.no_grad():
        scores = explainer(batch["input_ids"], batch["attention_mask"], targets=torch.tensor([1, 0]))[:, 1:-1]
    assert scores[0].tolist() == sorted(scores[0].tolist(), reverse=True)  # class 1: good > great > dull > bad
    assert scores[1].tolist() == sorted(scores[1].tolist())  # class 0: the reverse
    results["class"].model.save_pretrained(tmp_path / "saved")
    loaded = load_explainer(tmp_path / "saved", model)
    with torch.no_grad():
        again = loaded(batch["input_ids"], batch["attention_mask"], targets=torch.tensor([1, 0]))[:, 1:-1]
        assert torch.equal(again, scores)
        if mode in ("shared", "heads"):  # it has the logits: no targets means the predicted class
            logits, predicted = loaded.predict_and_explain(batch["input_ids"], batch["attention_mask"])
            by_argmax = loaded(batch["input_ids"], batch["attention_mask"], targets=logits.argmax(dim=-1))
            assert torch.equal(predicted, by_argmax)
        else:
            with pytest.raises(AttexpError, match="needs the class to explain"):
                loaded(batch["input_ids"], batch["attention_mask"])
        with pytest.raises(AttexpError, match=r"targets \[1, 2\] do not name one class in 0..1"):
            loaded(batch["input_ids"], batch["attention_mask"], targets=torch.tensor([1, 2]))
    unlabelled = [{k: v for k, v in r.items() if k != "target"} for r in train]
    with pytest.raises(AttexpError, match="records have no 'target'"):
        distill(model, unlabelled, val, DistillSettings(head="class", **common), tmp_path / "none", "cpu")


@pytest.mark.parametrize("mode", ["shared", "copy"])
def test_class_head_explains_the_engines_target(classifier, tmp_path, mode):
    """Through the explain engine, a per-class explainer returns the column of the target policy's class."""
    model, tokenizer = classifier
    torch.manual_seed(0)
    if mode == "shared":
        explainer_model = SharedExplainerModel(model, branch_layers=1, head="class").eval()
    else:
        explainer_model = EmpiricalExplainerModel.from_classifier(model, head="class").eval()
    explainer_model.save_pretrained(tmp_path / "class" / "model")
    explainer = EmpiricalExplainer(EmpiricalConfig(model="class"), model, tokenizer, {"class": tmp_path / "class"})
    rows = [{"idx": i, "text": t, "label": i % 2} for i, t in enumerate(sentences(6, 4))]
    by_target = {}
    for target in (0, 1, "label"):
        by_target[target] = {r["idx"]: r for r in explain_all(explainer, model, tokenizer, rows, target)}
    for row in rows:
        fixed = [by_target[c][row["idx"]]["attributions"] for c in (0, 1)]
        assert fixed[0] != pytest.approx(fixed[1], abs=1e-4)  # the two classes' columns differ
        chosen = by_target["label"][row["idx"]]
        assert chosen["target"] == row["label"]
        assert chosen["attributions"] == pytest.approx(fixed[row["label"]], abs=1e-6)
