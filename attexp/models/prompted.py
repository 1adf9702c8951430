"""Prompted classifiers: a causal language model, an instruction template around the text, and label words.

The classifier people build from an instruct LLM without a classification head: the text goes into a template
(`'Review: {text}\\nSentiment:'`) and the class scores are the next-token logits of one label word per class
(`' negative'`, `' positive'`), read after the template's last token. captum's LLMAttribution and inseq explain this
kind of model; here it is a sequence classifier like any other (`PromptedClassifier`), so every explainer, metric
and stage takes it as it is.

How it is built (`PromptedClassifier`):
- The explainers see the text's tokens only. `input_ids` [B, T] are the text as the model's tokenizer encodes it
  alone (with the special tokens it adds, e.g. Llama's <s>); the template's tokens are inserted inside `forward`,
  where no explainer looks, and kept out of every record: word ids, masks and perturbations are the text's. The
  text's embeddings go through the embedding module itself (so LIG's hook sees exactly [B, T]); the template's are
  looked up by the same module's `forward` without its hooks.
- The sequence the LM reads, per row: the tokenizer's leading special tokens (<s>, [CLS]), the template's prefix,
  the text's tokens, the template's suffix. The tokenizer's trailing special tokens (</s>, [SEP]) are not fed: a
  prompt is continued after its suffix (they get no attribution, as padding). Right padding, so positions count
  from 0 at the first token.
- Tokenization rule: the prefix, the text and the suffix are tokenized apart, without special tokens, and joined;
  `{text}` is thus a token boundary. Spaces at the end of the prefix are dropped (a BPE tokenizer would join a space
  to the text's first word, which the text tokenized alone has without it; a SentencePiece tokenizer marks the word's
  start itself); newlines and tabs there are kept (their own tokens, as chat formats need them).
- The class score is the LM's next-token logit, after the suffix, of each label word's first token. Label words of
  several tokens are told apart by their first token (captum's LLMAttribution scores whole target sequences; a
  classifier needs one logit per class, and the first token is where the classes part): two label words with the
  same first token are refused. Classes are ordered as the dataset's label names where the job has a dataset
  (`labels`' keys must be those names), else as written in `labels`.
- The same model over the whole sequence is an ordinary decoder `*ForSequenceClassification` whose `score` head is
  the LM head's rows of the label words (`PromptedClassifier.classifier`, sharing every weight with the LM): the
  explainers that read inside the model (ALTI, AttAttr, IBA, attention, rollout) run on it over the whole prompt,
  and their token scores are read back at the text's positions (`attexp.explain.prompted`).

A prompted model is saved as the LM's `save_pretrained` folder plus `PROMPT_FILE` (the template and the label words
in class order, JSON), and a folder holding that file loads as a prompted classifier again.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn
from transformers import AutoModelForSequenceClassification, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from attexp.config.schema import StrictModel
from attexp.errors import AttexpError
from attexp.models.inputs import Batch

PROMPT_FILE = "attexp_prompt.json"
"""In a saved prompted classifier's folder: `{"template": ..., "labels": {name: word, ...}}` in class order."""


