"""The train stage: fine-tune a sequence classifier on a download job's splits with pytorch-ignite.

Output (`models/<name>/`): `model/` (`save_pretrained` safetensors + tokenizer, loadable by any HF tool),
`metrics.jsonl` (one line per epoch) and test accuracy / weighted F1 of the best model in the manifest. With
`lora:` (`attexp.train.lora`) `model/` is a peft adapter folder over the base the model source names (a tiny
model built from a config has no other home: its frozen base is saved in `base/`), and the manifest records the
adapter's settings and the sha256 of the adapter and of the base.
While it runs, `checkpoints/` holds the best model and the trainer state of the last epoch, so a killed job
resumes at the next epoch; it is removed when the job finishes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny, model_validator

from attexp.config.schema import ComponentConfig, JobConfig, NeutralDefault, Registered, Upstream
from attexp.errors import AttexpError
from attexp.io.files import write_jsonl
from attexp.io.records import CLASSIFIER, DATASET
from attexp.models.adapters import base_of
from attexp.models.inputs import count_truncated
from attexp.models.loading import check_tokenizer_round_trip
from attexp.models.sources import folder_fingerprint
from attexp.registry import JOBS, MODELS
from attexp.runner import Job, JobContext, Splits
from attexp.train.augment import MaskAugment, masked_loss
from attexp.train.fine_tune import evaluate_classifier, fine_tune
from attexp.train.lora import LoraSettings, save_adapter, trainable_parameters, with_lora
from attexp.train.settings import ClassifierSettings

log = logging.getLogger(__name__)


class TrainConfig(ClassifierSettings, JobConfig):
    """Fine-tune `model` on the splits of the download job `data` (training settings: `ClassifierSettings`)."""

    job: Literal["train"] = "train"
    data: Annotated[str, Upstream(("download",))]
    model: Annotated[SerializeAsAny[ComponentConfig], Registered("model source")]
    lora: Annotated[LoraSettings | None, NeutralDefault()] = Field(
        None, description="train LoRA adapters and the head over the frozen model (peft) instead of every weight"
    )
    mask_augment: Annotated[MaskAugment | None, NeutralDefault()] = Field(
        None,
        description="mask a random fraction of each text's tokens at every step (F-Fidelity's fine-tuning, "
        "attexp.train.augment)",
    )

    @model_validator(mode="after")
    def _float32_weights(self) -> TrainConfig:
        dtype = getattr(self.model, "dtype", "float32")
        if dtype != "float32" and self.lora is None:
            raise ValueError(
                f"model.dtype={dtype!r}: fine-tuning every weight keeps them in float32 (a {dtype} weight loses the "
                f"updates smaller than its precision). Leave dtype at float32 and set precision: 'bf16' for bf16 "
                f"compute under autocast, or train LoRA adapters over the frozen {dtype} weights (lora: {{r: 8}})."
            )
        return self


@JOBS.register("train", TrainConfig)
class TrainJob(Job):
    """Fine-tune a classifier (ignite; early stopping on validation weighted F1)."""

    schema = CLASSIFIER
    folder = "models"
    splits = Splits.RANKS
    splits_because = (
        "DDP: every rank trains on a share of every batch and the gradients are all-reduced at each step, which "
        "needs torchrun's process group (array tasks have none)"
    )

    def run(self, config: TrainConfig, ctx: JobContext) -> None:
        data = ctx.upstream(config.data)
        splits = {s: data.read(DATASET, f"{s}.jsonl") for s in ("train", "validation", "test")}
        label_names = data.manifest.label_names
        device = ctx.device
        source = MODELS.get(config.model.type).cls(config.model)
        model, tokenizer = source.load(
            num_labels=len(label_names),
            label_names=label_names,
            train_texts=[r["text"] for r in splits["train"]]
            + [r["text_pair"] for r in splits["train"] if "text_pair" in r],
            cache_dir=ctx.cache_dir,
            seed=config.seed,
            root=ctx.base_dir,
        )

        check_tokenizer_round_trip(tokenizer, model, [r["text"] for r in splits["train"][:50]])
        base = None
        if config.lora is not None:  # the frozen base: where the source has it, else saved beside the adapter
            base = _base_of(source, model, ctx)
            model = with_lora(model, config.lora)

        def on_epoch(metrics: dict) -> None:
            ctx.log_metrics(metrics, step=metrics["epoch"])

        result = fine_tune(
            model,
            tokenizer,
            splits["train"],
            splits["validation"],
            config,
            checkpoint_dir=ctx.path("checkpoints"),
            device=device,
            on_epoch=on_epoch,
            loss_fn=masked_loss(config.mask_augment, tokenizer) if config.mask_augment is not None else None,
        )
        write_jsonl(ctx.path("metrics.jsonl"), result.history)
        test = evaluate_classifier(
            model, tokenizer, splits["test"], config.eval_batch_size, config.max_length, device, config.precision
        )
        if not ctx.is_main:  # every rank trained and tested its share; rank 0 writes
            return
        if base is not None:
            save_adapter(model, tokenizer, ctx.path("model"), *base)
            ctx.manifest.adapter = {
                "lora": config.lora.model_dump(mode="json"),
                "base": {"path": base[0], "revision": base[1], "sha256": _base_sha256(ctx.path("model"))},
                "sha256": folder_fingerprint(ctx.path("model")),
                "trainable_parameters": trainable_parameters(model),
            }
        else:
            model.save_pretrained(ctx.path("model"))
            tokenizer.save_pretrained(ctx.path("model"))
        shutil.rmtree(ctx.path("checkpoints"))  # only needed to resume an interrupted run (~3x the model)
        ctx.counts.update({s: len(rows) for s, rows in splits.items()})
        truncated = {s: count_truncated(tokenizer, rows, config.max_length) for s, rows in splits.items()}
        if any(truncated.values()):
            log.warning(
                "%s: rows longer than max_length=%d tokens, trained and tested cut to it: %s",
                config.name,
                config.max_length,
                truncated,
            )
        manifest = ctx.manifest
        manifest.truncated = truncated
        manifest.label_names = label_names
        manifest.device = str(device)
        manifest.best_epoch = result.best_epoch
        manifest.best_validation_f1 = result.best_val_f1
        manifest.test = {"accuracy": test["accuracy"], "f1_weighted": test["f1_weighted"], "loss": test["loss"]}
        manifest.parameters = sum(p.numel() for p in model.parameters())
        ctx.log_metrics({"test_accuracy": test["accuracy"], "test_f1": test["f1_weighted"]})
        ctx.tracker.summary({"test_accuracy": test["accuracy"], "test_f1": test["f1_weighted"]})


def _base_of(source, model, ctx: JobContext) -> tuple[str, str | None]:
    """Where the frozen base of a LoRA run stays: (folder or hub name, revision). A source that keeps its model
    somewhere (packaged, local, hub) is referred to; a model built from a config (tiny) is saved in `base/`."""
    try:
        where, kwargs = source.pretrained(ctx.cache_dir, root=ctx.base_dir)
    except AttexpError:  # built untrained from a config: nowhere else to find it
        if ctx.is_main:
            model.save_pretrained(ctx.path("base"))
        return "../base", None
    if isinstance(where, Path):
        return str(where.resolve()), None
    return where, kwargs.get("revision")  # a hub name


def _base_sha256(model_dir: Path) -> str | None:
    """The sha256 of the base's files where they are on disk (a hub base: None), found as loading finds them (from
    the base record `save_adapter` wrote in `model_dir`)."""
    where, _ = base_of(model_dir, {})
    return folder_fingerprint(where) if isinstance(where, Path) and where.is_dir() else None
