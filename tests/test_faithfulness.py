"""Faithfulness metrics against answers computed by hand on a classifier whose decision is known.

`ReadsWords` is a two-class "model" whose class-1 logit is 2 per "good" minus 1 per "bad" minus 0.5, and
whose class-0 logit is 0: removing "good" is the only way to lower p(class 1) much, so an explanation that
ranks "good" first must have the largest comprehensiveness and zero sufficiency. Every expected number
below is written out from that formula. The evaluate job and the random explainer are tested end to end on
a micro pipeline (local data, tiny BERT) at the bottom.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tiny
import torch
from conftest import ROOT, files_under
from transformers import BertTokenizerFast

from attexp.config.loader import load_config
from attexp.errors import AttexpError
from attexp.evaluate.agreement import TopKOverlap, TopKOverlapConfig
from attexp.evaluate.faithfulness import (
    Degradation,
    DegradationConfig,
    Eraser,
    EraserConfig,
    LogOdds,
    LogOddsConfig,
)
from attexp.evaluate.ferret_metrics import FerretAOPC, FerretAOPCConfig, TauLOO, TauLOOConfig
from attexp.evaluate.metric_table import score_planned, score_runs
from attexp.evaluate.model_scorer import ModelScorer, prepare
from attexp.evaluate.normalised import NAOPCConfig, NormalisedAOPC
from attexp.evaluate.soft import SoftConfig, SoftFaithfulness
from attexp.explain.baseline import RandomConfig, RandomExplainer, random_scores
from attexp.models.inputs import Batch, length_bucketed_batches
from attexp.models.memo import row_key
from attexp.registry import EXPLAINERS, METRICS, load_all

WORDS = "the a movie was is good bad plot fun".split()
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def p1(good: int, bad: int = 0) -> float:
    """p(class 1) of ReadsWords for an input with `good` and `bad` occurrences."""
    return sigmoid(2 * good - bad - 0.5)


class ReadsWords(torch.nn.Module):
    """logit_1 = 2 * #good - #bad - 0.5 over attended tokens, logit_0 = 0 (a model whose decision is known)."""

    def __init__(self, tokenizer) -> None:
        super().__init__()
        self.good = tokenizer.convert_tokens_to_ids("good")
        self.bad = tokenizer.convert_tokens_to_ids("bad")

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        real = attention_mask.bool()
        logit = 2.0 * ((input_ids == self.good) & real).sum(-1) - ((input_ids == self.bad) & real).sum(-1) - 0.5
        return SimpleNamespace(logits=torch.stack([torch.zeros_like(logit), logit.float()], dim=-1))


@pytest.fixture
def tokenizer():
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})


@pytest.fixture
def scorer(tokenizer):
    return ModelScorer(ReadsWords(tokenizer), tokenizer, "cpu", batch_size=8)


def record(tokenizer, idx: int, text: str, word_scores: list[float], target: int = 1, label: int = 1) -> dict:
    """An explanation record with the given scores on the words ([CLS]/[SEP] get 0)."""
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(word_scores) + 2
    return {
        "idx": idx,
        "input_ids": ids,
        "tokens": tokenizer.convert_ids_to_tokens(ids),
        "label": label,
        "predictions": None,
        "target": target,
        "attributions": [0.0, *word_scores, 0.0],
        "seconds": 0.1,
        "forward_passes": 1,
        "backward_passes": 0,
        "batch": 0,
    }


GOOD_FIRST = [0.1, 0.2, 0.3, 0.9]  # "the movie was good": good ranked first
GOOD_LAST = [0.9, 0.8, 0.7, 0.1]
C = p1(1) - p1(0)  # the most p(class 1) can drop on "the movie was good"


# ------------------------------------------------------------------------------------------- ERASER


def test_eraser_right_token_is_maximally_comprehensive_and_sufficient(tokenizer, scorer):
    # bins 1, 5, 10, 20, 50% of 4 content tokens: k = ceil(...) = 1, 1, 1, 1, 2
    right = record(tokenizer, 0, "the movie was good", GOOD_FIRST)
    wrong = record(tokenizer, 1, "the movie was good", GOOD_LAST)
    result = Eraser(EraserConfig()).compute([right, wrong], scorer=scorer)
    assert result.per_instance[0]["comprehensiveness_bins"] == pytest.approx([C] * 5)
    assert result.per_instance[0]["comprehensiveness"] == pytest.approx(C)
    assert result.per_instance[0]["sufficiency"] == pytest.approx(0.0)
    # good ranked last: the top 1 or 2 tokens never include it
    assert result.per_instance[1]["comprehensiveness"] == pytest.approx(0.0)
    assert result.per_instance[1]["sufficiency_bins"] == pytest.approx([C] * 5)
    assert result.summary["comprehensiveness"] == pytest.approx(C / 2)
    assert result.summary["n"] == 2 and result.summary["skipped"] == 0
    assert result.curves["comprehensiveness"]["x"] == [1.0, 5.0, 10.0, 20.0, 50.0]
    assert result.curves["comprehensiveness"]["y"] == pytest.approx([C / 2] * 5)


