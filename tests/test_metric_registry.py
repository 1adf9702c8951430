"""Properties every metric promises, table-driven over the METRICS registry (as tests/test_explainers.py is over
EXPLAINERS).

A new metric enrols itself by registering (its package's `__init__` imports its module). Each one is built from
its config type's defaults (or the cheaper settings in FAST_SETTINGS) and run on the same explanation records of
a tiny BERT, against a reference that is a noisy copy of them, with the model's scorer where it asks for one.
What the `Metric` base class declares must hold: a reference-needing metric refuses to run without one, a
model-needing metric without a scorer; results are MetricResults keyed by the records' idx, independent of the
records' order and the same on a second run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny import tiny_bert, word_tokenizer

from attexp.errors import AttexpError
from attexp.evaluate.base import Metric, MetricResult
from attexp.evaluate.model_scorer import ModelScorer
from attexp.registry import METRICS, load_all

load_all()

WORDS = "the a movie film plot was is good great fun bad awful boring not very and but".split()
TEXTS = [
    "the movie was good",
    "a very boring and awful plot",
    "great fun",
    "the plot was not good but the film was fun",
    "bad",
    "not very great",
]
FAST_SETTINGS: dict[str, dict] = {"masking_game": {"max_steps": 4}, "tau_loo": {}}


@pytest.fixture(scope="module")
def setting():
    """Records of a tiny BERT's predictions with seeded scores, a noisy reference, and the model's scorer."""
    torch.manual_seed(0)
    tokenizer = word_tokenizer(WORDS)
    model = tiny_bert(len(tokenizer), seed=0, num_labels=2).eval()
    rng = np.random.default_rng(0)
    records, reference = [], []
    for idx, text in enumerate(TEXTS):
        ids = tokenizer(text)["input_ids"]
        with torch.no_grad():
            probabilities = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0].tolist()
        scores = rng.normal(size=len(ids))
        record = {
            "idx": idx * 3 + 1,  # not 0..n-1, so that position and idx are told apart
            "input_ids": ids,
            "tokens": tokenizer.convert_ids_to_tokens(ids),
            "label": idx % 2,
            "predictions": probabilities,
            "target": int(np.argmax(probabilities)),
            "attributions": scores.tolist(),
            "seconds": 0.5 + idx,
            "forward_passes": 3,
            "backward_passes": 1,
        }
        records.append(record)
        reference.append({**record, "attributions": (scores + rng.normal(scale=0.5, size=len(ids))).tolist()})
    return records, reference, ModelScorer(model, tokenizer, "cpu", batch_size=8)


def build(name: str) -> Metric:
    entry = METRICS.get(name)
    return entry.cls(entry.config_type(**FAST_SETTINGS.get(name, {})))


def run(metric: Metric, setting, records=None) -> MetricResult:
    all_records, reference, scorer = setting
    return metric.compute(
        all_records if records is None else records,
        reference if metric.needs_reference else None,
        scorer=scorer if metric.needs_model else None,
    )


NAMES = METRICS.names()


def test_every_metric_is_enrolled():
    assert len(NAMES) >= 12, NAMES


@pytest.mark.parametrize("name", NAMES)
def test_declares_what_it_needs(name):
    cls = METRICS.get(name).cls
    assert issubclass(cls, Metric), f"{name} does not derive from attexp.evaluate.base.Metric"
    for flag in ("needs_reference", "needs_model", "uses_attributions"):
        assert isinstance(getattr(cls, flag), bool)
    assert cls.registered_name == name


@pytest.mark.parametrize("name", NAMES)
def test_result_is_keyed_by_the_records_idx(name, setting):
    records = setting[0]
    result = run(build(name), setting)
    assert isinstance(result, MetricResult)
    assert result.summary, "a metric reports at least one number"
    assert set(result.per_instance) <= {r["idx"] for r in records}
    n = result.summary.get("n")
    if n is not None:
        assert isinstance(n, int) and 0 < n <= len(records)
    for value in result.summary.values():
        assert isinstance(value, int | float) and not isinstance(value, bool)


@pytest.mark.parametrize("name", NAMES)
def test_same_result_twice_and_in_any_order(name, setting):
    metric = build(name)
    first = run(metric, setting).summary
    again = run(metric, setting).summary
    shuffled = run(metric, setting, records=list(reversed(setting[0]))).summary
    for summary in (again, shuffled):
        assert summary.keys() == first.keys()
        for key, value in first.items():
            other = summary[key]
            assert (math.isnan(value) and math.isnan(other)) or other == pytest.approx(value, rel=1e-9, abs=1e-12), key


@pytest.mark.parametrize("name", [n for n in NAMES if METRICS.get(n).cls.needs_reference])
def test_refuses_to_run_without_its_reference(name, setting):
    records, _, scorer = setting
    with pytest.raises(AttexpError, match="reference"):
        build(name).compute(records, None, scorer=scorer)


@pytest.mark.parametrize("name", [n for n in NAMES if METRICS.get(n).cls.needs_model])
def test_refuses_to_run_without_the_model(name, setting):
    records, reference, _ = setting
    with pytest.raises(AttexpError, match="model"):
        build(name).compute(records, reference, scorer=None)


@pytest.mark.parametrize("name", [n for n in NAMES if METRICS.get(n).cls.uses_attributions])
def test_attributions_matter(name, setting):
    """A metric that says it reads attributions gives another answer when they are reversed."""
    records = setting[0]
    flipped = [{**r, "attributions": [-a for a in r["attributions"]]} for r in records]
    metric = build(name)
    before, after = run(metric, setting).summary, run(metric, setting, records=flipped).summary
    changed = [k for k in before if k in after and not _same(before[k], after[k])]
    assert changed, f"{name}: reversing every score changed nothing in {sorted(before)}"


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)
