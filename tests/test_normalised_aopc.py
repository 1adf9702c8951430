"""Normalised AOPC (Edin et al., 2025) against a hand-worked example and a brute force over every ordering, on
`ReadsWords` of test_faithfulness (a classifier whose decision is known: logit_1 = 2 * #good - #bad - 0.5)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_faithfulness import VOCAB, ReadsWords, p1, record
from transformers import BertTokenizerFast

from attexp.evaluate.model_scorer import ModelScorer, prepare
from attexp.evaluate.normalised import NAOPCConfig, NormalisedAOPC, exact_bounds, feature_groups
from attexp.evaluate.report import rankings, rankings_report

C = p1(1) - p1(0)  # what masking "good" takes from p(class 1)


@pytest.fixture
def tokenizer():
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})


def naopc(tokenizer, records, **config):
    scorer = ModelScorer(ReadsWords(tokenizer), tokenizer, "cpu", batch_size=16)
    metric = NormalisedAOPC(NAOPCConfig(**config))
    return metric.compute(records, scorer=scorer), scorer


def test_the_hand_worked_example_of_four_words(tokenizer):
    """'the movie was good': only masking 'good' moves p, by C. An ordering with 'good' at place j (1..4) has
    AOPC = (1/4) * sum over k of [good among the first k] * C = C * (5 - j) / 4: upper C (good first), lower C / 4
    (good last). Ranking good second: comprehensiveness C * 3/4, normalised (3/4 - 1/4) / (3/4) = 2/3; sufficiency
    reverses the ranking (good third): C * 2/4, normalised 1/3."""
    records = [
        record(tokenizer, 0, "the movie was good", [0.1, 0.2, 0.0, 0.9]),  # good first
        record(tokenizer, 1, "the movie was good", [0.1, 0.9, 0.0, 0.5]),  # good second
    ]
    result, _ = naopc(tokenizer, records)
    first, second = result.per_instance[0], result.per_instance[1]
    for values in (first, second):
        assert values["naopc_upper"] == pytest.approx(C)
        assert values["naopc_lower"] == pytest.approx(C / 4)
        assert values["naopc_exact"] == 1.0 and values["naopc_bound_inputs"] == 15  # 2^4 - 1 subsets
    assert first["aopc_comprehensiveness"] == pytest.approx(C)
    assert first["naopc_comprehensiveness"] == pytest.approx(1.0)
    assert first["aopc_sufficiency"] == pytest.approx(C / 4)
    assert first["naopc_sufficiency"] == pytest.approx(0.0)
    assert second["aopc_comprehensiveness"] == pytest.approx(C * 3 / 4)
    assert second["naopc_comprehensiveness"] == pytest.approx(2 / 3)
    assert second["aopc_sufficiency"] == pytest.approx(C / 2)
    assert second["naopc_sufficiency"] == pytest.approx(1 / 3)
    assert result.summary["naopc_comprehensiveness"] == pytest.approx((1 + 2 / 3) / 2)


def brute_force(gain: dict[frozenset, float], n: int) -> tuple[float, float]:
    totals = [
        sum(gain[frozenset(order[:k])] for k in range(1, n + 1)) / n for order in itertools.permutations(range(n))
    ]
    return max(totals), min(totals)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_bounds_equal_a_brute_force_over_every_ordering(seed):
    n = 5
    rng = np.random.default_rng(seed)
    gain = np.concatenate([[0.0], rng.normal(size=(1 << n) - 1)])
    by_set = {frozenset(j for j in range(n) if s >> j & 1): gain[s] for s in range(1 << n)}
    assert exact_bounds(gain, n) == pytest.approx(brute_force(by_set, n))


def test_beam_search_finds_the_exact_bounds_when_wide_enough_and_stays_inside_when_narrow(tokenizer):
    text = "good bad good the fun"  # interactions: two goods, one bad
    records = [record(tokenizer, 0, text, [0.3, 0.1, 0.2, 0.0, 0.4])]
    exact, _ = naopc(tokenizer, records)
    wide, _ = naopc(tokenizer, records, exact_max_features=0, beam_width=120)
    narrow, _ = naopc(tokenizer, records, exact_max_features=0, beam_width=1)
    e, w, g = exact.per_instance[0], wide.per_instance[0], narrow.per_instance[0]
    assert e["naopc_exact"] == 1.0 and w["naopc_exact"] == 0.0
    assert w["naopc_upper"] == pytest.approx(e["naopc_upper"]) and w["naopc_lower"] == pytest.approx(e["naopc_lower"])
    assert g["naopc_lower"] - 1e-12 <= g["naopc_upper"] <= e["naopc_upper"] + 1e-12
    assert g["naopc_lower"] >= e["naopc_lower"] - 1e-12
    assert w["aopc_comprehensiveness"] == pytest.approx(e["aopc_comprehensiveness"])
    # a greedy beam scores 1 + 2 + ... + 5 subsets per bound at most
    assert g["naopc_bound_inputs"] <= 2 * sum(range(1, 6))


def test_an_instance_of_64_features_masks_the_features_its_ranking_names(tokenizer):
    """64 words (bitmasks past 2^63): 'good' ranked first, so every prefix of the ranking masks it: AOPC = C."""
    words = ["the"] * 63 + ["good"]
    records = [record(tokenizer, 0, " ".join(words), [0.0] * 63 + [1.0])]
    result, _ = naopc(tokenizer, records, exact_max_features=0, beam_width=1)
    assert result.per_instance[0]["aopc_comprehensiveness"] == pytest.approx(C)
    assert result.per_instance[0]["aopc_sufficiency"] == pytest.approx(C / 64)  # reversed: 'good' masked last


def test_words_are_masked_together_and_specials_never(tokenizer):
    records = [record(tokenizer, 0, "the movie was good", [0.1, 0.2, 0.0, 0.9])]
    records[0]["word_ids"] = [None, 0, 0, 1, 2, None]  # "the movie" as one word, for the test
    scorer = ModelScorer(ReadsWords(tokenizer), tokenizer, "cpu")
    (inst,) = prepare(records, scorer)
    groups = feature_groups(inst, "words")
    assert [g.tolist() for g in groups] == [[1, 2], [3], [4]]
    assert [g.tolist() for g in feature_groups(inst, "tokens")] == [[1], [2], [3], [4]]
    result, _ = naopc(tokenizer, records)
    assert result.per_instance[0]["naopc_upper"] == pytest.approx(C)  # 3 features: good first
    assert result.per_instance[0]["naopc_lower"] == pytest.approx(C / 3)


def test_rankings_report_says_where_normalisation_changes_a_rank():
    rows = [
        {"explanations": "a", "aopc_comprehensiveness": 0.5, "naopc_comprehensiveness": 0.6, "seconds": 1.0},
        {"explanations": "b", "aopc_comprehensiveness": 0.4, "naopc_comprehensiveness": 0.9, "seconds": 2.0},
        {"explanations": "c", "aopc_comprehensiveness": 0.1, "naopc_comprehensiveness": 0.1, "seconds": 3.0},
    ]
    columns = ["explanations", "aopc_comprehensiveness", "naopc_comprehensiveness", "seconds"]
    result = rankings(rows, columns)
    assert result["columns"] == ["aopc_comprehensiveness", "naopc_comprehensiveness"]  # cost is not ranked
    assert result["ranks"]["a"] == {"aopc_comprehensiveness": 1.0, "naopc_comprehensiveness": 2.0}
    assert result["tau"]["aopc_comprehensiveness"]["naopc_comprehensiveness"] == pytest.approx(1 / 3)
    (change,) = result["changes"]
    assert [m["name"] for m in change["moves"]] == ["a", "b"]
    text = rankings_report(result)
    assert "naopc_comprehensiveness changes the rank aopc_comprehensiveness gives: a 1 -> 2, b 2 -> 1." in text
    # a perturbation suffix pairs the variant with its raw column of the same suffix
    padded = [{k.replace("comprehensiveness", "comprehensiveness_pad"): v for k, v in r.items()} for r in rows]
    (change,) = rankings(padded, [c.replace("comprehensiveness", "comprehensiveness_pad") for c in columns])["changes"]
    assert (change["column"], change["raw"]) == ("naopc_comprehensiveness_pad", "aopc_comprehensiveness_pad")
    # a file the normalised column has no value for moves no other file
    same = [dict(r, naopc_comprehensiveness=r["aopc_comprehensiveness"]) for r in rows]
    same[1]["naopc_comprehensiveness"] = None
    (change,) = rankings(same, columns)["changes"]
    assert change["moves"] == []
