"""`tiny`: a small classifier of any layout built from its config, with a WordPiece vocabulary trained on the
training texts (`wordpiece`), for tests and quick runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, model_validator
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
)

from attexp.config.schema import NeutralDefault
from attexp.errors import AttexpError
from attexp.models.prompted import prompted
from attexp.models.sources.base import Loaded, ModelSource, ModelSourceConfig, label_maps
from attexp.models.sources.wordpiece import BERT_SPECIALS, train_wordpiece
from attexp.registry import MODELS

TINY_ARCHITECTURES = ("bert", "llama", "qwen3", "mistral", "gemma", "modernbert")
"""The `model_type`s a tiny model can be built as (one per layout of `attexp.models.layouts`, and the decoders). Not
`qwen2`: transformers 5 loads every qwen2 folder's tokenizer as a Qwen2Tokenizer, which would not read back the tiny
model's WordPiece vocabulary (`loading.check_tokenizer_round_trip`); a tiny `qwen3` is the same layout."""


class TinyModelConfig(ModelSourceConfig):
    """A small classifier initialised from the seed, with a WordPiece vocabulary trained on the training texts.

    `architecture`: the `model_type` built (default a BERT; `llama`, `qwen3`, `mistral`, `gemma`: a
    decoder classifier reading its last token; `modernbert`). `num_key_value_heads`: grouped-query attention for
    the decoders (default: as many as attention heads). Every architecture gets the same WordPiece tokenizer
    ([CLS] text [SEP], right padding with [PAD]: a decoder reads [SEP], its last token). `vocab_size` is an upper
    bound: a small corpus yields fewer word pieces, and the model's embedding table is sized to the vocabulary
    actually learned.
    """

    type: Literal["tiny"] = "tiny"
    architecture: Annotated[Literal[TINY_ARCHITECTURES], NeutralDefault()] = "bert"
    num_key_value_heads: Annotated[int | None, NeutralDefault()] = Field(None, ge=1)
    vocab_size: int = Field(4000, ge=len(BERT_SPECIALS) + 1)
    hidden_size: int = Field(128, ge=2)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=1)
    max_position_embeddings: int = Field(512, ge=8)
    lowercase: bool = True

    @model_validator(mode="after")
    def _decoder_for_label_words(self) -> TinyModelConfig:
        if self.head is not None and self.architecture in ("bert", "modernbert"):
            decoders = ", ".join(a for a in TINY_ARCHITECTURES if a not in ("bert", "modernbert"))
            raise ValueError(
                f"a label_words head reads a causal LM's next-token logits; architecture {self.architecture!r} is an "
                f"encoder: use a decoder ({decoders})"
            )
        return self


@MODELS.register("tiny", TinyModelConfig)
class TinyModel(ModelSource):
    """A small BERT built from its config plus a WordPiece vocabulary trained on the training texts."""

    config: TinyModelConfig

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        c = self.config
        if c.hidden_size % c.num_attention_heads:
            raise AttexpError(
                f"tiny model: hidden_size {c.hidden_size} is not a multiple of num_attention_heads "
                f"{c.num_attention_heads}; pick sizes that divide"
            )
        if c.num_key_value_heads is not None and c.num_attention_heads % c.num_key_value_heads:
            raise AttexpError(
                f"tiny model: num_attention_heads {c.num_attention_heads} is not a multiple of num_key_value_heads "
                f"{c.num_key_value_heads}; pick sizes that divide"
            )
        # every architecture but BERT takes no segment ids, as its own tokenizers make none
        segments = c.architecture == "bert"
        tokenizer = train_wordpiece(train_texts, c.vocab_size, c.lowercase, c.max_position_embeddings, segments)
        sizes = dict(
            vocab_size=len(tokenizer),
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_position_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            **label_maps(num_labels, label_names),
        )
        torch.manual_seed(seed)
        model = self._build(sizes, tokenizer)
        if c.head is not None:  # a causal LM read through label words
            model = prompted(model, tokenizer, c.head, list(label_names))
        if c.dtype in ("bfloat16", "float16"):  # built in float32 ("auto": float32, as it declares none)
            model = model.to(getattr(torch, c.dtype))
        return model, tokenizer

    def _build(self, sizes: dict, tokenizer: Any) -> PreTrainedModel:
        c = self.config
        if c.architecture == "bert":
            return BertForSequenceClassification(BertConfig(**sizes))
        if c.architecture == "modernbert":
            ids = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
            ids |= {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
            config = AutoConfig.for_model("modernbert", **sizes, **ids)
        else:  # a decoder: its own head dimension, grouped-query attention where asked
            config = AutoConfig.for_model(
                c.architecture,
                **sizes,
                head_dim=c.hidden_size // c.num_attention_heads,
                num_key_value_heads=c.num_key_value_heads or c.num_attention_heads,
                bos_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id,
                tie_word_embeddings=False,
            )
        if c.head is not None:
            return AutoModelForCausalLM.from_config(config)
        return AutoModelForSequenceClassification.from_config(config)

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        c = self.config
        return {"model_type": c.architecture, "max_position_embeddings": c.max_position_embeddings}
