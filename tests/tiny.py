"""Tiny models and tokenizers built in-process, shared by the test files (no hub, no files).

`word_tokenizer(words)` is a WordPiece tokenizer whose vocabulary is the BERT specials plus `words`, so a test
can write sentences from a known vocabulary; `tiny_bert(...)` a randomly initialised 2-layer BERT classifier
whose larger-than-BERT init makes outputs depend on the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
)

from attexp.models.inputs import Batch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_tokenizer(words: Sequence[str], segments: bool = True) -> BertTokenizerFast:
    """A tokenizer over the BERT specials (ids 0-4) followed by `words` (ids 5, 6, ...); `segments=False` makes
    no token_type_ids (for the models that take none: decoders, ModernBERT)."""
    vocab = [*SPECIALS, *(w for w in words if w not in SPECIALS)]
    names = {} if segments else {"model_input_names": ["input_ids", "attention_mask"]}
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)}, **names)


LAYOUT_CASES: dict[str, tuple[str, dict]] = {
    "bert": ("bert", {}),
    "distilbert": ("distilbert", {}),
    "llama": ("llama", {"num_key_value_heads": 1}),  # grouped-query: both heads share one key/value head
    "qwen2": ("qwen2", {"use_sliding_window": True, "sliding_window": 3, "max_window_layers": 1}),  # layer 1 local
    "qwen3": ("qwen3", {"num_key_value_heads": 1}),
    "mistral": ("mistral", {"sliding_window": 3}),  # every layer attends to the 3 latest tokens
    "gemma": ("gemma", {}),
    "modernbert": ("modernbert", {"global_attn_every_n_layers": 2, "local_attention": 4}),  # layer 1 local
    "modernbert-mean": (
        "modernbert",
        {"global_attn_every_n_layers": 2, "local_attention": 4, "classifier_pooling": "mean"},
    ),
}
"""One tiny configuration per architecture the inside-the-model explainers read (a layout of
`attexp.models.layouts`, with its variants: grouped-query attention, sliding windows, mean pooling). Adding a layout
is one entry here; tests/test_layouts.py runs every case."""


def tiny_classifier(
    case: str, vocab_size: int, seed: int = 0, num_labels: int = 3, attention: str = "eager"
) -> torch.nn.Module:
    """A 2-layer classifier of `LAYOUT_CASES[case]` with random weights in eval mode (hidden 32, 2 heads; pad id
    0; [CLS]/[SEP] are ids 2/3 as in `word_tokenizer`)."""
    model_type, extra = LAYOUT_CASES[case]
    sizes = dict(vocab_size=vocab_size, num_labels=num_labels, pad_token_id=0, initializer_range=0.2)
    if model_type == "distilbert":
        sizes |= dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64)
    else:
        sizes |= dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
        sizes |= dict(max_position_embeddings=64)
    if model_type in {"llama", "qwen2", "qwen3", "mistral", "gemma"}:
        sizes |= dict(head_dim=16, num_key_value_heads=2, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False)
    if model_type == "modernbert":
        sizes |= dict(bos_token_id=2, eos_token_id=3, cls_token_id=2, sep_token_id=3)
    config = AutoConfig.for_model(model_type, **(sizes | extra))
    config._attn_implementation = attention
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(config).eval()


def tiny_bert(
    vocab_size: int,
    seed: int = 0,
    num_labels: int = 3,
    layers: int = 2,
    heads: int = 2,
    hidden: int = 32,
    attention: str | None = None,
) -> BertForSequenceClassification:
    """A BERT classifier with random weights in eval mode (`attention`: the attn_implementation, default sdpa)."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        num_labels=num_labels,
        initializer_range=0.2,
    )
    if attention is not None:
        config._attn_implementation = attention
    return BertForSequenceClassification(config).eval()


def make_batch(tokenizer, texts: list[str], targets: list[int] | None = None, num_labels: int = 3) -> Batch:
    """Tokenise `texts` into a padded Batch; targets default to 0, 1, 2, 0, ... (mod num_labels)."""
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    targets = targets if targets is not None else [i % num_labels for i in range(len(texts))]
    return Batch(enc["input_ids"], enc.get("attention_mask"), enc.get("token_type_ids"), torch.tensor(targets))


def byte_bpe_tokenizer(texts: Sequence[str], vocab_size: int = 400):
    """A byte-level BPE tokenizer (GPT-2/Qwen/Llama-3 style: `Ġ` marks a leading space, no special tokens around a
    text; `<|endoftext|>` ends and pads) trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_causal_lm(model_type: str, tokenizer, seed: int = 0, **extra) -> torch.nn.Module:
    """A 2-layer causal LM of `model_type` (hidden 32, 2 heads) with random weights, eager attention, eval mode."""
    from transformers import AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type,
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=extra.pop("num_key_value_heads", 2),
        head_dim=16,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.2,
        **extra,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()
