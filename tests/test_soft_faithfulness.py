"""Soft-NC and Soft-NS (Zhao & Aletras, 2023) against their definition on tiny classifiers: with two content tokens
the min-max scores are exactly 0 and 1, so every Bernoulli mask is certain and the perturbed input can be written by
hand (a token's embedding zeroed or kept)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import tiny_bert, tiny_classifier, word_tokenizer

from attexp.evaluate.model_scorer import ModelScorer
from attexp.evaluate.soft import SoftConfig, SoftFaithfulness, embedding_output, normalised_scores

WORDS = ["good", "bad", "movie", "plot", "the", "was"]


def two_word_record(tokenizer, scores: tuple[float, float], target: int = 1, idx: int = 0) -> dict:
    ids = tokenizer("good movie")["input_ids"]  # [CLS] good movie [SEP]
    return {"idx": idx, "input_ids": ids, "target": target, "attributions": [0.0, *scores, 0.0], "label": None}


def probability(model, ids: list[int], zeroed: list[int], target: int, layer) -> float:
    """p(target) with the embedding output of positions `zeroed` set to 0 (by hand)."""

    def hook(module, args, output):
        output = output.clone()
        output[:, zeroed] = 0
        return output

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model(
                input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)
            ).logits
    finally:
        handle.remove()
    return float(logits.softmax(-1)[0, target])


@pytest.mark.parametrize("case", ["bert", "llama"])
def test_soft_nc_and_ns_follow_the_definition(case):
    segments = case == "bert"
    tokenizer = word_tokenizer(WORDS, segments=segments)
    model = (
        tiny_bert(len(tokenizer.vocab), seed=3) if case == "bert" else tiny_classifier("llama", len(tokenizer.vocab))
    )
    layer = embedding_output(model)
    assert (layer is model.bert.embeddings) if case == "bert" else (layer is model.get_input_embeddings())
    scorer = ModelScorer(model, tokenizer, "cpu")
    record = two_word_record(tokenizer, (0.9, -0.2))  # "good" s = 1, "movie" s = 0
    result = SoftFaithfulness(SoftConfig()).compute([record], scorer=scorer).per_instance[0]
    ids, target = record["input_ids"], 1
    p = probability(model, ids, [], target, layer)
    # comprehensiveness keeps a unit with probability 1 - s: "good" is zeroed, "movie" kept
    p_comp = probability(model, ids, [1], target, layer)
    # sufficiency keeps a unit with probability s: "good" kept, "movie" zeroed
    p_suff = probability(model, ids, [2], target, layer)
    empty = list(ids)
    empty[1:3] = [tokenizer.pad_token_id] * 2  # the content replaced by padding
    with torch.no_grad():
        p_empty = float(model(input_ids=torch.tensor([empty])).logits.softmax(-1)[0, target])
    s0 = 1 - max(0.0, p - p_empty) - 1e-4
    soft_c, soft_s = max(0.0, p - p_comp), 1 - max(0.0, p - p_suff)
    assert result["soft_comprehensiveness"] == pytest.approx(np.clip(soft_c / (1 - s0), 0, 1), abs=1e-6)
    assert result["soft_sufficiency"] == pytest.approx(np.clip((soft_s - s0) / (1 - s0), 0, 1), abs=1e-6)
    # the released code's directions swap the two masks
    official = SoftFaithfulness(SoftConfig(official=True)).compute([record], scorer=scorer).per_instance[0]
    p_code_comp = probability(model, ids, [0, 2, 3], target, layer)  # min-max: specials -> 0, "movie" -> 0
    assert official["soft_comprehensiveness_official"] == pytest.approx(
        np.clip(max(0.0, p - p_code_comp) / (1 - (1 - max(0.0, p - _all_zero_ids(model, ids, target)) - 1e-4)), 0, 1),
        abs=1e-6,
    )


def _all_zero_ids(model, ids: list[int], target: int) -> float:
    with torch.no_grad():
        return float(model(input_ids=torch.zeros(1, len(ids), dtype=torch.long)).logits.softmax(-1)[0, target])


def test_masks_are_seeded_per_instance_whatever_the_batch():
    tokenizer = word_tokenizer(WORDS)
    model = tiny_bert(len(tokenizer.vocab), seed=1)
    texts = ["good movie was the plot", "bad plot", "the movie was good and bad", "plot"]
    rng = np.random.default_rng(0)
    records = []
    for i, text in enumerate(texts):
        ids = tokenizer(text)["input_ids"]
        records.append(
            {"idx": i, "input_ids": ids, "target": i % 2, "attributions": rng.normal(size=len(ids)).tolist()}
        )
    metric = SoftFaithfulness(SoftConfig(samples=3, seed=7))
    one = metric.compute(records, scorer=ModelScorer(model, tokenizer, "cpu", batch_size=6)).per_instance
    many = metric.compute(records, scorer=ModelScorer(model, tokenizer, "cpu", batch_size=64)).per_instance
    alone = metric.compute(records[2:3], scorer=ModelScorer(model, tokenizer, "cpu")).per_instance
    flat = lambda values: [v for idx in sorted(values) for _, v in sorted(values[idx].items())]  # noqa: E731
    assert flat(one) == pytest.approx(flat(many), abs=1e-5)  # padding changes the float noise only
    assert flat(alone) == pytest.approx(flat({2: one[2]}), abs=1e-5)
    other = SoftFaithfulness(SoftConfig(samples=3, seed=8)).compute(records, scorer=ModelScorer(model, tokenizer))
    assert flat(other.per_instance) != pytest.approx(flat(one))  # the seed matters
    for values in one.values():
        assert 0.0 <= values["soft_comprehensiveness"] <= 1.0 and 0.0 <= values["soft_sufficiency"] <= 1.0


def test_score_normalisation():
    assert normalised_scores(np.array([2.0, -2.0, 0.0]), "minmax").tolist() == [1.0, 0.0, 0.5]
    assert normalised_scores(np.array([3.0, 3.0]), "minmax").tolist() == [0.5, 0.5]
    assert normalised_scores(np.array([0.0]), "sigmoid").tolist() == [0.5]
