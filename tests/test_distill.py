"""The empirical explainer (Schwarzenberg et al. 2021): model properties, save/load, and distillation."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from attexp.distill.empirical.model import HEAD_SETTINGS, EmpiricalExplainerModel
from attexp.distill.empirical.training import (
    DistillSettings,
    distill,
    encode_records,
    evaluate_explainer,
    token_type_ids_from_sep,
)
from attexp.errors import AttexpError
from attexp.models.sources import TinyModel, TinyModelConfig
from attexp.train.engines import pad_collate

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