class LabelWordsHead(StrictModel):
    """A causal LM read as a classifier through a template and one label word per class (see the module docstring).

    template: the prompt, with `{text}` once where the text goes (e.g. `'Review: {text}\\nSentiment:'`; for an
    instruct model, its chat format written out, e.g. `'<|im_start|>user\\nIs this review positive or negative?
    {text}<|im_end|>\\n<|im_start|>assistant\\n'`). labels: class name -> label word (e.g. `{neg: ' negative', pos:
    ' positive'}`); the names are the dataset's label names where the job has a dataset.
    """

    type: Literal["label_words"] = "label_words"
    template: str = Field(description="the prompt around the text, with {text} once")
    labels: dict[str, str] = Field(description="class name -> the label word whose next-token logit scores it")

    @field_validator("template")
    @classmethod
    def _one_text(cls, template: str) -> str:
        if template.count("{text}") != 1:
            raise ValueError(
                f"the template must hold {{text}} exactly once (where the text goes), found it "
                f"{template.count('{text}')} times in {template!r}"
            )
        return template

    @field_validator("labels")
    @classmethod
    def _two_words(cls, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got labels {labels}")
        empty = [name for name, word in labels.items() if not word.strip()]
        if empty:
            raise ValueError(f"label words must not be empty or blank: {empty}")
        return labels

    def ordered(self, label_names: list[str] | None) -> list[tuple[str, str]]:
        """(name, word) per class id: in `label_names`' order where given (they must be `labels`' keys)."""
        if label_names is None:
            return list(self.labels.items())
        if sorted(label_names) != sorted(self.labels):
            raise AttexpError(
                f"the label words name the classes {sorted(self.labels)}, but the dataset's classes are "
                f"{list(label_names)}: give one label word per dataset class, keyed by its name "
                f"(e.g. labels: {{{', '.join(f'{n!r}: <word>' for n in label_names)}}})"
            )
        return [(name, self.labels[name]) for name in label_names]


def _words(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def special_framing(tokenizer: Any) -> tuple[int, int]:
    """How many special tokens `tokenizer` puts before and after a single text (BERT 1, 1; Llama 1, 0; Qwen 0, 0)."""
    probe = "a b"
    full = list(tokenizer(probe)["input_ids"])
    core = _words(tokenizer, probe)
    for start in range(len(full) - len(core) + 1):
        if full[start : start + len(core)] == core:
            return start, len(full) - start - len(core)
    raise AttexpError(
        f"{type(tokenizer).__name__} encodes a text with special tokens as something other than the text's own "
        f"tokens framed by specials ({full} around {core}), so the template cannot be placed around the text"
    )


class LabelWordsScore(nn.Module):
    """The LM head's rows of the label words' first tokens: last-layer features [..., H] -> class scores [..., C].

    Holds the LM head itself (shared, not copied), so fine-tuning the LM moves the scores; with the LM's final-logit
    softcapping where its config has one (Gemma 2), so the scores are the LM's logits exactly."""

    def __init__(self, lm_head: nn.Linear, token_ids: list[int], softcap: float | None) -> None:
        super().__init__()
        self.lm_head = lm_head
        self.register_buffer("token_ids", torch.tensor(token_ids, dtype=torch.long), persistent=False)
        self.softcap = softcap

    def forward(self, features: Tensor) -> Tensor:
        weight = self.lm_head.weight[self.token_ids]
        bias = None if self.lm_head.bias is None else self.lm_head.bias[self.token_ids]
        logits = F.linear(features, weight, bias)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _sequence_classifier(lm: PreTrainedModel, score: LabelWordsScore, config: Any) -> PreTrainedModel:
    """A decoder `*ForSequenceClassification` over the whole prompt sharing `lm`'s weights, `score` as its head."""
    try:
        with torch.device("meta"):  # nothing allocated: its base and head are replaced by the LM's
            classifier = AutoModelForSequenceClassification.from_config(config)
    except ValueError as err:
        raise AttexpError(
            f"a {config.model_type!r} model has no sequence-classifier class in transformers, which a prompted "
            f"classifier is read as: use a decoder LM (Llama, Qwen, Mistral, Gemma, GPT-2, ...)"
        ) from err
    prefix = lm.base_model_prefix
    if getattr(classifier, classifier.base_model_prefix, None) is None or not hasattr(lm, prefix):
        raise AttexpError(f"cannot read the {type(lm).__name__}'s base model as a classifier's")
    setattr(classifier, classifier.base_model_prefix, getattr(lm, prefix))
    classifier.score = score
    left = [name for name, p in classifier.named_parameters() if p.is_meta]
    if left:
        raise AttexpError(f"a {type(classifier).__name__} over the LM has parameters of its own: {left[:3]}")
    return classifier


class PromptedClassifier(nn.Module):
    """A causal LM as a sequence classifier over the text's tokens: template inserted, label words' logits out.

    Built with `prompted(lm, tokenizer, head, label_names)`. Takes what a Hugging Face sequence classifier takes
    (`input_ids` or `inputs_embeds` of the text, `attention_mask`, right padding; `labels` for a loss) and returns
    `.logits` [B, C]. `config` is the LM's config with the classes, `max_position_embeddings` less the template's
    tokens (what the text may use), and `prompt` (the head, as saved). See the module docstring."""

    def __init__(
        self,
        lm: PreTrainedModel,
        prefix_ids: list[int],
        suffix_ids: list[int],
        framing: tuple[int, int],
        classes: list[tuple[str, str]],
        label_ids: list[int],
        template: str,
        pad_id: int,
    ) -> None:
        super().__init__()
        self.lm = lm
        self.register_buffer("prefix_ids", torch.tensor(prefix_ids, dtype=torch.long), persistent=False)
        self.register_buffer("suffix_ids", torch.tensor(suffix_ids, dtype=torch.long), persistent=False)
        self.lead, self.trail = framing
        lm_config = lm.config
        config = copy.deepcopy(lm_config)
        config.num_labels = len(classes)
        config.id2label = {i: name for i, (name, _) in enumerate(classes)}
        config.label2id = {name: i for i, (name, _) in enumerate(classes)}
        config.problem_type = "single_label_classification"
        config.pad_token_id = pad_id  # pads the whole prompt's ids (`prompt_batch`); the text's padding is masked
        self.classifier = _sequence_classifier(
            lm, LabelWordsScore(lm.get_output_embeddings(), label_ids, _softcap(lm_config)), copy.deepcopy(config)
        )
        limit = getattr(lm_config, "max_position_embeddings", None)
        if isinstance(limit, int):  # what the text may use
            config.max_position_embeddings = limit - len(prefix_ids) - len(suffix_ids)
        config.prompt = {"template": template, "labels": dict(classes), "label_token_ids": list(label_ids)}
        self.config = config

    @property
    def template_tokens(self) -> int:
        return int(self.prefix_ids.numel() + self.suffix_ids.numel())

    def get_input_embeddings(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def positions(self, attention_mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Where the text's tokens go in the LM's sequence (right-padded, width W).

        attention_mask [B, T] -> text [B, T] (position of each text token; W, a scratch column, for padding and the
        trailing specials), prefix [B, P], suffix [B, S] (positions of the template's tokens), mask [B, W]."""
        device = attention_mask.device
        lengths = attention_mask.long().sum(dim=1)  # [B]
        width_text = attention_mask.shape[1]
        p, s = int(self.prefix_ids.numel()), int(self.suffix_ids.numel())
        kept = (lengths - self.trail).clamp(min=self.lead)  # text tokens fed: lead + core
        width = int(kept.max().item()) + p + s if len(lengths) else p + s
        j = torch.arange(width_text, device=device).expand(len(lengths), -1)
        text = torch.where(j < self.lead, j, j + p)
        text = torch.where(j < kept[:, None], text, torch.full_like(text, width))
        prefix = (self.lead + torch.arange(p, device=device)).expand(len(lengths), -1)
        suffix = (kept[:, None] + p) + torch.arange(s, device=device)
        mask = (torch.arange(width, device=device)[None, :] < (kept + p + s)[:, None]).to(attention_mask.dtype)
        return text, prefix, suffix, mask

    def _embed_template(self, ids: Tensor) -> Tensor:
        # the embedding module's own forward, not its __call__: a hook on it (LIG's) sees only the text
        return self.get_input_embeddings().forward(ids)

    def prompt_embeddings(self, inputs_embeds: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """The text's embeddings [B, T, H] -> the whole prompt's [B, W, H] and its attention mask [B, W]."""
        text, prefix, suffix, mask = self.positions(attention_mask)
        size, _, hidden = inputs_embeds.shape
        template = torch.cat([self._embed_template(self.prefix_ids), self._embed_template(self.suffix_ids)])
        source = torch.cat([inputs_embeds, template.to(inputs_embeds.dtype).expand(size, -1, -1)], dim=1)
        index = torch.cat([text, prefix, suffix], dim=1)[..., None].expand(-1, -1, hidden)
        width = mask.shape[1]
        full = inputs_embeds.new_zeros(size, width + 1, hidden).scatter(1, index, source)
        return full[:, :width], mask

    def prompt_batch(self, batch: Batch, pad: int) -> tuple[Batch, Tensor]:
        """The whole prompt as a batch of token ids (padded with `pad`), and where each text token is in it:
        [B, T], -1 for padding and the trailing specials (for the explainers that read inside the model)."""
        text, prefix, suffix, mask = self.positions(batch.attention_mask)
        size, width = mask.shape
        ids = batch.input_ids
        source = torch.cat([ids, self.prefix_ids.expand(size, -1), self.suffix_ids.expand(size, -1)], dim=1)
        index = torch.cat([text, prefix, suffix], dim=1)
        full = torch.full((size, width + 1), pad, dtype=ids.dtype, device=ids.device).scatter(1, index, source)
        where = torch.where(text < width, text, torch.full_like(text, -1))
        return Batch(full[:, :width], mask, None, batch.targets), where

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        if kwargs.get("output_hidden_states") or kwargs.get("output_attentions"):
            raise AttexpError(
                "a prompted classifier returns its logits only: its hidden states and attentions cover the whole "
                "prompt, not the text. The inside-the-model explainers read them through attexp.explain.prompted; "
                "the distilled (empirical) explainers and the model analyses do not read a prompted classifier yet"
            )
        if token_type_ids is not None and bool(token_type_ids.any()):
            raise AttexpError("a prompted classifier takes a single text, not sentence pairs (token_type_ids)")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.long, device=inputs_embeds.device)
        full, mask = self.prompt_embeddings(inputs_embeds, attention_mask)
        base = getattr(self.classifier, self.classifier.base_model_prefix)
        hidden = base(inputs_embeds=full, attention_mask=mask, **kwargs).last_hidden_state  # [B, W, H]
        last = mask.long().sum(dim=1) - 1  # the suffix's last token: the next token is the label word
        logits = self.classifier.score(hidden[torch.arange(hidden.shape[0], device=hidden.device), last])
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """The LM's `save_pretrained` folder plus `PROMPT_FILE` (template and label words in class order)."""
        self.lm.save_pretrained(folder, **kwargs)
        write_prompt(self, Path(folder))


def _softcap(config: Any) -> float | None:
    value = getattr(config, "final_logit_softcapping", None)
    return float(value) if value else None


def prompted(
    lm: PreTrainedModel, tokenizer: Any, head: LabelWordsHead, label_names: list[str] | None = None
) -> PromptedClassifier:
    """`lm` (a causal LM) read through `head` as a classifier over the text `tokenizer` encodes (see the module
    docstring for the rules: tokenization, the first token of each label word, class order)."""
    if not getattr(lm.config, "is_decoder", False) and lm.get_output_embeddings() is None:
        raise AttexpError(f"{type(lm).__name__} has no LM head; a prompted classifier needs a causal language model")
    before, after = head.template.split("{text}")
    classes = head.ordered(label_names)
    label_ids = []
    for name, word in classes:
        ids = _words(tokenizer, word)
        if not ids:
            raise AttexpError(f"the label word {word!r} of class {name!r} encodes to no token")
        label_ids.append(ids[0])
    for i, (name, _) in enumerate(classes):
        other = next((classes[k][0] for k in range(i) if label_ids[k] == label_ids[i]), None)
        if other is not None:
            raise AttexpError(
                f"the label words of classes {other!r} and {name!r} start with the same token, and a class is scored "
                f"by its label word's first token: choose words that differ in their first token"
            )
    return PromptedClassifier(
        lm,
        _words(tokenizer, before.rstrip(" ")),
        _words(tokenizer, after),
        special_framing(tokenizer),
        classes,
        label_ids,
        head.template,
        _pad_id(lm, tokenizer),
    )


def _pad_id(lm: PreTrainedModel, tokenizer: Any) -> int:
    """The id that pads a prompt: the LM's config's, its tokenizer's, its end of sequence, else 0 (any id does: the
    classifier reads the last token of the attention mask, never a pad id's absence)."""
    for value in (lm.config.pad_token_id, getattr(tokenizer, "pad_token_id", None), lm.config.eos_token_id):
        if isinstance(value, list):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return 0


def write_prompt(model: PromptedClassifier, folder: Path) -> None:
    """`PROMPT_FILE` in `folder`: the model's template and label words, in class order."""
    prompt = {"template": model.config.prompt["template"], "labels": model.config.prompt["labels"]}
    (Path(folder) / PROMPT_FILE).write_text(json.dumps(prompt, indent=2) + "\n", encoding="utf-8")


def read_prompt(folder: Path) -> LabelWordsHead | None:
    """The head saved in a prompted classifier's folder (`PROMPT_FILE`), or None when it is not one."""
    path = Path(folder) / PROMPT_FILE
    if not path.is_file():
        return None
    try:
        return LabelWordsHead.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as err:
        raise AttexpError(f"{path} is not a valid prompt ({str(err).splitlines()[0]}); re-save the model") from err
