"""Every layout of `attexp.models.layouts` (the BERT family, the Llama-style decoders, ModernBERT), table-driven over
`tiny.LAYOUT_CASES`: a tiny random model per case, each checked against the model's own computation.

- the encoder reproduces the model's logits (eager and sdpa), the attention it records is the model's own
  `output_attentions`, and the head reads where the model reads (CLS, the last real token, the mean);
- raw attention and rollout are the read row of the model's own attention;
- ALTI's decomposition sums to the block's output (the LayerNorm output, post-norm; the residual stream after
  attention, pre-norm) in float64 to 1e-10 and float32 to 1e-4;
- AttAttr is complete per layer;
- every explainer that supports the architecture runs on it, and a batch of 8 mixed lengths gives what each
  instance gives alone (padding side and the decoder's read position);
- head gates mask a head of every layout.
Adding a layout is one entry in `LAYOUTS` and one in `tiny.LAYOUT_CASES`.
"""

from __future__ import annotations

import copy

import pytest
import torch
import transformers
from test_explainers import hooks, make_explainer, run
from tiny import LAYOUT_CASES, make_batch, tiny_classifier, word_tokenizer

from attexp.analyze.heads import head_mask
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution
from attexp.explain.attention import ALTI, ALTIConfig, RawAttention, RawAttentionConfig, Rollout, RolloutConfig
from attexp.explain.attention import decompose as alti_decompose
from attexp.models.encoder import Encoder
from attexp.models.layouts import LAYOUTS
from attexp.registry import EXPLAINERS

transformers.logging.set_verbosity_error()

CASES = list(LAYOUT_CASES)
WORDS = "the a movie film plot actors was is were good great fun bad awful boring not very and but".split()
TEXTS = [
    "the movie was good",
    "a very boring and awful plot , not fun",
    "great",
    "the actors were bad but fun",
    "not good",
    "the plot is very very boring and the actors were awful",
    "fun film",
    "a great movie but a boring plot",
]  # 8 mixed lengths


def tokenizer_for(case: str):
    return word_tokenizer(WORDS, segments=LAYOUT_CASES[case][0] in {"bert", "distilbert"})


def setup(case: str, attention: str = "eager", texts=TEXTS):
    tokenizer = tokenizer_for(case)
    model = tiny_classifier(case, len(tokenizer.vocab), attention=attention)
    return model, tokenizer, make_batch(tokenizer, texts)


def model_inputs(model, batch) -> dict:
    inputs = batch.model_inputs()
    if model.config.model_type == "distilbert":
        inputs.pop("token_type_ids", None)
    return inputs


def read_weights(model, batch) -> torch.Tensor:
    """Where the model's head reads, written out independently: [B, T] weights over positions."""
    mask = batch.attention_mask.float()
    if model.config.model_type == "modernbert" and model.config.classifier_pooling == "mean":
        return mask / mask.sum(1, keepdim=True)
    weights = torch.zeros_like(mask)
    if model.config.model_type in {"llama", "qwen2", "qwen3", "mistral", "gemma"}:
        weights[torch.arange(len(batch)), batch.attention_mask.sum(1) - 1] = 1  # right padding: the last real token
    else:
        weights[:, 0] = 1
    return weights


def own_attentions(model, batch) -> list[torch.Tensor]:
    reference = copy.deepcopy(model)  # output_attentions installs capture hooks: keep them off `model`
    with torch.no_grad():
        return list(reference(**model_inputs(model, batch), output_attentions=True).attentions)


