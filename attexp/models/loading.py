"""Load a classifier that the train stage saved, and pick the torch device a job runs on.

Downstream stages (explain, distill, evaluate) read `models/<job>/model/`, a plain `save_pretrained` folder,
so any Hugging Face tool can open it too. Attention-based explainers need the attention probabilities, which
transformers 5 only returns under eager attention (sdpa silently returns none), hence `eager_attention`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from attexp.errors import AttexpError


def resolve_device(name: Literal["auto", "cpu", "cuda"] | str) -> torch.device:
    """`auto` is CUDA when available, else CPU; asking for `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise AttexpError(
                'device "cuda" was asked for, but torch sees no CUDA GPU here '
                f'(torch {torch.__version__}). Use device: "auto" or "cpu".'
            )
        return torch.device("cuda")
    raise AttexpError(f'unknown device {name!r}; expected "auto", "cpu" or "cuda"')


def load_classifier(
    path: Path, eager_attention: bool = False, device: torch.device | str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The sequence classifier and tokenizer saved in `path` (a `models/<job>/model/` folder), in eval mode.

    `eager_attention=True` loads with `attn_implementation="eager"` so that `output_attentions=True` works.
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise AttexpError(
            f"no trained classifier at {path} (expected a save_pretrained folder with config.json). "
            "Run the train job that writes it first, or check the job name the config refers to."
        )
    transformers.logging.set_verbosity_error()
    kwargs = {"attn_implementation": "eager"} if eager_attention else {}
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer
