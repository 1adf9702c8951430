"""Tiny models and tokenizers built in-process, shared by the test files (no hub, no files).

`word_tokenizer(words)` is a WordPiece tokenizer whose vocabulary is the BERT specials plus `words`, so a test
can write sentences from a known vocabulary; `tiny_bert(...)` a randomly initialised 2-layer BERT classifier
whose larger-than-BERT init makes outputs depend on the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

from attexp.models.inputs import Batch

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_tokenizer(words: Sequence[str]) -> BertTokenizerFast:
    """A tokenizer over the BERT specials (ids 0-4) followed by `words` (ids 5, 6, ...)."""
    vocab = [*SPECIALS, *(w for w in words if w not in SPECIALS)]
    return BertTokenizerFast(vocab={word: i for i, word in enumerate(vocab)})


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
