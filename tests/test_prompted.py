"""Prompted classifiers (attexp.models.prompted): a causal LM read through a template and label words is a
classifier whose logits are the label words' next-token logits, every explainer attributes the text's tokens only,
and the prompted pipeline runs from a config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny import byte_bpe_tokenizer, tiny_causal_lm, word_tokenizer

import attexp
from attexp.errors import AttexpError
from attexp.explain.prompted import OverPrompt, at_text, build_explainer
from attexp.models.inputs import Batch
from attexp.models.loading import load_classifier
from attexp.models.prompted import PROMPT_FILE, LabelWordsHead, PromptedClassifier, prompted
from attexp.registry import EXPLAINERS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
CORPUS = [
    "a great movie , truly great and moving",
    "a terrible film with bad acting",
    "fine",
    "Review: the plot is dull\nSentiment: negative",
    "Review: a delight\nSentiment: positive",
] * 4
TEXTS = ["a great movie", "bad acting , a terrible film and a dull plot", "fine"]
HEAD = LabelWordsHead(template="Review: {text}\nSentiment:", labels={"neg": " negative", "pos": " positive"})


def bpe_model(model_type: str = "qwen2", seed: int = 0) -> tuple[PromptedClassifier, object]:
    tokenizer = byte_bpe_tokenizer(CORPUS)
    return prompted(tiny_causal_lm(model_type, tokenizer, seed=seed), tokenizer, HEAD).eval(), tokenizer


def wordpiece_model(model_type: str = "llama") -> tuple[PromptedClassifier, object]:
    words = sorted({w.lower() for text in CORPUS for w in text.replace("\n", " ").split()} | {"review", "sentiment"})
    tokenizer = word_tokenizer(words + [":"], segments=False)
    return prompted(tiny_causal_lm(model_type, tokenizer, seed=1), tokenizer, HEAD).eval(), tokenizer


def by_hand(model: PromptedClassifier, tokenizer, text: str) -> torch.Tensor:
    """The label words' next-token logits of the LM after the prompt, built as one id sequence by hand."""
    ids = tokenizer(text)["input_ids"]
    lead, trail = model.lead, model.trail
    words = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    sequence = ids[:lead] + words("Review:") + ids[lead : len(ids) - trail] + words("\nSentiment:")
    logits = model.lm(input_ids=torch.tensor([sequence])).logits[0, -1]
    return logits[[words(" negative")[0], words(" positive")[0]]]


@pytest.mark.parametrize(
    "build", [("qwen2", "bpe"), ("llama", "bpe"), ("gemma", "bpe"), ("mistral", "bpe"), ("llama", "wordpiece")]
)
def test_logits_are_the_label_words_next_token_logits_after_the_prompt(build):
    model_type, tokenizer_kind = build
    model, tokenizer = bpe_model(model_type) if tokenizer_kind == "bpe" else wordpiece_model(model_type)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
        embeds = model.get_input_embeddings()(encoded["input_ids"])
        from_embeds = model(inputs_embeds=embeds, attention_mask=encoded["attention_mask"]).logits
        expected = torch.stack([by_hand(model, tokenizer, text) for text in TEXTS])
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(from_embeds, expected, atol=1e-5, rtol=1e-5)
    # the whole prompt read by the decoder classifier that shares the LM's weights gives the same logits
    whole, where = model.prompt_batch(Batch(encoded["input_ids"], encoded["attention_mask"], None, torch.zeros(3)), 0)
    with torch.no_grad():
        torch.testing.assert_close(model.classifier(**whole.model_inputs()).logits, expected, atol=1e-5, rtol=1e-5)
    # every text token is found where it sits in the whole prompt
    for i in range(len(TEXTS)):
        kept = where[i] >= 0
        assert torch.equal(whole.input_ids[i, where[i][kept]], encoded["input_ids"][i][kept])
    assert model.config.num_labels == 2 and model.config.id2label == {0: "neg", 1: "pos"}


