"""LoRA adapters (peft) as classifiers: an adapter folder names its base model and loads over it.

What people publish for decoder classifiers is a peft adapter folder (`adapter_config.json` and
`adapter_model.safetensors`, peft's SEQ_CLS task: the low-rank updates plus the trained score head) over a named
base model. attexp reads such a folder wherever it reads a classifier (`load_classifier` sees `adapter_config.json`),
from a train job with `lora:` or from the `peft` model source:

- the base: `base_model_name_or_path` of `adapter_config.json` (a hub name or a folder), or the base attexp's train
  stage recorded beside the adapter (`BASE_FILE`: a folder relative to the adapter's, e.g. `../base` for a tiny model
  built from a config, or the folder or hub name the train job read), or a base given by the caller (the `peft`
  source's `base`, e.g. a local copy of a hub base when the hub is out of reach);
- the class names and count from `BASE_FILE` when attexp wrote it, else the base's config;
- the merged model: every explainer and analysis reads weights (ALTI, AttAttr, head masks read the projections;
  LIG hooks the embeddings), so the adapter is merged into a copy of the base (`merge_and_unload`): a plain
  transformers classifier whose logits equal the unmerged model's to float noise (tested to 1e-5). `merge=False`
  keeps the `PeftModel` (the equality test reads both).

Nothing in an adapter folder runs code: the weights must be safetensors (`adapter_model.safetensors`); a folder with
pickled weights (`.bin`, `.pt`, `.pth`, `.pkl`, `.ckpt`) is refused with the fix, and peft is told to read
safetensors only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from attexp.errors import AttexpError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
BASE_FILE = "attexp_adapter.json"
"""Written by the train stage beside the adapter: {"base": folder (relative to the adapter's) or hub name,
"revision", "num_labels", "id2label"}."""
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt", ".pickle")


def is_adapter(folder: Path | str) -> bool:
    """Whether `folder` is a peft adapter folder (it has `adapter_config.json`)."""
    return isinstance(folder, Path) and (folder / ADAPTER_CONFIG).is_file()


def check_adapter_folder(folder: Path) -> dict[str, Any]:
    """The folder's `adapter_config.json`, after refusing what would run code or is not LoRA for classification."""
    pickled = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickled or not (folder / ADAPTER_WEIGHTS).is_file():
        found = f"pickled weights {pickled}" if pickled else f"no {ADAPTER_WEIGHTS}"
        raise AttexpError(
            f"{folder}: {found}. attexp reads adapter weights from safetensors only (a pickle can run code when it is "
            f"loaded). Convert it where you trust it: PeftModel.from_pretrained(base, folder).save_pretrained(out, "
            f"safe_serialization=True)."
        )
    try:
        config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except ValueError as err:
        raise AttexpError(f"{folder / ADAPTER_CONFIG}: not valid JSON ({err}).") from None
    kind, task = config.get("peft_type"), config.get("task_type")
    if kind != "LORA" or task not in (None, "SEQ_CLS", "CAUSAL_LM"):
        raise AttexpError(
            f"{folder}: a {kind} adapter for task {task!r}; attexp reads LoRA adapters of sequence classifiers "
            f"(peft_type LORA, task_type SEQ_CLS), or of causal LMs read through label words (CAUSAL_LM)."
        )
    return config


def base_of(folder: Path, config: dict[str, Any], base: str | Path | None = None) -> tuple[str | Path, dict[str, Any]]:
    """Where the base model of the adapter in `folder` is, and what attexp recorded of it (`BASE_FILE`, or {})."""
    recorded = json.loads((folder / BASE_FILE).read_text(encoding="utf-8")) if (folder / BASE_FILE).is_file() else {}
    if base is not None:
        return base, recorded
    named = recorded.get("base") or config.get("base_model_name_or_path")
    if not named:
        raise AttexpError(
            f"{folder}: the adapter names no base model (base_model_name_or_path is empty). Give one: the `peft` "
            f"model source's `base`."
        )
    local = (folder / named).resolve() if not Path(named).is_absolute() else Path(named)
    if local.is_dir():
        return local, recorded
    if Path(named).is_absolute() or named.startswith("."):
        raise AttexpError(f"{folder}: its base model folder {named} is not there. Give the base: the source's `base`.")
    return named, recorded  # a hub name


def load_adapter_classifier(
    folder: Path,
    base: str | Path | None = None,
    dtype: torch.dtype | str = torch.float32,
    attn_implementation: str | None = None,
    merge: bool = True,
    causal: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The classifier of the LoRA adapter in `folder` over its base (module docstring): merged unless `merge=False`,
    in `dtype`, and the tokenizer (the adapter folder's when it has one, else the base's). `causal`: the base is a
    causal LM (an adapter of a prompted classifier, CAUSAL_LM task; the caller reads it through its label words)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    config = check_adapter_folder(folder)
    if (config.get("task_type") == "CAUSAL_LM") != causal:
        raise AttexpError(
            f"{folder}: a {config.get('task_type')} adapter read as "
            f"{'a prompted classifier' if causal else 'a sequence classifier'}: an adapter of a causal LM is read "
            f"through label words (its folder's attexp_prompt.json, or a `head`), a SEQ_CLS adapter without them"
        )
    where, recorded = base_of(folder, config, base)
    transformers.logging.set_verbosity_error()
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if recorded.get("revision"):
        kwargs["revision"] = recorded["revision"]
    if "id2label" in recorded and not causal:  # a prompted classifier's classes are its label words'
        id2label = {int(k): v for k, v in recorded["id2label"].items()}
        kwargs |= {"num_labels": len(id2label), "id2label": id2label, "label2id": {v: k for k, v in id2label.items()}}
    try:
        loader = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
        model = loader.from_pretrained(where, **kwargs)
        adapted = PeftModel.from_pretrained(model, folder, is_trainable=False)  # safetensors: checked above
    except (OSError, ValueError, RuntimeError) as err:
        raise AttexpError(
            f"{folder}: could not load the adapter over its base {where}: {str(err).splitlines()[0][:300]}"
        ) from err
    tokenizer_home = folder if (folder / "tokenizer_config.json").is_file() else where
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_home)
    adapted.eval()
    return (adapted.merge_and_unload() if merge else adapted), tokenizer
