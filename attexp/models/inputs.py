"""Model inputs, in one place for every stage: the padded `Batch`, tokenising dataset rows, right-padding,
length-sorted batches, and which tokens are structural specials.

Every stage that feeds a classifier goes through these functions: the explain stage's batching engine, the
train stage's data loader (`attexp.train.batches.encode_rows` / `pad_collate`), the scorer of the faithfulness
metrics, the head-pruning and trigger analyses and the AttExplainer game. So a sentence pair, a truncation or a
tokenizer without a pad token is handled the same way everywhere, and the records of one stage line up with
the inputs of the next.

Structural specials are the tokens that frame a text rather than carry it: [CLS], [SEP], <s>, </s> and
padding. They are never perturbed, masked, counted as content or given to a reader as a word. [UNK] and [MASK]
are not structural: in a text they stand for real content. Here they are known by id, from the tokenizer;
readers of records, which carry token strings and no tokenizer, use `attexp.io.records.STRUCTURAL_TOKENS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attexp.errors import AttexpError
from attexp.models.layouts import head_reads


@dataclass
class Batch:
    """A padded batch as the model sees it.

    input_ids [B, T] long, attention_mask [B, T] (1 = real token, 0 = padding), token_type_ids [B, T] or None
    (segment ids of sentence pairs, for models that take them), targets [B] long (the class to explain).
    """

    input_ids: Tensor
    attention_mask: Tensor
    token_type_ids: Tensor | None
    targets: Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on `device`."""
        return Batch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            token_type_ids=None if self.token_type_ids is None else self.token_type_ids.to(device),
            targets=self.targets.to(device),
        )

    def model_inputs(self) -> dict[str, Tensor]:
        """Keyword arguments for a Hugging Face classifier's forward."""
        kwargs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            kwargs["token_type_ids"] = self.token_type_ids
        return kwargs

    def subset(self, index: Tensor) -> Batch:
        """The instances `index` [G] of this batch, same padded width."""
        return Batch(
            input_ids=self.input_ids[index],
            attention_mask=self.attention_mask[index],
            token_type_ids=None if self.token_type_ids is None else self.token_type_ids[index],
            targets=self.targets[index],
        )


def pad_id(source: Any, required: bool = False) -> int:
    """The id that pads a batch, from a tokenizer or a model config (both say `pad_token_id`): its pad token, else
    0. The one place attexp decides this (batching, training, distillation, scoring).

    For the right-padded, attention-masked inputs of BERT-family encoders any id works, so 0 stands in for a
    missing pad token. A decoder classifier (GPT-2, Llama) pools at the last token whose id is not the *config's*
    pad id, so padding with another id gives wrong logits without an error: `required=True` (training, testing a
    trained classifier) refuses a source without a pad token instead, with the fix."""
    value = getattr(source, "pad_token_id", None)
    if value is None and required:
        raise AttexpError(
            f"{type(source).__name__} has no pad token, so batches cannot be padded safely; set one first "
            f"(e.g. tokenizer.pad_token = tokenizer.eos_token and model.config.pad_token_id to its id)."
        )
    return int(value) if value is not None else 0


def reads_last_token(model: Any) -> bool:
    """Whether `model`'s head reads its last token whose id is not its config's `pad_token_id` (the decoder
    `*ForSequenceClassification`s: Llama, Mistral, Qwen, Gemma, GPT-2, ...), from the one answer
    `attexp.models.layouts.head_reads`; such a model's batches pad with its config's pad id (`batch_pad_id`)."""
    return head_reads(model) == "last"


def match_pad_token(model: Any, tokenizer: Any) -> None:
    """Give a decoder classifier the pad id its head needs, where it lacks one.

    transformers' decoder classifiers refuse batches of more than one text unless `config.pad_token_id` is set, and
    read the last token whose id is not that id. Many decoder checkpoints ship a tokenizer with a pad token but a
    config without one: the config then takes the tokenizer's (what transformers' documentation advises). Neither
    having one is refused, with the fix. Encoders are left as they are."""
    if not reads_last_token(model) or model.config.pad_token_id is not None:
        return
    if getattr(tokenizer, "pad_token_id", None) is None:
        raise AttexpError(
            f"{type(model).__name__} is a decoder classifier (it reads the last token that is not padding), and "
            f"neither its config nor its tokenizer has a pad token, so batches cannot be padded. Set one in the "
            f"model folder: tokenizer.pad_token = tokenizer.eos_token; model.config.pad_token_id = "
            f"tokenizer.pad_token_id; save both with save_pretrained."
        )
    model.config.pad_token_id = int(tokenizer.pad_token_id)