def test_the_rules_of_the_template_and_the_label_words():
    tokenizer = byte_bpe_tokenizer(CORPUS)
    lm = tiny_causal_lm("qwen2", tokenizer)
    model = prompted(lm, tokenizer, HEAD)
    assert (model.lead, model.trail) == (0, 0)  # a byte-level BPE frames no text with specials
    # whitespace at the end of the prefix is dropped: the prefix's last token is the colon
    assert tokenizer.convert_ids_to_tokens(model.prefix_ids.tolist())[-1] == ":"
    # a newline at the end of the prefix is its own token and stays (chat formats need it); a space does not
    newline = prompted(lm, tokenizer, LabelWordsHead(template="Review:\n{text}", labels=HEAD.labels))
    assert tokenizer.convert_ids_to_tokens(newline.prefix_ids.tolist())[-1] == "Ċ"
    with pytest.raises(AttexpError, match="returns its logits only"):
        model(input_ids=torch.tensor([[5, 6]]), output_hidden_states=True)
    # the max length left to the text is the LM's less the template's tokens
    assert model.config.max_position_embeddings == lm.config.max_position_embeddings - model.template_tokens
    # multi-token label words are scored by their first token
    long = LabelWordsHead(template="{text} =", labels={"neg": " terrible film", "pos": " great movie"})
    first = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in (" terrible film", " great movie")]
    assert prompted(lm, tokenizer, long).classifier.score.token_ids.tolist() == first
    clash = LabelWordsHead(template="{text}", labels={"neg": " great acting", "pos": " great movie"})
    with pytest.raises(AttexpError, match="start with the same token"):
        prompted(lm, tokenizer, clash)
    with pytest.raises(AttexpError, match=r"the dataset's classes are \['negative', 'positive'\]"):
        prompted(lm, tokenizer, HEAD, ["negative", "positive"])
    reordered = prompted(lm, tokenizer, HEAD, ["pos", "neg"])
    assert reordered.config.id2label == {0: "pos", 1: "neg"}
    with pytest.raises(ValueError, match="exactly once"):
        LabelWordsHead(template="Review: the text", labels={"a": " a", "b": " b"})
    with pytest.raises(ValueError, match="at least 2 classes"):
        LabelWordsHead(template="{text}", labels={"a": " a"})


def test_a_saved_prompted_classifier_loads_back_as_one(tmp_path):
    model, tokenizer = bpe_model("llama")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / PROMPT_FILE).read_text())
    assert saved == {"template": HEAD.template, "labels": HEAD.labels}
    loaded, loaded_tokenizer = load_classifier(tmp_path)
    assert isinstance(loaded, PromptedClassifier)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**encoded).logits, model(**encoded).logits)
    # the classes follow the dataset's order where a job gives it
    swapped, _ = load_classifier(tmp_path, label_names=["pos", "neg"])
    with torch.no_grad():
        torch.testing.assert_close(swapped(**encoded).logits, model(**encoded).logits.flip(-1))
    # a plain causal LM folder with a head given
    plain = tmp_path / "lm"
    model.lm.save_pretrained(plain)
    tokenizer.save_pretrained(plain)
    again, _ = load_classifier(plain, head=HEAD)
    with torch.no_grad():
        torch.testing.assert_close(again(**encoded).logits, model(**encoded).logits)


NO_TEXT = {"a": " a", "c": " c"}
GRADIENT = ["lig", "ig", "saliency", "input_x_gradient", "deeplift", "gradient_shap"]
PERTURBATION = ["occlusion", "feature_ablation", "lime", "kernel_shap", "shapley_sampling"]
INSIDE = ["raw_attention", "rollout", "alti", "attattr", "iba"]