def test_eraser_comprehensiveness_of_the_right_ranking_is_the_maximum_over_all_rankings(tokenizer, scorer):
    rankings = list(itertools.permutations([0.1, 0.2, 0.3, 0.4]))
    records = [record(tokenizer, i, "the movie was good", list(r)) for i, r in enumerate(rankings)]
    result = Eraser(EraserConfig()).compute(records, scorer=scorer)
    comp = {i: v["comprehensiveness"] for i, v in result.per_instance.items()}
    best = [i for i, r in enumerate(rankings) if r[3] == 0.4]  # good ranked first
    assert max(comp.values()) == pytest.approx(C)
    assert all(comp[i] == pytest.approx(C) for i in best)
    # with good second, only the 50% bin (k = 2) removes it: AOPC = C / 5
    second = [i for i, r in enumerate(rankings) if r[3] == 0.3]
    assert all(comp[i] == pytest.approx(C / 5) for i in second)
    # 24 rankings x 10 perturbations are 14 distinct inputs (4 without one token, 6 without two = with two,
    # 4 with one) plus the full input: run once each, 8 per forward (1 pass for the full input, 2 for the rest)
    assert scorer.rows == 15 and scorer.forward_passes == 3


def test_eraser_alti_variant_running_min_max_and_six_points(tokenizer, scorer):
    # "good bad movie", n = 3, bad ranked first: bins k = 1, 1, 1, 1, 2 remove bad, then bad and good
    r = record(tokenizer, 0, "good bad movie", [0.5, 0.9, 0.1])
    full, without_bad, neither = p1(1, 1), p1(1, 0), p1(0, 0)
    only_bad, both, nothing = p1(0, 1), p1(1, 1), p1(0, 0)
    plain = Eraser(EraserConfig()).compute([r], scorer=scorer).per_instance[0]
    assert plain["comprehensiveness_bins"] == pytest.approx([full - without_bad] * 4 + [full - neither])
    assert plain["comprehensiveness"] == pytest.approx((4 * (full - without_bad) + full - neither) / 5)
    assert plain["comprehensiveness_bins"][0] < 0  # removing the negative token raises p: a negative bin
    assert plain["sufficiency"] == pytest.approx(4 * (full - only_bad) / 5 + (full - both) / 5)

    alti = Eraser(EraserConfig(alti=True)).compute([r], scorer=scorer)
    values = alti.per_instance[0]
    # probabilities [full | without_bad x 4, neither] -> running min from the 0% point: [full x 4, neither]
    assert values["comprehensiveness_alti_bins"] == pytest.approx([0.0] * 4 + [full - neither])
    assert values["comprehensiveness_alti"] == pytest.approx((full - neither) / 6)
    # sufficiency: [nothing | only_bad x 4, both] -> running max from the 0% point: [nothing x 4, both]; the 0%
    # point starts the maximum but is not a term: 4 terms, not 5, over 6 (ALTI's aupc.py)
    assert full - nothing != pytest.approx(0.0)  # so a 0% term would show
    assert values["sufficiency_alti_bins"] == pytest.approx([full - nothing] * 4 + [full - both])
    assert values["sufficiency_alti"] == pytest.approx((4 * (full - nothing) + (full - both)) / 6)
    assert alti.curves["comprehensiveness_alti"]["x"] == [1.0, 5.0, 10.0, 20.0, 50.0]


def test_eraser_replacement_keeps_length_and_specials(tokenizer, scorer):
    r = record(tokenizer, 0, "the movie was good", GOOD_FIRST)
    instance = prepare([r], scorer)[0]
    assert instance.content.tolist() == [1, 2, 3, 4] and instance.order.tolist() == [4, 3, 2, 1]
    mask_id = tokenizer.mask_token_id
    ids, _ = instance.without(instance.order[:1], scorer.replacement_id("mask"))
    assert ids.tolist() == [r["input_ids"][i] if i != 4 else mask_id for i in range(6)]
    ids, _ = instance.without(instance.order[:2], None)
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["[CLS]", "the", "movie", "[SEP]"]
    ids, _ = instance.only(instance.order[:1], scorer.replacement_id("pad"))
    assert tokenizer.convert_ids_to_tokens(ids.tolist()) == ["[CLS]", "[PAD]", "[PAD]", "[PAD]", "good", "[SEP]"]
    masked = Eraser(EraserConfig(perturbation="mask")).compute([r], scorer=scorer)
    assert masked.summary["comprehensiveness_mask"] == pytest.approx(C)  # [MASK] is not "good" either


def test_specials_are_never_removed_and_their_scores_ignored(tokenizer, scorer):
    r = record(tokenizer, 0, "the movie was good", GOOD_LAST)
    r["attributions"][0] = r["attributions"][-1] = 100.0  # huge scores on [CLS] and [SEP]
    result = Eraser(EraserConfig()).compute([r], scorer=scorer)
    assert result.per_instance[0]["comprehensiveness"] == pytest.approx(0.0)  # as without the special scores
    only_specials = record(tokenizer, 1, "the", [0.3])
    only_specials["input_ids"] = [only_specials["input_ids"][0], only_specials["input_ids"][-1]]
    only_specials["attributions"] = [0.0, 0.0]
    result = Eraser(EraserConfig()).compute([r, only_specials], scorer=scorer)
    assert result.summary["n"] == 1 and result.summary["skipped"] == 1