def batch_pad_id(model: Any, tokenizer: Any, required: bool = False) -> int:
    """The id that pads `model`'s batches: a decoder classifier's config pad id (its head skips exactly that id;
    `match_pad_token` sets it), else the tokenizer's (`pad_id`)."""
    if reads_last_token(model):
        match_pad_token(model, tokenizer)
        return int(model.config.pad_token_id)
    return pad_id(tokenizer, required)


def max_length_problem(max_length: int | None, config: Any, model: str = "the model") -> str | None:
    """What is wrong with truncating to `max_length` tokens for `model`, a classifier whose config (a `config.json`
    dict or a transformers config) is `config`: a length past its `max_position_embeddings` (None: nothing is). The
    one check of a `max_length`, made by the plan check before a job runs (`attexp.models.architectures`) and by
    `attexp.explain(...)` on a model object."""
    if isinstance(config, dict):
        limit = config.get("max_position_embeddings")
    else:
        limit = getattr(config, "max_position_embeddings", None)
    if isinstance(limit, int) and isinstance(max_length, int) and max_length > limit:
        fix = f"lower it to at most {limit}"
        return f"max_length={max_length} exceeds the max_position_embeddings={limit} of {model}; {fix}"
    return None


def tokenize_rows(
    tokenizer: Any, rows: Sequence[dict], max_length: int, with_words: bool = False
) -> list[dict[str, Any]]:
    """Token ids (and segment ids where the tokenizer makes them) per dataset row, truncated, unpadded.

    rows: `{"text"}` dicts, with `"text_pair"` for sentence pairs (a split is all pairs or all single texts).
    with_words: also `word_ids` (per token, the index of the word it belongs to, None for specials) and `words`
    (each word as written in the row's text), from a fast tokenizer's word ids and character offsets; see
    `token_words`. Slow tokenizers, which have neither, give no such keys.
    """
    has_pair = ["text_pair" in row and row["text_pair"] is not None for row in rows]
    if any(has_pair) and not all(has_pair):
        missing = next(row.get("idx") for row, pair in zip(rows, has_pair, strict=True) if not pair)
        raise AttexpError(
            f"some rows have a 'text_pair' and some do not (e.g. idx {missing}); a split is either all single "
            f"texts or all sentence pairs. Fix the dataset rows."
        )
    if not rows:
        return []
    texts = [row["text"] for row in rows]
    pairs = [row["text_pair"] for row in rows] if all(has_pair) else None
    fast = with_words and getattr(tokenizer, "is_fast", False)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length, return_offsets_mapping=fast)
    keys = [k for k in ("input_ids", "token_type_ids") if k in encoded]
    features = [{k: encoded[k][i] for k in keys} for i in range(len(rows))]
    if fast:
        for i, feature in enumerate(features):
            feature.update(token_words(encoded, i, texts[i], pairs[i] if pairs else None))
    return features


def token_words(encoded: Any, i: int, text: str, text_pair: str | None) -> dict[str, list]:
    """Which word each token of row `i` of a fast tokenizer's `encoded` batch belongs to, for every tokenizer
    family alike (WordPiece's `##`, byte-level BPE's `Ġ`, SentencePiece's `▁`): the tokenizer's own word ids, not
    string prefixes. Returns `word_ids` (per token: an index into `words`, None for special tokens) and `words`
    (each word's text cut from the row's text by its tokens' character offsets, so it reads as written:
    original case and accents). Words of a sentence pair's second text follow those of the first.
    """
    word_ids, words, index = [], [], {}
    sequences = encoded.sequence_ids(i)
    for word, sequence, (start, end) in zip(encoded.word_ids(i), sequences, encoded["offset_mapping"][i], strict=True):
        if word is None or sequence is None:
            word_ids.append(None)
            continue
        key = (sequence, word)
        source = text if sequence == 0 else (text_pair or "")
        if key not in index:
            index[key] = len(words)
            words.append([start, end, source])
        span = words[index[key]]
        span[0], span[1] = min(span[0], start), max(span[1], end)
        word_ids.append(index[key])
    return {"word_ids": word_ids, "words": [source[start:end].strip() for start, end, source in words]}


