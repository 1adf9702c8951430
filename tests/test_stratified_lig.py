"""LIG's `stratified` rule (attexp/explain/gradient/lig.py, `StratifiedIG`): one random point per stratum of the
path, an unbiased estimate of the exact integral where a fixed few-step rule is biased; seeded, chunking-proof,
priced as LIG-k."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from tiny import make_batch, tiny_bert, word_tokenizer

from attexp.explain.gradient.embeddings import IGConfig
from attexp.explain.gradient.lig import LayerIntegratedGradientsExplainer, LIGConfig

WORDS = "a good great movie the film was dull and bad story plot".split()


@pytest.fixture
def setting():
    tokenizer = word_tokenizer(WORDS)
    model = tiny_bert(tokenizer.vocab_size + 2)
    batch = make_batch(tokenizer, ["a good movie", "the film was a dull and bad story"])
    return model, tokenizer, batch


def lig(model, tokenizer, **config) -> LayerIntegratedGradientsExplainer:
    return LayerIntegratedGradientsExplainer(LIGConfig(**config), model, tokenizer, {})


def test_the_mean_of_draws_is_the_exact_integral_where_a_fixed_rule_is_biased(setting):
    model, tokenizer, batch = setting
    exact = lig(model, tokenizer, n_steps=200).explain(batch).attributions
    fixed = lig(model, tokenizer, n_steps=1).explain(batch).attributions  # Gauss-Legendre's one point: the midpoint
    draws = torch.stack(
        [lig(model, tokenizer, n_steps=1, method="stratified", seed=s).explain(batch).attributions for s in range(200)]
    )
    bias_fixed = (fixed - exact).abs().max()
    bias_mean = (draws.mean(0) - exact).abs().max()
    spread = (draws[0] - exact).abs().max()
    assert bias_fixed > 0.01  # the fixed rule's error on this model
    assert bias_mean < 0.2 * bias_fixed, (bias_mean, bias_fixed)  # averaging draws removes the error
    assert spread > bias_mean  # one draw alone is noisy
    # specials keep exactly 0 and padding stays 0, as with every rule
    assert torch.all(draws[:, :, 0] == 0) and torch.all(draws[:, 0, 5:] == 0)


def test_draws_are_seeded_chunking_proof_and_priced_as_lig_k(setting):
    model, tokenizer, batch = setting
    whole = lig(model, tokenizer, n_steps=3, method="stratified", seed=7).explain(batch)
    again = lig(model, tokenizer, n_steps=3, method="stratified", seed=7).explain(batch)
    chunked = lig(model, tokenizer, n_steps=3, method="stratified", seed=7, internal_batch_size=2).explain(batch)
    other = lig(model, tokenizer, n_steps=3, method="stratified", seed=8).explain(batch)
    assert torch.equal(whole.attributions, again.attributions)
    torch.testing.assert_close(chunked.attributions, whole.attributions, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(other.attributions, whole.attributions)
    fixed = lig(model, tokenizer, n_steps=3).explain(batch)
    assert whole.forward_passes == fixed.forward_passes and whole.backward_passes == fixed.backward_passes == [3, 3]


def test_the_rule_is_lig_s_alone():
    """(Its `seed` key leaves the hash of LIG jobs as it was: tests/test_hashing.py checks every such key.)"""
    with pytest.raises(ValidationError):
        IGConfig(method="stratified")