# ------------------------------------------------------------------------------------------- ferret


def test_ferret_aopc_positive_scores_only_and_duplicate_rationales_skipped(tokenizer, scorer):
    # thresholds 10..100% of n = 4: k = 0, 0, 1, 1, 2, 2, 2, 3, 3, 4 -> distinct rationales at k = 1, 2, 3, 4
    right = record(tokenizer, 0, "the movie was good", GOOD_FIRST)
    assert [len(r) for r in FerretAOPC(FerretAOPCConfig()).rationales(prepare([right], scorer)[0])] == [1, 2, 3, 4]
    result = FerretAOPC(FerretAOPCConfig()).compute([right], scorer=scorer).per_instance[0]
    assert result["ferret_comprehensiveness"] == pytest.approx(C)
    assert result["ferret_sufficiency"] == pytest.approx(0.0)

    # good scored negative: with only_positive it never enters a rationale (k = 4 repeats k = 3 and is skipped)
    negative = record(tokenizer, 1, "the movie was good", [0.1, 0.2, 0.3, -0.5])
    pos = FerretAOPC(FerretAOPCConfig()).compute([negative], scorer=scorer).per_instance[1]
    assert pos["ferret_comprehensiveness"] == pytest.approx(0.0)
    assert pos["ferret_sufficiency"] == pytest.approx(C)  # 3 steps, each keeping only non-good tokens
    signed = FerretAOPC(FerretAOPCConfig(only_positive=False)).compute([negative], scorer=scorer).per_instance[1]
    assert signed["ferret_comprehensiveness"] == pytest.approx(C / 4)  # k = 4 removes good: 1 step of 4
    assert signed["ferret_sufficiency"] == pytest.approx(3 * C / 4)


# -------------------------------------------------------------------------------------- degradation


def test_degradation_morf_and_lerf_hand_computed(tokenizer, scorer):
    # n = 4, steps 9: tokens removed round(j / 9 * 4) = 0, 1, 1, 2, 2, 3, 3, 4, 4
    right = record(tokenizer, 0, "the movie was good", GOOD_FIRST, label=1)
    result = Degradation(DegradationConfig()).compute([right], scorer=scorer)
    values = result.per_instance[0]
    assert values["degradation_morf_probability_steps"] == pytest.approx([p1(1)] * 2 + [p1(0)] * 8)
    assert values["degradation_morf_probability"] == pytest.approx((p1(1) + 8 * p1(0)) / 9)
    assert values["degradation_morf_accuracy"] == pytest.approx(1 / 9)  # p1(0) < 0.5: class 0 once good is gone
    # least relevant first: good goes at the last two steps only
    assert values["degradation_lerf_probability_steps"] == pytest.approx([p1(1)] * 8 + [p1(0)] * 2)
    assert values["degradation_lerf_accuracy"] == pytest.approx(7 / 9)
    assert result.curves["degradation_morf_accuracy"]["x"] == pytest.approx([100 * j / 9 for j in range(10)])
    # against the gold label: with label 0 the accuracy curves flip
    flipped = record(tokenizer, 1, "the movie was good", GOOD_FIRST, label=0)
    values = Degradation(DegradationConfig()).compute([flipped], scorer=scorer).per_instance[1]
    assert values["degradation_morf_accuracy"] == pytest.approx(8 / 9)
    assert values["degradation_morf_probability"] == pytest.approx(1 - (p1(1) + 8 * p1(0)) / 9)


def test_degradation_official_lengths_count_the_specials_and_drop_repeated_steps(tokenizer, scorer):
    """The released IBA code's n is every token, [CLS] and [SEP] included: 6 for "the movie was good", so k =
    round(j / 9 * 6) capped at the 4 content tokens = 1, 1, 2, 3, 3, 4, 4, 4, 4, and the mean runs over the steps
    whose k is new (k = 1, 2, 3, 4). The default counts content tokens only: k = 0, 1, 1, 2, 2, 3, 3, 4, 4."""
    right = record(tokenizer, 0, "the movie was good", GOOD_FIRST, label=1)
    official = Degradation(DegradationConfig(lengths="official")).compute([right], scorer=scorer).per_instance[0]
    # most relevant first: good goes at the first step already
    assert official["degradation_morf_probability_official_steps"] == pytest.approx([p1(1)] + [p1(0)] * 9)
    assert official["degradation_morf_probability_official"] == pytest.approx(p1(0))
    # least relevant first: good goes only at k = 4 (steps 6..9): curve [p1(1)] x 6 (0% point included), [p1(0)] x 4
    assert official["degradation_lerf_probability_official_steps"] == pytest.approx([p1(1)] * 6 + [p1(0)] * 4)
    assert official["degradation_lerf_probability_official"] == pytest.approx((3 * p1(1) + p1(0)) / 4)
    content = Degradation(DegradationConfig()).compute([right], scorer=scorer).per_instance[0]
    assert content["degradation_morf_probability"] == pytest.approx((p1(1) + 8 * p1(0)) / 9)
    assert abs(content["degradation_morf_probability"] - official["degradation_morf_probability_official"]) > 0.04


