"""The explain stage's batching engine: records format, targets, resume, sentence pairs, bucketing, costs."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny import tiny_bert
from transformers import BertTokenizerFast

from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import Explainer, ExplainerConfig, Explanation
from attexp.explain.batching import explain_rows
from attexp.explain.gradient import LayerIntegratedGradientsExplainer, LIGConfig
from attexp.models.inputs import Batch

transformers.logging.set_verbosity_error()

WORDS = "the a movie film plot actors was is were good great fun bad awful boring not very and but".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
TEXTS = [
    "the movie was good",
    "a very boring and awful plot , not fun",
    "great",
    "the actors were bad but fun",
    "not good",
    "the film is very very good and the plot is great",
    "bad",
]
KEYS = {
    "idx",
    "text",
    "input_ids",
    "word_ids",
    "words",
    "logits",
    "tokens",
    "label",
    "predictions",
    "target",
    "attributions",
    "seconds",
    "forward_passes",
    "backward_passes",
    "batch",
}


@pytest.fixture
def tokenizer():
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})


@pytest.fixture
def model():
    return tiny_bert(len(VOCAB))


@pytest.fixture
def rows():
    return [{"idx": 100 + i, "text": text, "label": i % 3} for i, text in enumerate(TEXTS)]


class Spy(Explainer):
    """Scores each token by its id; remembers the batches and the grad mode it was called in."""

    def __init__(self, model, tokenizer, needs_gradients=False):
        super().__init__(ExplainerConfig(type="spy"), model, tokenizer, {})
        self.needs_gradients = needs_gradients
        self.batches: list[Batch] = []
        self.inference_mode: list[bool] = []

    def explain(self, batch: Batch) -> Explanation:
        self.batches.append(batch)
        self.inference_mode.append(torch.is_inference_mode_enabled())
        scores = batch.input_ids.float() * batch.attention_mask
        return Explanation(scores, [3] * len(batch), [1] * len(batch))


def collect(explainer, model, tokenizer, rows, **kwargs) -> list[list[dict]]:
    settings = {"batch_size": 3, "max_length": 32, "target": "predicted", "device": "cpu", "progress": False}
    settings.update(kwargs)
    return list(explain_rows(explainer, model, tokenizer, rows, **settings))


def test_records_follow_the_format(model, tokenizer, rows):
    batches = collect(Spy(model, tokenizer), model, tokenizer, rows)
    records = [record for batch in batches for record in batch]
    assert sorted(r["idx"] for r in records) == [row["idx"] for row in rows]
    by_idx = {row["idx"]: row for row in rows}
    for record in records:
        assert set(record) == KEYS
        row = by_idx[record["idx"]]
        expected_ids = tokenizer(row["text"])["input_ids"]
        assert record["input_ids"] == expected_ids
        assert record["tokens"] == tokenizer.convert_ids_to_tokens(expected_ids)
        assert record["tokens"][0] == "[CLS]" and record["tokens"][-1] == "[SEP]" and "[PAD]" not in record["tokens"]
        assert len(record["attributions"]) == len(record["input_ids"])
        assert record["attributions"] == [float(i) for i in expected_ids]  # the spy's scores, padding stripped
        assert record["label"] == row["label"]
        with torch.no_grad():
            probs = model(**tokenizer(row["text"], return_tensors="pt")).logits.softmax(-1)[0]
        assert record["predictions"] == pytest.approx(probs.tolist(), abs=1e-5)
        assert sum(record["predictions"]) == pytest.approx(1.0, abs=1e-5)
        assert torch.tensor(record["logits"]).softmax(-1).tolist() == pytest.approx(record["predictions"], abs=1e-6)
        assert record["text"] == row["text"]
        # one word id per token, None exactly at [CLS]/[SEP]; every word is a piece of the text as written
        assert len(record["word_ids"]) == len(record["tokens"])
        assert [w is None for w in record["word_ids"]] == [t in ("[CLS]", "[SEP]") for t in record["tokens"]]
        assert all(word in row["text"] for word in record["words"])
        assert record["target"] == max(range(3), key=lambda c: record["predictions"][c])
        assert isinstance(record["seconds"], float) and record["seconds"] > 0
        assert (record["forward_passes"], record["backward_passes"]) == (1 + 3, 1)


def test_length_buckets_are_deterministic_longest_first(model, tokenizer, rows):
    first = collect(Spy(model, tokenizer), model, tokenizer, rows, first_batch=5)
    again = collect(Spy(model, tokenizer), model, tokenizer, rows, first_batch=5)
    assert [[r["idx"] for r in b] for b in first] == [[r["idx"] for r in b] for b in again]
    assert [len(b) for b in first] == [3, 3, 1]
    assert [{r["batch"] for r in b} for b in first] == [{5}, {6}, {7}]
    lengths = [len(r["input_ids"]) for b in first for r in b]
    assert lengths == sorted(lengths, reverse=True)
    # dynamic padding: each batch is only as wide as its longest row
    spy = Spy(model, tokenizer)
    collect(spy, model, tokenizer, rows)
    for batch, records in zip(spy.batches, first, strict=True):
        assert batch.input_ids.shape[1] == max(len(r["input_ids"]) for r in records)
        assert len({r["seconds"] for r in records}) == 1  # one batch, one share of its wall time


@pytest.mark.parametrize("target", ["label", 2, "predicted"])
def test_targets(target, model, tokenizer, rows):
    records = [r for b in collect(Spy(model, tokenizer), model, tokenizer, rows, target=target) for r in b]
    for record in records:
        if target == "label":
            assert record["target"] == record["label"]
        elif target == "predicted":
            assert record["target"] == max(range(3), key=lambda c: record["predictions"][c])
        else:
            assert record["target"] == 2


def test_bad_targets_say_what_is_allowed(model, tokenizer, rows):
    with pytest.raises(ConfigError, match=r"target=3 is not valid.*0\.\.2"):
        collect(Spy(model, tokenizer), model, tokenizer, rows, target=3)
    unlabelled = [{"idx": 1, "text": "good"}]
    with pytest.raises(AttexpError, match="have no label"):
        collect(Spy(model, tokenizer), model, tokenizer, unlabelled, target="label")
    records = collect(Spy(model, tokenizer), model, tokenizer, unlabelled)[0]
    assert records[0]["label"] is None


def test_skip_idx_resumes(model, tokenizer, rows):
    done = {100, 103, 106}
    records = [r for b in collect(Spy(model, tokenizer), model, tokenizer, rows, skip_idx=done) for r in b]
    assert sorted(r["idx"] for r in records) == [row["idx"] for row in rows if row["idx"] not in done]
    everything = [row["idx"] for row in rows]
    assert collect(Spy(model, tokenizer), model, tokenizer, rows, skip_idx=everything) == []


def test_sentence_pairs_get_token_type_ids(model, tokenizer):
    pairs = [
        {"idx": 0, "text": "the movie", "text_pair": "was good", "label": 0},
        {"idx": 1, "text": "a plot", "text_pair": "not very fun and bad", "label": 1},
    ]
    spy = Spy(model, tokenizer)
    records = collect(spy, model, tokenizer, pairs)[0]
    types = spy.batches[0].token_type_ids
    assert types is not None and (types == 1).any()
    for record, row_types, mask in zip(records, types, spy.batches[0].attention_mask, strict=True):
        assert record["tokens"].count("[SEP]") == 2
        second = record["tokens"].index("[SEP]") + 1
        assert row_types[:second].eq(0).all() and row_types[second : int(mask.sum())].eq(1).all()
        pair = next(p for p in pairs if p["idx"] == record["idx"])
        assert record["input_ids"] == tokenizer(pair["text"], pair["text_pair"])["input_ids"]
    single = Spy(model, tokenizer)
    collect(single, model, tokenizer, [{"idx": 0, "text": "good", "label": 0}])
    assert (single.batches[0].token_type_ids == 0).all()
    mixed = [pairs[0], {"idx": 2, "text": "good", "label": 0}]
    with pytest.raises(AttexpError, match="idx 2"):
        collect(Spy(model, tokenizer), model, tokenizer, mixed)


def test_truncation_and_length_limit(model, tokenizer):
    long = [{"idx": 0, "text": " ".join(WORDS * 5), "label": 0}]
    record = collect(Spy(model, tokenizer), model, tokenizer, long, max_length=10)[0][0]
    assert len(record["input_ids"]) == 10 and record["tokens"][-1] == "[SEP]"
    with pytest.raises(ConfigError, match="max_position_embeddings=64"):
        collect(Spy(model, tokenizer), model, tokenizer, long, max_length=512)


def test_grad_mode_follows_the_explainer_flag(model, tokenizer, rows):
    without, with_grad = Spy(model, tokenizer), Spy(model, tokenizer, needs_gradients=True)
    collect(without, model, tokenizer, rows)
    collect(with_grad, model, tokenizer, rows)
    assert all(without.inference_mode) and not any(with_grad.inference_mode)


def test_explainer_breaking_the_contract_fails_loudly(model, tokenizer, rows):
    class Wrong(Spy):
        def explain(self, batch):
            return Explanation(batch.input_ids[:, :1].float(), [1] * len(batch), [0] * len(batch))

    with pytest.raises(AttexpError, match="shape"):
        collect(Wrong(model, tokenizer), model, tokenizer, rows)


def test_lig_costs_count_every_model_pass(model, tokenizer, rows):
    """The record's pass counts add up to the rows the model really ran (prediction forward included)."""
    forwarded = []
    original = model.forward

    def counting(*args, **kwargs):
        forwarded.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    model.forward = counting
    explainer = LayerIntegratedGradientsExplainer(LIGConfig(n_steps=4, return_delta=True), model, tokenizer, {})
    batches = collect(explainer, model, tokenizer, rows, target="label")
    records = [r for b in batches for r in b]
    assert sum(r["forward_passes"] for r in records) == sum(forwarded)
    assert all(r["forward_passes"] == 1 + 4 + 2 + 2 and r["backward_passes"] == 4 for r in records)
    # per-instance scalar extras travel with the record
    assert all(isinstance(r["extras"]["convergence_delta"], float) for r in records)
    # LIG scores from the engine equal LIG on the instance alone
    record = records[0]
    alone = Batch(
        torch.tensor([record["input_ids"]]),
        torch.ones(1, len(record["input_ids"]), dtype=torch.long),
        torch.zeros(1, len(record["input_ids"]), dtype=torch.long),
        torch.tensor([record["target"]]),
    )
    with torch.enable_grad():
        expected = explainer.explain(alone).attributions[0]
    torch.testing.assert_close(torch.tensor(record["attributions"]), expected, atol=1e-4, rtol=1e-3)