def count_truncated(tokenizer: Any, rows: Sequence[dict], max_length: int) -> int:
    """How many rows have more tokens than `max_length` (they are cut to it: what is cut is never seen)."""
    if not rows:
        return 0
    texts = [row["text"] for row in rows]
    pairs = [row["text_pair"] for row in rows] if all(row.get("text_pair") is not None for row in rows) else None
    lengths = [len(ids) for ids in tokenizer(texts, pairs, truncation=False, verbose=False)["input_ids"]]
    return sum(1 for n in lengths if n > max_length)


def pad_features(features: Sequence[dict[str, Any]], pad: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """Right-pad to the longest in the batch -> input_ids, attention_mask, token_type_ids, each [B, T].

    `token_type_ids` is None unless the features carry segment ids.
    """
    width = max(max(len(f["input_ids"]) for f in features), 1)
    ids = torch.full((len(features), width), pad, dtype=torch.long)
    mask = torch.zeros((len(features), width), dtype=torch.long)
    types = torch.zeros((len(features), width), dtype=torch.long) if "token_type_ids" in features[0] else None
    for i, f in enumerate(features):
        n = len(f["input_ids"])
        ids[i, :n] = torch.as_tensor(f["input_ids"], dtype=torch.long)
        mask[i, :n] = 1
        if types is not None and f.get("token_type_ids") is not None:
            types[i, :n] = torch.as_tensor(f["token_type_ids"], dtype=torch.long)
    return ids, mask, types


def longest_first(lengths: Sequence[int]) -> list[int]:
    """Positions sorted by length, longest first; ties keep their order (stable), so the order depends only on
    the data: a resumed run cuts the same batches, and an out-of-memory setting fails on the first batch."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def length_bucketed_batches(
    lengths: Sequence[int], batch_size: int, max_padding: float = 0.1, min_rows: int = 8
) -> list[list[int]]:
    """Positions cut into batches of at most `batch_size`, longest first (`longest_first`), each of similar length:
    a batch also closes when the next row is shorter than the batch's longest by more than `max_padding` of it and
    the batch holds `min_rows` rows already. Fixed-size batches of a wide spread of lengths run mostly padding (the
    faithfulness metrics' perturbed inputs range from a few tokens to the whole input); fewer rows per forward cost
    less than that, down to a handful."""
    if batch_size < 1:
        raise AttexpError(f"batch_size must be at least 1, got {batch_size}.")
    batches: list[list[int]] = []
    current: list[int] = []
    for i in longest_first(lengths):
        shorter = lengths[i] < (1 - max_padding) * lengths[current[0]] if current else False
        if current and (len(current) == batch_size or (shorter and len(current) >= min_rows)):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Positions cut into batches of `batch_size` of similar length, longest batch first (`longest_first`)."""
    if batch_size < 1:
        raise AttexpError(f"batch_size must be at least 1, got {batch_size}.")
    order = longest_first(lengths)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def structural_ids(tokenizer: Any) -> set[int]:
    """The ids of `tokenizer`'s structural special tokens: [CLS], [SEP], <s>, </s> and padding.

    [UNK] and [MASK] are not structural: in a text they stand for real content and are explained like
    any other token.
    """
    ids = {
        getattr(tokenizer, name, None)
        for name in ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id")
    }
    return {int(i) for i in ids if i is not None}


def structural_positions(input_ids: Tensor, attention_mask: Tensor, tokenizer: Any) -> Tensor:
    """bool [B, T]: True at padding and at structural special tokens (`structural_ids`)."""
    ids = structural_ids(tokenizer)
    special = torch.isin(input_ids, torch.tensor(sorted(ids), dtype=input_ids.dtype, device=input_ids.device))
    return special | ~attention_mask.bool()