# -------------------------------------------------------------------------------- tau-LOO, log-odds


def test_tau_loo_hand_computed(tokenizer, scorer):
    # leave-one-out importance: [0, 0, 0, C]; scores [0.1, 0.2, 0.3, 0.9]. tau-b: 3 concordant pairs, 3 pairs tied
    # in the importance only: 3 / sqrt((6 - 3) * 6)
    result = TauLOO(TauLOOConfig()).compute([record(tokenizer, 0, "the movie was good", GOOD_FIRST)], scorer=scorer)
    assert result.summary["tau_loo"] == pytest.approx(3 / math.sqrt(18))
    reverse = TauLOO(TauLOOConfig()).compute([record(tokenizer, 1, "the movie was good", GOOD_LAST)], scorer=scorer)
    assert reverse.summary["tau_loo"] == pytest.approx(-3 / math.sqrt(18))
    constant = record(tokenizer, 2, "the movie was fun", [0.1, 0.2, 0.3, 0.4])  # no good: importance all 0
    assert TauLOO(TauLOOConfig()).compute([constant], scorer=scorer).summary["skipped"] == 1


def test_log_odds_hand_computed(tokenizer, scorer):
    # top 20% of 4 tokens: ceil(0.8) = 1 token, replaced with [PAD]
    right = record(tokenizer, 0, "the movie was good", GOOD_FIRST)
    wrong = record(tokenizer, 1, "the movie was good", GOOD_LAST)
    result = LogOdds(LogOddsConfig()).compute([right, wrong], scorer=scorer)
    assert result.per_instance[0]["log_odds"] == pytest.approx(math.log(p1(0)) - math.log(p1(1)))
    assert result.per_instance[1]["log_odds"] == pytest.approx(0.0)


def test_top_k_overlap_hand_computed(tokenizer):
    a = record(tokenizer, 0, "the movie was good", [0.1, 0.2, 0.3, 0.9])
    b = record(tokenizer, 0, "the movie was good", [0.8, 0.1, 0.2, 0.9])
    # top-2 (specials excluded): a {good, was}, b {good, the} -> 1/2
    assert TopKOverlap(TopKOverlapConfig(k=2)).compute([a], [b]).summary["topk_overlap"] == pytest.approx(0.5)
    assert TopKOverlap(TopKOverlapConfig(fraction=0.25)).compute([a], [b]).summary["topk_overlap"] == 1.0
    assert TopKOverlap(TopKOverlapConfig(k=10)).compute([a], [b]).summary["topk_overlap"] == 1.0  # k capped at n


# ------------------------------------------------------------------------------- batching, errors


def tiny_bert(tokenizer):
    return tiny.tiny_bert(len(VOCAB), num_labels=2)


def random_records(tokenizer, count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 9))))
        n = len(tokenizer(text)["input_ids"]) - 2
        out.append(record(tokenizer, i, text, rng.normal(size=n).tolist(), target=int(rng.integers(0, 2))))
    return out


@pytest.mark.parametrize(
    "metric",
    [
        Eraser(EraserConfig()),
        Eraser(EraserConfig(alti=True, perturbation="mask")),
        FerretAOPC(FerretAOPCConfig()),
        Degradation(DegradationConfig()),
        TauLOO(TauLOOConfig()),
        LogOdds(LogOddsConfig()),
    ],
    ids=lambda m: m.config.type,
)
def test_batched_equals_a_per_instance_loop_with_fewer_passes(metric, tokenizer):
    model = tiny_bert(tokenizer)
    records = random_records(tokenizer, 6)
    batched = ModelScorer(model, tokenizer, "cpu", batch_size=64)
    together = metric.compute(records, scorer=batched)
    loop = ModelScorer(model, tokenizer, "cpu", batch_size=1, cache=False)
    for one in records:
        alone = metric.compute([one], scorer=loop)
        for key, value in alone.per_instance.get(one["idx"], {}).items():
            assert together.per_instance[one["idx"]][key] == pytest.approx(value, abs=1e-5), key
    assert batched.forward_passes < loop.forward_passes
    assert batched.rows <= loop.rows


