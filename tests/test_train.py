"""The ignite fine-tuning loop: batching, metrics, convergence, early stopping and resume."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from sklearn.metrics import f1_score

from attexp.models.sources import TinyModel, TinyModelConfig
from attexp.train.batches import LengthBucketSampler, encode_rows, pad_collate
from attexp.train.fine_tune import evaluate_classifier, fine_tune
from attexp.train.settings import ClassifierSettings

POSITIVE = ["good", "great", "superb", "lovely", "fine"]
NEGATIVE = ["bad", "awful", "poor", "dull", "ugly"]
NEUTRAL = ["the", "movie", "film", "was", "plot", "acting", "really", "quite", "a", "story", "and", "cast"]


def toy_rows(n: int, seed: int) -> list[dict]:
    """A separable task: the label says whether the one sentiment word in a sentence is positive."""
    rng = random.Random(seed)
    rows = []
    for idx in range(n):
        label = rng.randint(0, 1)
        words = rng.choices(NEUTRAL, k=rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
        rows.append({"idx": idx, "text": " ".join(words), "label": label})
    return rows


TRAIN, VAL, TEST = toy_rows(256, 0), toy_rows(64, 1), toy_rows(64, 2)


def tiny_classifier(num_labels: int = 2, seed: int = 0):
    config = TinyModelConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    names = [f"label{i}" for i in range(num_labels)]
    return TinyModel(config).load(num_labels, names, [r["text"] for r in TRAIN], Path("unused"), seed)


def settings(**changes) -> ClassifierSettings:
    base = {"epochs": 3, "batch_size": 16, "lr": 2e-3, "warmup_ratio": 0.0, "progress": False, "max_length": 32}
    return ClassifierSettings(**{**base, **changes})


def test_encode_rows_pairs_and_dynamic_padding():
    _, tokenizer = tiny_classifier()
    rows = [
        {"idx": 7, "text": "a good movie", "text_pair": "the plot", "label": 1},
        {"idx": 9, "text": "dull", "text_pair": "a really quite poor story and cast", "label": 0},
    ]
    features = encode_rows(rows, tokenizer, max_length=64)
    assert [f["idx"] for f in features] == [7, 9] and [f["label"] for f in features] == [1, 0]
    assert all(set(f["token_type_ids"]) == {0, 1} for f in features)
    batch = pad_collate(features, pad_token_id=tokenizer.pad_token_id)
    lengths = [len(f["input_ids"]) for f in features]
    assert batch["input_ids"].shape == (2, max(lengths))  # padded to the longest in the batch only
    assert batch["attention_mask"].sum(1).tolist() == lengths
    short = lengths.index(min(lengths))
    assert (batch["input_ids"][short, min(lengths) :] == tokenizer.pad_token_id).all()
    assert batch["token_type_ids"][short, min(lengths) :].eq(0).all()
    assert batch["labels"].tolist() == [1, 0]
    assert max(len(f["input_ids"]) for f in encode_rows(rows, tokenizer, max_length=6)) == 6


def test_length_buckets_cover_every_row_once_and_reshuffle_per_epoch():
    lengths = [random.Random(i).randint(2, 40) for i in range(300)]
    sampler = LengthBucketSampler(lengths, batch_size=8, shuffle=True, seed=1, bucket_batches=4)
    first = list(sampler)
    assert len(first) == len(sampler) == 38
    assert sorted(i for batch in first for i in batch) == list(range(300))
    assert first == list(sampler)  # same epoch, same order
    sampler.set_epoch(1)
    assert list(sampler) != first
    # within a batch lengths are close: sorted inside chunks of 32 rows
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first) / len(first)
    assert spread < 10
    ordered = list(LengthBucketSampler(lengths, batch_size=8, shuffle=False))
    flat = [lengths[i] for batch in ordered for i in batch]
    assert flat == sorted(lengths)


def test_fine_tune_learns_a_separable_task(tmp_path):
    model, tokenizer = tiny_classifier()
    epochs = []
    result = fine_tune(
        model, tokenizer, TRAIN, VAL, settings(epochs=4), tmp_path / "ckpt", "cpu", on_epoch=epochs.append
    )
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    assert set(epochs[0]) == {"epoch", "train_loss", "val_accuracy", "val_f1", "seconds"}
    assert result.history == epochs and result.epochs_run == 4 and result.resumed_from_epoch == 0
    assert result.best_val_accuracy >= 0.9 and result.best_val_f1 >= 0.9
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert result.best_checkpoint.is_file() and f"_{result.best_epoch}_" in result.best_checkpoint.name
    assert not model.training
    test = evaluate_classifier(model, tokenizer, TEST, batch_size=32, max_length=32, device="cpu")
    assert test["n"] == 64 and test["accuracy"] >= 0.9 and test["loss"] < 0.69


def three_classes(rows: list[dict]) -> list[dict]:
    """Relabel: 2 when the sentence mentions the story, else the sentiment (an imbalanced 3-class task)."""
    return [dict(r, label=2 if "story" in r["text"].split() else r["label"]) for r in rows]


def test_weighted_f1_agrees_with_sklearn(tmp_path):
    model, tokenizer = tiny_classifier(num_labels=3, seed=1)
    # a half-trained model whose predictions vary and are often wrong
    fine_tune(model, tokenizer, three_classes(TRAIN), three_classes(VAL), settings(patience=5), tmp_path, "cpu")
    rows = three_classes(TEST)
    metrics = evaluate_classifier(model, tokenizer, rows, batch_size=16, max_length=32, device="cpu")
    with torch.no_grad():
        predicted = [int(model(**tokenizer(r["text"], return_tensors="pt")).logits.argmax()) for r in rows]
    truth = [r["label"] for r in rows]
    assert len(set(predicted)) >= 2 and predicted != truth  # the per-class weighting matters
    expected = f1_score(truth, predicted, average="weighted", zero_division=0)
    assert metrics["f1_weighted"] == pytest.approx(expected, abs=1e-9)
    assert metrics["f1_weighted"] != pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))
    assert metrics["accuracy"] == pytest.approx(sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(rows))


def test_early_stopping_when_validation_does_not_improve(tmp_path):
    model, tokenizer = tiny_classifier()
    result = fine_tune(model, tokenizer, TRAIN, VAL, settings(epochs=6, lr=0.0, patience=2), tmp_path, "cpu")
    assert result.stopped_early and result.epochs_run == 3 and result.best_epoch == 1


def test_resume_continues_at_the_next_epoch(tmp_path):
    straight, tokenizer = tiny_classifier()
    uninterrupted = fine_tune(straight, tokenizer, TRAIN, VAL, settings(patience=5), tmp_path / "a", "cpu")

    def killed_after_first_epoch(entry: dict) -> None:
        if entry["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")

    first, tokenizer = tiny_classifier()
    with pytest.raises(KeyboardInterrupt):
        fine_tune(first, tokenizer, TRAIN, VAL, settings(patience=5), tmp_path / "b", "cpu", killed_after_first_epoch)
    assert [p.name for p in (tmp_path / "b").glob("last_*.pt")] == ["last_checkpoint_1.pt"]
    # leftovers of a kill in the middle of saving: an older state and a best model the state does not know
    (tmp_path / "b" / "last_checkpoint_0.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "b" / "best_model_9_val_f1_weighted=0.9999.pt").write_bytes(b"not a checkpoint")

    seen: list[dict] = []
    resumed_model, tokenizer = tiny_classifier()  # a fresh process would start from fresh weights
    resumed = fine_tune(resumed_model, tokenizer, TRAIN, VAL, settings(patience=5), tmp_path / "b", "cpu", seen.append)
    assert resumed.resumed_from_epoch == 1
    assert [e["epoch"] for e in seen] == [2, 3]
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3]
    for a, b in zip(resumed.history, uninterrupted.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_f1"] == pytest.approx(b["val_f1"], abs=1e-6)
    assert resumed.best_epoch == uninterrupted.best_epoch
    for a, b in zip(resumed_model.state_dict().values(), straight.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert len(list((tmp_path / "b").glob("*.pt"))) == 2  # one best model, one resumable state

    # a finished run is not trained again; the best weights are loaded back
    again_seen: list[dict] = []
    again_model, tokenizer = tiny_classifier()
    again = fine_tune(
        again_model, tokenizer, TRAIN, VAL, settings(patience=5), tmp_path / "b", "cpu", again_seen.append
    )
    assert again_seen == [] and again.history == resumed.history
    for a, b in zip(again_model.state_dict().values(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
