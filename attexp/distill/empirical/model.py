"""The empirical explainer: a copy of the classifier's encoder trained to predict an expensive explainer's scores.

Schwarzenberg, Feldhus and Möller (2021), "Efficient Explanations from Empirical Explainers" (BlackboxNLP;
code DFKI-NLP/emp-exp), distil the token attributions of an expensive explainer (e.g. Integrated Gradients
with many steps) into a model that produces them in one forward pass. The explainer starts from the
fine-tuned classifier's encoder (the classifier already represents the task) and adds a regression head:

- `head="token"` (default): dropout + Linear(hidden, 1) applied to every token's final hidden state.
- `head="flat"`: emp-exp's decoder, dropout + Linear(max_length * hidden, max_length) over the flattened hidden
  states of the sequence padded to `max_length`. Hidden states at padded positions are zeroed before
  flattening, which makes the output independent of how much padding a batch carries (emp-exp padded every
  input to `max_length`; real tokens' hidden states do not depend on padding, so this matches it).

Scores at padding positions are exactly 0 in both cases.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Literal

import torch
import transformers
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel

from attexp.errors import AttexpError

HEAD_WEIGHTS = "explainer_head.safetensors"
HEAD_SETTINGS = "explainer_head.json"
FORMAT_VERSION = 1


class EmpiricalExplainerModel(nn.Module):
    """Encoder + per-token regression head predicting one attribution score per token (Schwarzenberg et al. 2021)."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        head: Literal["token", "flat"] = "token",
        max_length: int = 128,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if head not in ("token", "flat"):
            raise AttexpError(f'unknown empirical-explainer head {head!r}; expected "token" or "flat"')
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.head_type = head
        self.max_length = max_length
        self.dropout_p = float(getattr(encoder.config, "hidden_dropout_prob", 0.1) if dropout is None else dropout)
        self.dropout = nn.Dropout(self.dropout_p)
        if head == "token":
            self.head = nn.Linear(hidden, 1)
        else:
            self.head = nn.Linear(max_length * hidden, max_length)

    @classmethod
    def from_classifier(
        cls, classifier: PreTrainedModel, head: Literal["token", "flat"] = "token", max_length: int = 128
    ) -> EmpiricalExplainerModel:
        """A new explainer whose encoder is a copy of `classifier.base_model` (the classifier is left untouched)."""
        encoder = copy.deepcopy(classifier.base_model)
        return cls(encoder, head=head, max_length=max_length)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """Scores [B, T] for input_ids [B, T]; exactly 0 where `attention_mask` is 0."""
        length = input_ids.shape[1]
        if self.head_type == "flat" and length > self.max_length:
            raise AttexpError(
                f"the flat-head explainer takes at most max_length={self.max_length} tokens, got {length}; "
                "truncate the inputs or distil with a larger max_length"
            )
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state  # [B,T,H]
        mask = attention_mask.to(hidden.dtype)  # [B, T]
        if self.head_type == "token":
            scores = self.head(self.dropout(hidden)).squeeze(-1)  # [B, T]
        else:
            hidden = hidden * mask.unsqueeze(-1)  # padding carries nothing into the flat layer
            hidden = nn.functional.pad(hidden, (0, 0, 0, self.max_length - length))  # [B, L, H]
            scores = self.head(self.dropout(hidden.flatten(1)))[:, :length]  # [B, L*H] -> [B, L] -> [B, T]
        return scores * mask

    def save_pretrained(self, directory: Path) -> None:
        """Write the encoder (`save_pretrained`, safetensors), the head weights and the head settings."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}, directory / HEAD_WEIGHTS
        )
        settings = {
            "format_version": FORMAT_VERSION,
            "head": self.head_type,
            "max_length": self.max_length,
            "dropout": self.dropout_p,
            "hidden_size": self.encoder.config.hidden_size,
        }
        (directory / HEAD_SETTINGS).write_text(json.dumps(settings, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: Path, device: torch.device | str | None = None) -> EmpiricalExplainerModel:
        """Load a saved explainer in eval mode (encoder via `AutoModel.from_pretrained`)."""
        directory = Path(directory)
        if not (directory / HEAD_SETTINGS).is_file() or not (directory / HEAD_WEIGHTS).is_file():
            raise AttexpError(
                f"{directory} is not a saved empirical explainer (expected {HEAD_SETTINGS} and {HEAD_WEIGHTS} next "
                "to the encoder's config.json). Run the distill job that writes it first."
            )
        settings = json.loads((directory / HEAD_SETTINGS).read_text())
        if settings.get("format_version") != FORMAT_VERSION:
            raise AttexpError(
                f"{directory / HEAD_SETTINGS} has format_version {settings.get('format_version')!r}; this attexp "
                f"reads version {FORMAT_VERSION}. Re-run the distill job with this version."
            )
        transformers.logging.set_verbosity_error()
        encoder = AutoModel.from_pretrained(directory)
        model = cls(encoder, head=settings["head"], max_length=settings["max_length"], dropout=settings["dropout"])
        model.head.load_state_dict(load_file(directory / HEAD_WEIGHTS))
        if device is not None:
            model.to(device)
        return model.eval()