def test_one_planned_pass_shares_the_inputs_of_every_metric_and_explainer(tokenizer):
    model = tiny_bert(tokenizer)
    records = random_records(tokenizer, 8)
    reversed_scores = [{**r, "attributions": [-a for a in r["attributions"]]} for r in records]
    runs = [("a", "x", records), ("b", "y", reversed_scores)]
    planned_only = [
        Eraser(EraserConfig()),
        FerretAOPC(FerretAOPCConfig()),
        TauLOO(TauLOOConfig()),
        LogOdds(LogOddsConfig(perturbation="delete")),
        Degradation(DegradationConfig()),
        NormalisedAOPC(NAOPCConfig()),  # short inputs: exact bounds, every subset planned
    ]
    scorer = ModelScorer(model, tokenizer, "cpu", batch_size=64)
    score_planned(runs, planned_only, scorer)
    asked = [row for _, _, rs in runs for m in planned_only for row in m.inputs(prepare(rs, scorer), scorer)]
    distinct = {row_key(*row) for row in asked}
    assert scorer.rows == len(distinct) < len(asked)  # the unperturbed and leave-one-out inputs are asked twice
    passes = scorer.forward_passes
    soft = SoftFaithfulness(SoftConfig())
    scores = score_runs(runs, [*planned_only, soft], None, scorer)
    empty = {row_key(*row) for _, _, rs in runs for row in soft.inputs(prepare(rs, scorer), scorer)} - distinct
    masked = sum(2 * len(soft.usable(prepare(rs, scorer))) for _, _, rs in runs)  # masked embeddings: not planned
    assert scorer.rows == len(distinct) + len(empty) + masked
    assert scorer.forward_passes > passes
    metrics = [*planned_only, soft]
    for name, _, rs in runs:
        for metric in metrics:
            alone = metric.compute(rs, scorer=ModelScorer(model, tokenizer, "cpu", batch_size=5)).per_instance
            for idx, values in alone.items():
                for key, value in values.items():
                    assert scores.per_instance[(name, idx)][key] == pytest.approx(value, abs=1e-6), (name, key)


def test_scorer_keeps_probabilities_near_one_apart(tokenizer):
    class Saturated(torch.nn.Module):  # logit_1 = 20 + the input's length: p(1) = 1 - e^-23 or 1 - e^-24
        def forward(self, input_ids, attention_mask, token_type_ids=None):
            logit = 20.0 + attention_mask.sum(-1).float()
            return SimpleNamespace(logits=torch.stack([torch.zeros_like(logit), logit], dim=-1))

    p = ModelScorer(Saturated(), tokenizer, "cpu").probabilities(
        [(np.array([2, 5, 3]), None), (np.array([2, 5, 6, 3]), None)]
    )
    assert p[0, 1] < p[1, 1] < 1.0  # float32 rounds both to 1: a tie the logits do not have
    assert p[1, 1] - p[0, 1] == pytest.approx(math.exp(-23) - math.exp(-24), rel=1e-6)


def test_scorer_deduplicates_and_counts(tokenizer):
    scorer = ModelScorer(ReadsWords(tokenizer), tokenizer, "cpu", batch_size=2)
    ids = np.array(tokenizer("the movie")["input_ids"])
    other = np.array(tokenizer("good")["input_ids"])
    out = scorer.probabilities([(ids, None), (other, None), (ids, None)])
    assert out.shape == (3, 2) and np.allclose(out[0], out[2])
    assert scorer.rows == 2 and scorer.forward_passes == 1
    scorer.probabilities([(ids, None)])  # cached
    assert scorer.rows == 2
    assert scorer.segments_of(np.array([2, 5, 3, 6, 7, 3])).tolist() == [0, 0, 0, 1, 1, 1]


def test_length_buckets_close_on_a_drop_in_length_once_they_hold_enough_rows():
    lengths = [5, 10, 1, 9, 5, 9, 5]
    assert length_bucketed_batches(lengths, 4, min_rows=2) == [[1, 3, 5], [0, 4, 6], [2]]
    assert length_bucketed_batches(lengths, 4, min_rows=4) == [[1, 3, 5, 0], [4, 6, 2]]
    assert length_bucketed_batches(lengths, 2, min_rows=1) == [[1, 3], [5], [0, 4], [6], [2]]
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 80, size=500).tolist()
    batches = length_bucketed_batches(lengths, 64)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(500))
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)
    for batch, following in zip(batches, batches[1:] + [None], strict=True):
        longest = lengths[batch[0]]
        assert len(batch) <= 64
        assert all(lengths[i] >= 0.9 * longest for i in batch[8:])  # past 8 rows, at most a tenth of padding
        if following is not None and len(batch) < 64:  # closed early only for a drop in length
            assert lengths[following[0]] < 0.9 * longest


def test_scorer_runs_rows_of_different_lengths_in_separate_forwards(tokenizer):
    scorer = ModelScorer(ReadsWords(tokenizer), tokenizer, "cpu", batch_size=64)
    long = np.array(tokenizer("the movie was good and the plot was great and fun")["input_ids"])
    short = np.array(tokenizer("bad")["input_ids"])
    rows = [(np.r_[ids[:1], [i], ids[1:]], None) for ids in (long, short) for i in range(5, 15)]  # 10 + 10, distinct
    out = scorer.probabilities(rows)
    assert scorer.forward_passes == 2 and scorer.rows == 20
    loop = ModelScorer(ReadsWords(tokenizer), tokenizer, "cpu", batch_size=1, cache=False)
    assert np.allclose(out, loop.probabilities(rows))