def test_every_layout_has_a_case():
    covered = {LAYOUT_CASES[case][0] for case in CASES}
    for layout in LAYOUTS:
        assert covered & layout.model_types, f"add a tiny config of layout {layout.name!r} to tiny.LAYOUT_CASES"


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("case", CASES)
def test_encoder_reproduces_the_model(case, attention):
    model, _, batch = setup(case, attention)
    encoder = Encoder(model)
    with torch.no_grad():
        expected = model(**model_inputs(model, batch)).logits
        got = encoder.logits(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        hidden = encoder.embed(batch.input_ids, batch.token_type_ids)
        context = encoder.context(batch.attention_mask, hidden.dtype, batch.input_ids)
        with encoder.attention():
            below = encoder.run(hidden, context, 0, 1)
        read = encoder.head(encoder.read_last(below, context))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(read, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(context.read, read_weights(model, batch))
    assert model.config._attn_implementation == attention  # switched for the block only
    assert hooks(model) == []


@pytest.mark.parametrize("case", CASES)
def test_trace_is_the_models_own_attention(case):
    model, _, batch = setup(case)
    expected = own_attentions(model, batch)
    with torch.no_grad():
        trace = Encoder(model).trace(batch.input_ids, batch.attention_mask, batch.token_type_ids, values=True)
    real = batch.attention_mask.bool()
    assert len(trace.probs) == len(expected) == 2
    for got, want in zip(trace.probs, expected, strict=True):
        torch.testing.assert_close(got.transpose(1, 2)[real], want.transpose(1, 2)[real], atol=1e-6, rtol=1e-5)
    assert trace.values[0].shape == (len(batch), 2, batch.input_ids.shape[1], 16)  # one value per query head
    if LAYOUT_CASES[case][0] in {"llama", "qwen2", "qwen3", "mistral", "gemma"}:  # causal: nothing above the diagonal
        for probs in trace.probs:  # (padding rows can see nothing, and spread evenly: left out)
            assert float(torch.triu(probs, diagonal=1).transpose(1, 2)[real].abs().max()) == 0


@pytest.mark.parametrize("case", CASES)
def test_raw_attention_and_rollout_are_the_read_row_of_the_models_attention(case):
    model, tokenizer, batch = setup(case)
    attentions, read = own_attentions(model, batch), read_weights(model, batch)
    raw = RawAttention(RawAttentionConfig(layer=-1), model, tokenizer, {}).explain(batch).attributions
    expected = torch.einsum("bq,bqk->bk", read, attentions[-1].mean(1)) * batch.attention_mask
    torch.testing.assert_close(raw, expected, atol=1e-6, rtol=1e-5)
    real = batch.attention_mask.bool()
    product = None
    for probs in attentions:
        mixed = probs.mean(1) + torch.eye(probs.shape[-1])
        mixed = mixed / mixed.sum(-1, keepdim=True) * (real[:, :, None] & real[:, None, :])
        product = mixed if product is None else mixed @ product
    rolled = Rollout(RolloutConfig(), model, tokenizer, {}).explain(batch).attributions
    torch.testing.assert_close(rolled, torch.einsum("bq,bqk->bk", read, product), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(rolled.sum(1), torch.ones(len(batch)), atol=1e-5, rtol=0)


def block_outputs(model, encoder: Encoder, batch) -> list[torch.Tensor]:
    """Each layer's attention-block output captured while the model's own layer modules run: the first LayerNorm's
    output (post-norm), or the layer's input plus the attention output projection's output (pre-norm).

    The layers run through `Encoder.logits` (equal to the model's forward: tested above) because transformers'
    eager attention of the decoders takes its softmax in float32 even for a float64 model, which would bound a
    float64 reconstruction at ~1e-6; attexp's attention computes it in the model's dtype."""
    captured, inputs, handles = [], [], []
    for layer in encoder.layers:
        if encoder.layout.pre_norm:
            handles.append(
                layer.module.register_forward_pre_hook(
                    lambda module, args, kwargs: inputs.append(args[0] if args else kwargs["hidden_states"]),
                    with_kwargs=True,
                )
            )
            handles.append(layer.output.register_forward_hook(lambda module, args, output: captured.append(output)))
        else:
            handles.append(layer.norm.register_forward_hook(lambda module, args, output: captured.append(output)))
    try:
        with torch.no_grad():
            encoder.logits(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    finally:
        for handle in handles:
            handle.remove()
    return [x + out for x, out in zip(inputs, captured, strict=True)] if inputs else captured


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("case", CASES)
def test_alti_decomposition_reconstructs_the_block_output(case, dtype, tolerance):
    model, _, batch = setup(case)
    model = model.to(dtype)
    encoder = Encoder(model)
    expected = block_outputs(model, encoder, batch)
    worst = 0.0
    with torch.no_grad():
        trace = encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids, values=True)
        for index, layer in enumerate(encoder.layers):
            for i, n in enumerate(batch.attention_mask.sum(1).tolist()):
                pick = slice(i, i + 1)
                vectors, remainder = alti_decompose(
                    layer,
                    trace.inputs[index][pick, :n],
                    trace.probs[index][pick, :, :n, :n],
                    trace.values[index][pick, :, :n],
                    pre_norm=encoder.layout.pre_norm,
                )
                error = (vectors.sum(2) + remainder - expected[index][pick, :n]).abs().max()
                worst = max(worst, float(error))
    assert worst < tolerance, (case, dtype, worst)


@pytest.mark.parametrize("case", CASES)
def test_alti_rows_sum_to_one_and_a_decoder_never_looks_ahead(case):
    model, tokenizer, batch = setup(case)
    out = ALTI(ALTIConfig(return_matrices=True), model, tokenizer, {}).explain(batch)
    matrices, real = out.extras["contributions"], batch.attention_mask.bool()
    rows = matrices.sum(-1)  # [B, L, T]
    torch.testing.assert_close(rows[real[:, None, :].expand_as(rows)], torch.ones(int(real.sum()) * 2))
    torch.testing.assert_close(out.attributions.sum(1), torch.ones(len(batch)), atol=1e-5, rtol=0)
    if LAYOUT_CASES[case][0] in {"llama", "qwen2", "qwen3", "mistral", "gemma"}:
        assert float(torch.triu(matrices, diagonal=1).abs().max()) == 0


@pytest.mark.parametrize("case", CASES)
def test_attattr_is_complete_per_layer(case):
    model, tokenizer, batch = setup(case)
    every = torch.arange(len(batch))
    reader = AttentionAttribution(AttAttrConfig(), model, tokenizer, {})
    with torch.no_grad():
        trace = reader.encoder.trace(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        gaps = []
        for layer in range(2):
            probs, inputs = trace.probs[layer], trace.inputs[layer]
            full = reader.target_probability(batch, layer, probs, every, inputs)
            gaps.append(full - reader.target_probability(batch, layer, torch.zeros_like(probs), every, inputs))
    gap = torch.stack(gaps, dim=1)  # F(A_l) - F(0): [B, L]
    assert gap.abs().max() > 1e-3  # something to be complete about
    totals = {}
    for rule in ("left", "right"):
        config = AttAttrConfig(steps=40, rule=rule, return_maps=True)
        maps = AttentionAttribution(config, model, tokenizer, {}).explain(batch).extras["maps"]
        totals[rule] = maps.sum(dim=(2, 3, 4))  # [B, L]
    trapezoid = (totals["left"] + totals["right"]) / 2
    assert (trapezoid - gap).abs().max() < 5e-2 * gap.abs().max(), (case, trapezoid, gap)


def supported(case: str) -> list[str]:
    model_type = LAYOUT_CASES[case][0]
    names = []
    for name in EXPLAINERS.names():
        limited = EXPLAINERS.get(name).cls.architectures
        if limited is None or model_type in limited:
            names.append(name)
    return names


@pytest.mark.parametrize(
    ("case", "name"), [(case, name) for case in CASES if case not in ("bert", "distilbert") for name in supported(case)]
)
def test_a_batch_of_mixed_lengths_equals_each_instance_alone(case, name, tmp_path):
    model, tokenizer, batch = setup(case)
    explainer = make_explainer(name, model, tokenizer, tmp_path)
    torch.manual_seed(0)
    together = run(explainer, batch)
    real = batch.attention_mask.bool()
    assert torch.isfinite(together.attributions).all() and (together.attributions[~real] == 0).all()
    assert hooks(model) == []
    if not explainer.deterministic:
        return  # stochastic: the output depends on the RNG state, hence on the batch (checked: it runs)
    for i, text in enumerate(TEXTS):
        alone = run(explainer, make_batch(tokenizer, [text], [int(batch.targets[i])]))
        n = int(batch.attention_mask[i].sum())
        assert alone.attributions.shape[1] == n
        torch.testing.assert_close(together.attributions[i, :n], alone.attributions[0], atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("case", ["llama", "modernbert"])
def test_masking_every_head_of_a_pre_norm_layer_leaves_only_its_mlp(case):
    model, _, batch = setup(case)
    encoder = Encoder(model)
    masked = torch.zeros(2, 2, dtype=torch.bool)
    masked[1] = True
    with torch.no_grad(), head_mask(encoder, masked):
        got = model(**model_inputs(model, batch)).logits
    with torch.no_grad():  # by hand: layer 1 is x + bias + mlp(norm(x + bias)), its attention output zeroed
        hidden = encoder.embed(batch.input_ids)
        context = encoder.context(batch.attention_mask, hidden.dtype, batch.input_ids)
        with encoder.attention():
            hidden = encoder.run(hidden, context, 0, 1)
        layer = encoder.layers[1].module
        bias = encoder.layers[1].output.bias
        hidden = hidden + (0 if bias is None else bias)
        if case == "llama":
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        else:
            hidden = hidden + layer.mlp(layer.mlp_norm(hidden))
        expected = encoder.classify(hidden, context)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert hooks(model) == []


def test_a_decoder_without_a_config_pad_id_takes_the_tokenizers_and_without_any_is_refused():
    from attexp.errors import AttexpError
    from attexp.explain.batching import explain_rows

    tokenizer = tokenizer_for("llama")
    model = tiny_classifier("llama", len(tokenizer.vocab))
    model.config.pad_token_id = None  # as many decoder checkpoints ship: the tokenizer has one, the config none
    rows = [{"idx": i, "text": text, "label": 0} for i, text in enumerate(TEXTS)]
    explainer = make_explainer("occlusion", model, tokenizer, None)
    settings = dict(batch_size=8, max_length=32, target="predicted", device="cpu", progress=False)
    records = [r for batch in explain_rows(explainer, model, tokenizer, rows, **settings) for r in batch]
    assert model.config.pad_token_id == tokenizer.pad_token_id
    for record in records:  # a batch of 8 mixed lengths, each prediction the model's on its text alone
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([record["input_ids"]])).logits[0].softmax(-1)
        torch.testing.assert_close(torch.tensor(record["predictions"]), alone, atol=1e-5, rtol=1e-4)
    model.config.pad_token_id = None
    tokenizer.pad_token = None
    with pytest.raises(AttexpError, match="neither its config nor its tokenizer has a pad token.*eos_token"):
        list(explain_rows(explainer, model, tokenizer, rows, **settings))


@pytest.mark.parametrize("case", CASES)
def test_where_the_head_reads_has_one_answer_from_the_layout(case):
    """`head_reads` (what padding, the explainers' read rows and the trainer follow) is the layout's answer, and the
    pad id of a batch follows from it: a decoder's config pad id, an encoder's tokenizer's."""
    from attexp.models.inputs import batch_pad_id, reads_last_token
    from attexp.models.layouts import head_reads

    model, tokenizer, _ = setup(case)
    assert head_reads(model) == Encoder(model).reads
    assert reads_last_token(model) == (LAYOUT_CASES[case][0] in {"llama", "qwen2", "qwen3", "mistral", "gemma"})
    model.config.pad_token_id = 1  # differs from the tokenizer's: only a head that reads the last token follows it
    assert batch_pad_id(model, tokenizer) == (1 if reads_last_token(model) else tokenizer.pad_token_id)


def test_a_classifier_of_no_layout_reads_where_its_head_type_says():
    gpt2 = transformers.GPT2ForSequenceClassification(
        transformers.GPT2Config(vocab_size=20, n_embd=16, n_layer=1, n_head=2, n_positions=32, pad_token_id=0)
    )
    from attexp.models.layouts import head_reads

    assert head_reads(gpt2) == "last"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nan_logits_of_a_sliding_window_decoder_in_float64_are_refused_with_the_fix(dtype):
    """transformers' eager attention gives a right-padded text of a sliding-window decoder NaN logits in float64 (a
    padded position that sees only padding); `attexp.explain` refuses them, naming the cause and the fix, rather
    than writing NaN predictions and a target chosen from them. float32 gives finite records equal to each text
    alone."""
    import attexp
    from attexp.errors import AttexpError

    tokenizer = tokenizer_for("mistral")
    model = tiny_classifier("mistral", len(tokenizer.vocab)).to(dtype)
    texts = ["the good film " * 4 + "plot", "good"]  # the short one is padded beyond the window of 3
    if dtype == torch.float64:
        with pytest.raises(AttexpError, match=r"idx \[1\].*sliding-window decoder in float64.*float32 or bfloat16"):
            attexp.explain(model, tokenizer, texts, "saliency", max_length=32, device="cpu")
        return
    records = attexp.explain(model, tokenizer, texts, "saliency", max_length=32, device="cpu").records
    for record in records:
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([record["input_ids"]])).logits[0].softmax(-1)
        torch.testing.assert_close(torch.tensor(record["predictions"]), alone, atol=1e-5, rtol=1e-4)


def test_long_inputs_are_cut_into_passes_that_fit_and_give_the_same_lig():
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from attexp.explain.batching import rows_per_forward
    from attexp.explain.captum_base import gradient_max_tokens

    base_sizes = AutoConfig.for_model("modernbert", hidden_size=768, num_hidden_layers=22, max_position_embeddings=8192)

    class Sized(torch.nn.Module):  # a model of ModernBERT-base's sizes, without its weights
        config = base_sizes

    assert rows_per_forward(gradient_max_tokens(Sized(), None), 4096) == 1  # one 4,096-token row per pass
    assert gradient_max_tokens(Sized(), 123) == 123  # a configured budget wins
    tokenizer = tokenizer_for("modernbert")
    config = AutoConfig.for_model(
        "modernbert",
        vocab_size=len(tokenizer.vocab),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=1024,
        local_attention=16,
        num_labels=2,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        cls_token_id=2,
        sep_token_id=3,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    text = " ".join(TEXTS * 16)  # 674 tokens: beyond BERT's 512
    batch = make_batch(tokenizer, [text, TEXTS[1]], [0, 1])
    assert batch.input_ids.shape[1] > 512
    one_pass = make_explainer("lig", model, tokenizer, None, max_tokens_per_forward=1 << 30)
    cut = make_explainer("lig", model, tokenizer, None, max_tokens_per_forward=batch.input_ids.shape[1])  # 1 row
    together, rowwise = run(one_pass, batch), run(cut, batch)
    torch.testing.assert_close(rowwise.attributions, together.attributions, atol=1e-5, rtol=1e-4)
    assert rowwise.forward_passes == together.forward_passes  # the passes are counted the same, however cut


def test_a_tokenizer_that_would_not_come_back_from_its_folder_is_refused_before_training():
    from attexp.errors import AttexpError
    from attexp.models.loading import check_tokenizer_round_trip

    tokenizer = tokenizer_for("llama")
    check_tokenizer_round_trip(tokenizer, tiny_classifier("llama", len(tokenizer.vocab)), TEXTS)  # comes back as is
    qwen2 = tiny_classifier("qwen2", len(tokenizer.vocab))  # transformers loads any qwen2 folder's as Qwen2Tokenizer
    with pytest.raises(AttexpError, match="comes back from its saved folder as a Qwen2Tokenizer"):
        check_tokenizer_round_trip(tokenizer, qwen2, TEXTS)