@pytest.mark.parametrize("name", GRADIENT + PERTURBATION + INSIDE + ["random"])
def test_every_explainer_attributes_the_text_tokens_only(name):
    model, tokenizer = bpe_model()
    options = {"n_samples": 8} if name in ("lime", "kernel_shap", "gradient_shap", "shapley_sampling") else {}
    result = attexp.explain(model, tokenizer, TEXTS, name, device="cpu", max_length=48, **options)
    for record in result.records:
        ids = tokenizer(record["text"])["input_ids"]
        assert record["input_ids"] == ids  # the text's tokens, no template token
        assert len(record["attributions"]) == len(ids)
        assert record["words"] == record["text"].split()  # word ids of the text as written
        assert all(isinstance(a, float) for a in record["attributions"])
    if name != "random":  # some token of some text gets a score
        assert any(abs(a) > 0 for r in result.records for a in r["attributions"])


def test_lig_is_complete_over_the_text():
    """LIG's attributions over the text tokens add up to f(text) - f(baseline text) under the same prompt."""
    model, tokenizer = bpe_model()
    result = attexp.explain(model, tokenizer, TEXTS, "lig", device="cpu", max_length=48, n_steps=200, output="logits")
    for record in result.records:
        ids = torch.tensor([record["input_ids"]])
        baseline = torch.full_like(ids, tokenizer.pad_token_id)
        with torch.no_grad():
            logits = model(input_ids=torch.cat([ids, baseline])).logits[:, record["target"]]
        gap = logits[0] - logits[1]
        assert sum(record["attributions"]) == pytest.approx(float(gap), abs=2e-3)


@pytest.mark.parametrize("name", INSIDE)
def test_inside_explainers_run_over_the_whole_prompt_read_back_at_the_text(name):
    model, tokenizer = bpe_model()
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    batch = Batch(encoded["input_ids"], encoded["attention_mask"], None, torch.tensor([0, 1, 1]))
    config = EXPLAINERS.get(name).config_type.model_validate({"type": name})
    explainer = build_explainer(EXPLAINERS.get(name).cls, config, model, tokenizer, {})
    assert isinstance(explainer, OverPrompt)
    direct = EXPLAINERS.get(name).cls(config, model.classifier, tokenizer, {})
    whole, where = model.prompt_batch(batch, int(model.config.pad_token_id))
    torch.manual_seed(0)
    got = explainer.explain(batch).attributions
    torch.manual_seed(0)
    expected = direct.explain(whole).attributions  # [B, W]
    for i in range(len(TEXTS)):
        kept = where[i] >= 0
        torch.testing.assert_close(got[i][kept], expected[i, where[i][kept]])
        assert torch.all(got[i][~kept] == 0)


def test_at_text_reads_matrices_on_both_positional_dimensions():
    where = torch.tensor([[0, 2, -1], [1, -1, -1]])
    values = torch.arange(2 * 4 * 4, dtype=torch.float).view(2, 1, 4, 4)
    out = at_text(values, where, 4)
    assert out.shape == (2, 1, 3, 3)
    assert out[0, 0, 1, 0] == values[0, 0, 2, 0] and out[0, 0, 0, 1] == values[0, 0, 0, 2]
    assert out[1, 0, 0, 0] == values[1, 0, 1, 1] and torch.all(out[0, 0, 2] == 0) and torch.all(out[1, 0, :, 1:] == 0)
    delta = torch.tensor([0.5, 0.25])
    assert at_text(delta, where, 4) is delta


def test_the_prompted_pipeline_runs_shrunk(tmp_path, run_cli):
    code, _, err = run_cli(FIXTURES / "configs" / "pipeline.prompted.small.jsonnet", "--base-dir", tmp_path)
    assert code == 0, err
    model_dir = tmp_path / "models" / "rt.train.prompted" / "model"
    labels = json.loads((model_dir / PROMPT_FILE).read_text())["labels"]
    assert labels == {"negative": " negative", "positive": " positive"}
    model, tokenizer = load_classifier(model_dir)
    assert isinstance(model, PromptedClassifier) and model.config.id2label == {0: "negative", 1: "positive"}
    table = (tmp_path / "logs" / "rt.evaluate.prompted" / "table.md").read_text()
    for name in GRADIENT + PERTURBATION + INSIDE + ["random"]:
        assert f"rt.explain.{name}.prompted.test " in table
        folder = tmp_path / "explanations" / f"rt.explain.{name}.prompted.test"
        records = [json.loads(line) for line in (folder / "records.jsonl").open()]
        assert len(records) == 12
        for record in records:
            assert record["input_ids"] == tokenizer(record["text"], truncation=True, max_length=96)["input_ids"]
    assert (tmp_path / "visualizations" / "rt.visualize.prompted" / "summary.html").is_file()