def test_errors_name_the_fix(tokenizer, scorer):
    with pytest.raises(AttexpError, match="no model was given"):
        Eraser(EraserConfig()).compute([record(tokenizer, 0, "good", [1.0])])
    broken = record(tokenizer, 0, "the movie", [0.1, 0.2])
    broken["attributions"] = [0.1]
    with pytest.raises(AttexpError, match="1 attributions for 4 input_ids"):
        Eraser(EraserConfig()).compute([broken], scorer=scorer)
    with pytest.raises(ValueError, match="strictly increasing fractions"):
        EraserConfig(bins=[0.5, 0.1])
    no_mask = ModelScorer(ReadsWords(tokenizer), SimpleNamespace(pad_token_id=0, mask_token_id=None), "cpu")
    with pytest.raises(AttexpError, match="mask_token_id"):
        no_mask.replacement_id("mask")


def test_metrics_are_registered():
    for name in ("eraser", "ferret_aopc", "degradation", "tau_loo", "log_odds", "topk_overlap"):
        assert name in METRICS
    assert METRICS.get("eraser").cls.needs_model and not METRICS.get("mse").cls.needs_model


# ---------------------------------------------------------------------------------- random explainer


def test_random_explainer_scores_real_tokens_only_seeded_per_instance(tokenizer):
    model = tiny_bert(tokenizer)
    explainer = RandomExplainer(RandomConfig(), model, tokenizer, {})
    enc = tokenizer(["the movie was good", "bad"], padding=True, return_tensors="pt")
    batch = Batch(enc["input_ids"], enc["attention_mask"], None, torch.tensor([0, 1]))
    out = explainer.explain(batch)
    scores = out.attributions
    assert out.forward_passes == [0, 0] and out.backward_passes == [0, 0]
    assert scores[1, 3:].eq(0).all()  # padding
    assert scores[:, 0].eq(0).all() and scores[0, 5] == 0 and scores[1, 2] == 0  # [CLS], [SEP]
    assert ((scores[0, 1:5] > 0) & (scores[0, 1:5] < 1)).all()
    alone = explainer.explain(Batch(enc["input_ids"][1:, :3], enc["attention_mask"][1:, :3], None, torch.tensor([1])))
    assert torch.equal(alone.attributions[0], scores[1, :3])  # same scores in any batch
    gaussian = RandomExplainer(RandomConfig(distribution="gaussian", seed=3), model, tokenizer, {}).explain(batch)
    assert not torch.equal(gaussian.attributions, scores)
    ids = np.array([2, 5, 6, 3])
    assert np.array_equal(random_scores(ids, ids < 4, 1), random_scores(ids, ids < 4, 1))
    assert not np.array_equal(random_scores(ids, ids < 4, 1), random_scores(ids, ids < 4, 2))


# ------------------------------------------------------------------------------------ evaluate job


