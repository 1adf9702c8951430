"""LoRA fine-tuning (Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR) through peft.

With `lora:` the train stage freezes the classifier's weights and trains low-rank updates of the `target_modules`
(every linear layer by default: attention and MLP projections) plus the classification head, peft's SEQ_CLS task
(ModernBERT's prediction head, new for a classifier, is trained too). This is how decoder classifiers are fine-tuned
(the 0.5-8B base stays frozen, in bf16 if its source says so, while the adapters train in float32) and what people
publish: an adapter folder over a named base. The train job writes exactly that (`save_adapter`): the adapter in
safetensors, the tokenizer, and where the base is (`attexp.models.adapters.BASE_FILE`); every downstream job loads it
over its base and merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from attexp.config.schema import StrictModel
from attexp.io.files import write_json
from attexp.models.adapters import BASE_FILE
from attexp.models.prompted import PromptedClassifier, write_prompt


class LoraSettings(StrictModel):
    """r: the rank of each update; alpha: its scale is alpha / r; dropout: on the update's input;
    target_modules: the linear layers adapted, by name (e.g. ['q_proj', 'v_proj']) or 'all-linear'."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


def with_lora(model: Any, settings: LoraSettings) -> Any:
    """`model` (a sequence classifier) frozen under LoRA adapters (a `PeftModel`; adapters and head trainable).

    A prompted classifier (`attexp.models.prompted`) keeps its class: its LM gets the adapters in place (peft's
    CAUSAL_LM task; the LM head, whose label-word rows score the classes, stays frozen, so the classes keep the
    meaning of their words) and the `PeftModel` is kept as `model.adapter` for saving."""
    from peft import LoraConfig, TaskType, get_peft_model

    prompted = isinstance(model, PromptedClassifier)
    extra = ["head"] if getattr(model.config, "model_type", "") == "modernbert" else None
    config = LoraConfig(
        task_type=TaskType.CAUSAL_LM if prompted else TaskType.SEQ_CLS,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        modules_to_save=None if prompted else extra,
    )
    if prompted:
        object.__setattr__(model, "adapter", get_peft_model(model.lm, config))  # not a submodule: saved apart
        return model
    return get_peft_model(model, config)


def save_adapter(model: Any, tokenizer: Any, folder: Path, base: str, revision: str | None = None) -> None:
    """The adapter (safetensors), the tokenizer and the base's whereabouts (`base`: a folder, absolute or relative to
    `folder`, or a hub name with `revision`) with the class names, in `folder`."""
    if isinstance(model, PromptedClassifier):  # the LM's adapter, and the template and label words
        model.adapter.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        write_prompt(model, Path(folder))
        write_json(Path(folder) / BASE_FILE, {"base": base, "revision": revision})
        return
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    config = model.base_model.model.config
    record = {"base": base, "revision": revision, "num_labels": int(config.num_labels)}
    record["id2label"] = {str(k): v for k, v in config.id2label.items()}
    write_json(Path(folder) / BASE_FILE, record)


def trainable_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