@pytest.mark.parametrize(
    "model, error",
    [
        ({"type": "packaged", "head": HEAD.model_dump()}, "encoder with no language-model head"),
        ({"type": "tiny", "head": HEAD.model_dump()}, "architecture 'bert' is an encoder"),
        ({"type": "tiny", "architecture": "llama", "head": {"template": "x", "labels": NO_TEXT}}, "exactly once"),
    ],
)
def test_a_head_on_a_model_that_cannot_take_it_is_a_config_error(model, error, tmp_path, run_cli):
    config = {
        "jobs": [
            {"job": "download", "name": "d", "source": {"type": "packaged", "corpus": "rt_sentences"}},
            {"job": "train", "name": "t", "data": "d", "model": model},
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", tmp_path / "base")
    assert code == 2 and error in err
    assert not (tmp_path / "base").exists()


def test_lora_over_label_words_trains_adapters_only_and_loads_merged(tmp_path, run_cli):
    from attexp.models.adapters import load_adapter_classifier

    model = {"type": "tiny", "architecture": "llama", "hidden_size": 32, "intermediate_size": 64, "vocab_size": 800}
    model["head"] = {"template": HEAD.template, "labels": {"negative": " negative", "positive": " positive"}}
    limits = {"train": 200, "validation": 40, "test": 20}
    config = {
        "jobs": [
            {"job": "download", "name": "d", "source": {"type": "packaged", "corpus": "rt_sentences"}, "limit": limits},
            {
                "job": "train",
                "name": "t",
                "data": "d",
                "model": model,
                "epochs": 1,
                "lr": 5e-3,
                "max_length": 48,
                "lora": {"r": 4, "alpha": 8},
                "progress": False,
            },  # fmt: skip
            {
                "job": "explain",
                "name": "e",
                "model": "t",
                "data": "d",
                "explainer": {"type": "alti"},
                "limit": 4,
                "max_length": 48,
                "progress": False,
            },  # fmt: skip
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", tmp_path / "base")
    assert code == 0, err
    folder = tmp_path / "base" / "models" / "t" / "model"
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "CAUSAL_LM" and (folder / PROMPT_FILE).is_file()
    base_weights = tmp_path / "base" / "models" / "t" / "base" / "model.safetensors"
    assert (folder / "adapter_model.safetensors").stat().st_size < 0.5 * base_weights.stat().st_size
    manifest = json.loads((tmp_path / "base" / "models" / "t" / "manifest.json").read_text())
    assert 0 < manifest["adapter"]["trainable_parameters"] < manifest["parameters"] / 5
    merged, tokenizer = load_classifier(folder)
    assert isinstance(merged, PromptedClassifier) and merged.config.id2label == {0: "negative", 1: "positive"}
    unmerged_lm, _ = load_adapter_classifier(folder, causal=True, merge=False)
    unmerged = prompted(unmerged_lm.base_model.model, tokenizer, read_prompt_of(folder), ["negative", "positive"])
    encoded = tokenizer(["a fine , moving film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(merged(**encoded).logits, unmerged.eval()(**encoded).logits, atol=1e-5, rtol=0)
    records = [json.loads(line) for line in (tmp_path / "base" / "explanations" / "e" / "records.jsonl").open()]
    assert len(records) == 4
    assert all(r["input_ids"] == tokenizer(r["text"], truncation=True, max_length=48)["input_ids"] for r in records)


def read_prompt_of(folder: Path) -> LabelWordsHead:
    from attexp.models.prompted import read_prompt

    return read_prompt(folder)