SENTENCES = [
    ("a good fun movie", 1),
    ("good plot", 1),
    ("the movie was good", 1),
    ("fun and good", 1),
    ("a bad movie", 0),
    ("the plot was bad", 0),
    ("bad bad plot", 0),
    ("not fun , bad", 0),
]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> Path:
    """A micro pipeline: local data -> tiny BERT -> explain (lig, random) -> evaluate x2 -> visualize."""
    from attexp.cli import main

    base = tmp_path_factory.mktemp("faith")
    for split, repeat in (("train", 6), ("validation", 2), ("test", 2)):
        rows = [{"text": text, "label": label} for text, label in SENTENCES * repeat]
        (base / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    explain = {"job": "explain", "model": "t.train", "data": "t.data", "progress": False, "batch_size": 8}
    faithfulness = [
        {"type": "eraser"},
        {"type": "eraser", "alti": True},
        {"type": "ferret_aopc"},
        {"type": "degradation"},
        {"type": "tau_loo"},
        {"type": "log_odds"},
        {"type": "spearman"},
        {"type": "topk_overlap", "k": 2},
        {"type": "cost"},
        {"type": "f1"},
    ]
    config = {
        "jobs": [
            {
                "job": "download",
                "name": "t.data",
                "source": {
                    "type": "local",
                    "files": {s: str(base / f"{s}.jsonl") for s in ("train", "validation", "test")},
                },
            },
            {
                "job": "train",
                "name": "t.train",
                "data": "t.data",
                "model": {"type": "tiny", "vocab_size": 60, "hidden_size": 16, "intermediate_size": 32},
                "epochs": 10,
                "lr": 3e-3,
                "batch_size": 8,
                "patience": 100,
                "progress": False,
                "max_length": 16,
            },
            {**explain, "name": "t.lig", "explainer": {"type": "lig", "n_steps": 4}},
            {**explain, "name": "t.random", "explainer": {"type": "random"}},
            {
                "job": "evaluate",
                "name": "t.eval",
                "explanations": ["t.lig"],
                "reference": "t.lig",
                "metrics": faithfulness,
                "batch_size": 16,
                "wandb": {"enabled": True, "project": "attexp-tests"},
            },
            {
                "job": "evaluate",
                "name": "t.eval.explicit",
                "explanations": ["t.lig", "t.random"],
                "model": "t.train",
                "metrics": [{"type": "eraser"}],
                "plots": False,
            },
            {"job": "visualize", "name": "t.vis", "explanations": ["t.lig", "t.random"], "evaluation": "t.eval"},
        ]
    }
    path = base / "pipeline.json"
    path.write_text(json.dumps(config))
    assert main([str(path), "--base-dir", str(base)]) == 0
    return base


def test_evaluate_job_writes_records_summary_table_and_plots(evaluated):
    logs = evaluated / "logs" / "t.eval"
    metrics = json.loads((logs / "metrics.json").read_text())
    assert metrics["model"] == "t.train"  # resolved from the explain job's manifest
    results = metrics["results"]
    assert set(results) == {"t.lig", "random-floor"}
    for key in ("comprehensiveness", "sufficiency", "comprehensiveness_alti", "ferret_comprehensiveness"):
        assert key in metrics["table"]["columns"]
    assert results["random-floor"]["explainer"] == "random"
    # the tiny model separates the classes (by "good"/"bad"), and LIG finds those words better than chance
    table = {row[0]: dict(zip(metrics["table"]["columns"], row, strict=True)) for row in metrics["table"]["rows"]}
    assert table["t.lig"]["accuracy"] == results["t.lig"]["f1.accuracy"] == 1.0
    assert table["t.lig"]["comprehensiveness"] > table["random-floor"]["comprehensiveness"]
    assert results["t.lig"]["eraser.comprehensiveness"] == table["t.lig"]["comprehensiveness"]
    assert results["t.lig"]["spearman"] == pytest.approx(1.0)
    assert metrics["evaluation_cost"]["forward_passes"] > 0
    assert set(metrics["curves"]["t.lig"]) >= {"comprehensiveness", "degradation_morf_accuracy"}
    lines = [json.loads(line) for line in (logs / "instances.jsonl").read_text().splitlines()]
    assert {line["explanations"] for line in lines} == {"t.lig", "random-floor"}
    assert len([line for line in lines if line["explanations"] == "t.lig"]) == 16
    assert all(len(line["comprehensiveness_bins"]) == 5 for line in lines if "comprehensiveness_bins" in line)
    markdown = (logs / "table.md").read_text()
    assert "random-floor" in markdown and "comprehensiveness" in markdown and "_std" not in markdown
    # LIG on a model that reads two words beats the random ranking on 16 paired instances, and the table says so
    versus = metrics["random_floor"]["versus"]["t.lig"]
    assert metrics["random_floor"]["name"] == "random-floor"
    assert versus["comprehensiveness"]["beats"] and versus["comprehensiveness"]["n"] == 16
    assert versus["comprehensiveness"]["delta"] == pytest.approx(
        table["t.lig"]["comprehensiveness"] - table["random-floor"]["comprehensiveness"]
    )
    assert "- comprehensiveness: every explainer (1) beats the random floor." in markdown
    assert "spearman" not in versus and "seconds" not in versus  # agreement and cost have no random floor
    plots = sorted(p.name for p in (logs / "plots").glob("*.png"))
    assert "curve_comprehensiveness.png" in plots and "cost_vs_comprehensiveness.png" in plots
    assert all((logs / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert list((evaluated / "logs" / "wandb").glob("offline-run-*")), "the table and plots went to wandb"


def test_explicit_model_and_random_explain_job_replace_the_floor(evaluated):
    metrics = json.loads((evaluated / "logs" / "t.eval.explicit" / "metrics.json").read_text())
    assert metrics["model"] == "t.train"
    assert set(metrics["results"]) == {"t.lig", "t.random"}  # a random explain job is the floor: no extra row
    assert not (evaluated / "logs" / "t.eval.explicit" / "plots").exists()
    manifest = json.loads((evaluated / "logs" / "t.eval.explicit" / "manifest.json").read_text())
    assert "t.train" in manifest["upstream"]
    records = [json.loads(x) for x in (evaluated / "explanations/t.random/records.jsonl").read_text().splitlines()]
    assert all(r["forward_passes"] == 1 and r["backward_passes"] == 0 for r in records)  # the prediction only
    assert all(r["attributions"][0] == 0 and r["attributions"][-1] == 0 for r in records)


def test_visualize_summary_page(evaluated):
    folder = evaluated / "visualizations" / "t.vis"
    summary = (folder / "summary.html").read_text()
    assert "random-floor" in summary and "comprehensiveness" in summary
    assert summary.count("data:image/png;base64,") >= 2
    assert "http://" not in summary and "https://" not in summary
    assert 'href="summary.html"' in (folder / "index.html").read_text()
    # the comparison with the random floor, one row per explanations file, the LIG cells marked as beating it
    floor = summary[summary.index('<table id="floor">') :]
    floor = floor[: floor.index("</table>")]
    assert "<td>t.lig</td>" in floor and "random-floor</td>" not in floor
    assert floor.count('class="num beats"') >= 2 and "(p=" in floor


def test_evaluate_refuses_a_model_other_than_the_explained_one(evaluated, tmp_path, run_cli):
    import shutil

    base = tmp_path / "base"
    shutil.copytree(evaluated, base, ignore=shutil.ignore_patterns("logs", "visualizations"))
    shutil.copytree(base / "models" / "t.train", base / "models" / "t.other")
    manifest = json.loads((base / "models" / "t.other" / "manifest.json").read_text())
    (base / "models" / "t.other" / "manifest.json").write_text(json.dumps({**manifest, "name": "t.other"}))
    config = tmp_path / "eval.json"
    config.write_text(
        json.dumps(
            {
                "job": "evaluate",
                "name": "e",
                "explanations": ["t.lig"],
                "model": "t.other",
                "metrics": [{"type": "eraser"}],
            }
        )
    )
    code, _, err = run_cli(config, "--base-dir", base)
    assert code == 1
    assert "explain model 't.train', but `model` is 't.other'" in err


# --------------------------------------------------------------------------------------- report config


def test_report_pipeline_explains_with_every_registered_explainer_and_dry_runs(tmp_path, run_cli):
    load_all()
    config = ROOT / "configs" / "pipelines" / "rotten_tomatoes.report.jsonnet"
    plan = load_config(config, base_dir=tmp_path, check_upstream=False)
    explained = {job.explainer.type for job in plan.jobs if job.job == "explain" and job.split == "test"}
    missing = set(EXPLAINERS.names()) - explained
    assert not missing, f"add {sorted(missing)} to `explainers` in {config}"
    evaluate = next(job for job in plan.jobs if job.job == "evaluate")
    tested = {job.name for job in plan.jobs if job.job == "explain" and job.split == "test"}
    assert set(evaluate.explanations) == tested and evaluate.reference in tested
    assert {"eraser", "ferret_aopc", "degradation", "tau_loo", "log_odds", "cost"} <= {m.type for m in evaluate.metrics}
    visualize = next(job for job in plan.jobs if job.job == "visualize")
    assert visualize.evaluation == evaluate.name
    code, out, err = run_cli(config, "--base-dir", tmp_path, "--dry-run")
    assert code == 0, err
    assert f"evaluate {evaluate.name}: would run" in out
    assert files_under(tmp_path) == []


def test_versus_floor_paired_one_sided_in_the_better_direction():
    """Hand-made per-instance values: `good` is better than the floor on every instance in both directions,
    `same` equals it, `worse` is worse; the test is one-sided, so worse never 'beats' however large the gap."""
    from attexp.evaluate.report import floor_report, versus_floor

    floor = {i: {"comprehensiveness": 0.1 * i, "sufficiency": 0.5, "spearman": 0.0} for i in range(8)}
    runs = {
        "floor": floor,
        "good": {i: {"comprehensiveness": 0.1 * i + 0.2 + 0.01 * i, "sufficiency": 0.3 - 0.01 * i} for i in range(8)},
        "same": {i: dict(v) for i, v in floor.items()},
        "worse": {i: {"comprehensiveness": 0.1 * i - 0.3, "sufficiency": 0.9} for i in range(8)},
    }
    columns = ["comprehensiveness", "sufficiency", "spearman"]
    result = versus_floor(runs, "floor", columns)
    assert set(result) == {"good", "same", "worse"}
    good = result["good"]["comprehensiveness"]
    assert good["beats"] and good["n"] == 8
    assert good["delta"] == pytest.approx(np.mean([0.2 + 0.01 * i for i in range(8)]))
    assert good["p_value"] == pytest.approx(1 / 2**8)  # exact one-sided Wilcoxon: all 8 differences positive
    assert result["good"]["sufficiency"]["beats"]  # lower is better for sufficiency
    assert result["same"]["comprehensiveness"] == {"delta": 0.0, "p_value": 1.0, "n": 8, "beats": False}
    assert not result["worse"]["comprehensiveness"]["beats"] and not result["worse"]["sufficiency"]["beats"]
    assert "spearman" not in result["good"]  # not a faithfulness column
    text = floor_report(result, "floor", {"good": "lig", "same": "random", "worse": "bad"})
    assert "- comprehensiveness: 1 of 3 explainers beat the random floor; not: same (random), worse (bad)." in text


def test_plot_labels_drop_the_shared_parts_of_job_names():
    from attexp.plots import short_names

    names = ["rt.explain.lig1.minilm.test", "rt.explain.lig.minilm.test", "rt.explain.empirical.minilm.test"]
    assert short_names([*names, "random-floor"]) == {
        "rt.explain.lig1.minilm.test": "lig1",
        "rt.explain.lig.minilm.test": "lig",
        "rt.explain.empirical.minilm.test": "empirical",
        "random-floor": "random-floor",  # shares nothing: stays whole
    }
    assert short_names(["a.b.c", "a.b.c.d"]) == {"a.b.c": "c", "a.b.c.d": "c.d"}  # at least one part remains
    assert short_names(["only.one"]) == {"only.one": "only.one"}
