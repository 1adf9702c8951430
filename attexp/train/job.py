"""The train stage: fine-tune a sequence classifier on a download job's splits with pytorch-ignite.

Output (`models/<name>/`): `model/` (`save_pretrained` safetensors + tokenizer, loadable by any HF tool),
`metrics.jsonl` (one line per epoch) and test accuracy / weighted F1 of the best model in the manifest.
While it runs, `checkpoints/` holds the best model and the trainer state of the last epoch, so a killed job
resumes at the next epoch; it is removed when the job finishes.
"""

from __future__ import annotations

import logging
import shutil
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny

from attexp.config.schema import ComponentConfig, JobConfig, Registered, Upstream
from attexp.io.files import write_jsonl
from attexp.io.records import CLASSIFIER, DATASET
from attexp.models.loading import resolve_device
from attexp.registry import JOBS, MODELS
from attexp.runner import Job, JobContext
from attexp.train.engines import TrainSettings, evaluate_classifier, fine_tune

log = logging.getLogger(__name__)


class TrainConfig(JobConfig):
    """Fine-tune `model` on the splits of the download job `data`."""

    job: Literal["train"] = "train"
    data: Annotated[str, Upstream(("download",))]
    model: Annotated[SerializeAsAny[ComponentConfig], Registered("model source")]
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(2, ge=1, description="epochs without validation F1 gain before stopping")
    max_length: int = Field(128, ge=8)
    progress: bool = True


@JOBS.register("train", TrainConfig)
class TrainJob(Job):
    """Fine-tune a classifier (ignite; early stopping on validation weighted F1)."""

    schema = CLASSIFIER
    folder = "models"

    def run(self, config: TrainConfig, ctx: JobContext) -> None:
        data = ctx.upstream(config.data)
        splits = {s: data.read(DATASET, f"{s}.jsonl") for s in ("train", "validation", "test")}
        label_names = data.manifest["label_names"]
        device = resolve_device(config.device)
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
        settings = TrainSettings(
            epochs=config.epochs,
            batch_size=config.batch_size,
            eval_batch_size=config.eval_batch_size,
            lr=config.lr,
            weight_decay=config.weight_decay,
            warmup_ratio=config.warmup_ratio,
            max_grad_norm=config.max_grad_norm,
            patience=config.patience,
            max_length=config.max_length,
            seed=config.seed,
            progress=config.progress,
        )

        def on_epoch(metrics: dict) -> None:
            ctx.log_metrics(metrics, step=metrics["epoch"])

        result = fine_tune(
            model,
            tokenizer,
            splits["train"],
            splits["validation"],
            settings,
            checkpoint_dir=ctx.path("checkpoints"),
            device=device,
            on_epoch=on_epoch,
        )
        write_jsonl(ctx.path("metrics.jsonl"), result.history)
        test = evaluate_classifier(model, tokenizer, splits["test"], config.eval_batch_size, config.max_length, device)
        model.save_pretrained(ctx.path("model"))
        tokenizer.save_pretrained(ctx.path("model"))
        shutil.rmtree(ctx.path("checkpoints"))  # only needed to resume an interrupted run (~3x the model)
        ctx.counts.update({s: len(rows) for s, rows in splits.items()})
        ctx.manifest_extra.update(
            label_names=label_names,
            device=str(device),
            best_epoch=result.best_epoch,
            best_validation_f1=result.best_val_f1,
            test={"accuracy": test["accuracy"], "f1_weighted": test["f1_weighted"], "loss": test["loss"]},
            parameters=sum(p.numel() for p in model.parameters()),
        )
        ctx.log_metrics({"test_accuracy": test["accuracy"], "test_f1": test["f1_weighted"]})
        ctx.tracker.summary({"test_accuracy": test["accuracy"], "test_f1": test["f1_weighted"]})
