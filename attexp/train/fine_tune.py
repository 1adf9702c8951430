"""The train stage's entry points: fine-tune a sequence classifier (`fine_tune`: select and early-stop on
validation weighted F1, resumable, data-parallel under torchrun) and score it on a split (`evaluate_classifier`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ignite.utils import manual_seed
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from attexp import distributed as dist
from attexp.errors import AttexpError
from attexp.models.inputs import batch_pad_id
from attexp.models.precision import Precision
from attexp.train.batches import encode_rows, make_loader
from attexp.train.engines import classification_loss, create_evaluator, create_optimizer, create_trainer
from attexp.train.fit import fit
from attexp.train.settings import ClassifierSettings

log = logging.getLogger(__name__)


@dataclass
class FineTuneResult:
    """Outcome of `fine_tune`; `history` has one `on_epoch` dict per epoch run (earlier runs included)."""

    best_epoch: int
    best_val_f1: float
    best_val_accuracy: float
    stopped_early: bool
    resumed_from_epoch: int
    best_checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def fine_tune(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_rows: Sequence[Mapping[str, Any]],
    val_rows: Sequence[Mapping[str, Any]],
    settings: ClassifierSettings,
    checkpoint_dir: Path,
    device: torch.device | str,
    on_epoch: Callable[[dict], None] | None = None,
    loss_fn: Callable[[torch.nn.Module, Mapping[str, torch.Tensor]], torch.Tensor] | None = None,
) -> FineTuneResult:
    """Fine-tune a sequence classifier; select and early-stop on validation weighted F1; resumable.

    The best weights (by validation weighted F1) are loaded back into `model`, which is left in eval mode.
    `loss_fn(model, batch)`: the training loss (default: the classifier's cross-entropy; `mask_augment`'s on masked
    copies of the batch, `attexp.train.augment`); validation always scores the unmasked texts.
    """
    if not train_rows or not val_rows:
        raise AttexpError(
            f"fine-tuning needs training and validation rows (got {len(train_rows)} and {len(val_rows)}); "
            "the validation split selects the best epoch and drives early stopping"
        )
    manual_seed(settings.seed)
    model.to(device)
    pad = batch_pad_id(model, tokenizer, required=True)
    train_loader = make_loader(
        encode_rows(train_rows, tokenizer, settings.max_length),
        settings.batch_size,
        pad,
        shuffle=True,
        seed=settings.seed,
        shard=True,
    )
    val_loader = make_loader(
        encode_rows(val_rows, tokenizer, settings.max_length), settings.eval_batch_size, pad, shard=True
    )
    optimizer, scheduler = create_optimizer(model, settings, len(train_loader) * settings.epochs)
    trained = dist.wrap_for_gradients(model)  # DDP under torchrun: each rank a share of every batch
    outcome = fit(
        model,
        create_trainer(trained, optimizer, scheduler, settings, device, loss_fn=loss_fn or classification_loss),
        create_evaluator(trained, device, settings.precision),
        train_loader,
        val_loader,
        settings,
        checkpoint_dir,
        training_state={"optimizer": optimizer, "scheduler": scheduler},
        report={"accuracy": "val_accuracy", "f1_weighted": "val_f1"},
        score_metric="f1_weighted",
        mode="max",
        on_epoch=on_epoch,
    )
    model.eval()
    best = outcome.history[[e["epoch"] for e in outcome.history].index(outcome.best_epoch)]
    return FineTuneResult(
        best_epoch=outcome.best_epoch,
        best_val_f1=best["val_f1"],
        best_val_accuracy=best["val_accuracy"],
        stopped_early=outcome.stopped_early,
        resumed_from_epoch=outcome.resumed_from_epoch,
        best_checkpoint=outcome.best_checkpoint,
        history=outcome.history,
    )


def evaluate_classifier(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[Mapping[str, Any]],
    batch_size: int,
    max_length: int,
    device: torch.device | str,
    precision: Precision | None = None,
) -> dict[str, float]:
    """`{"accuracy", "f1_weighted", "loss", "n"}` of a classifier on dataset rows (e.g. the test split). Under
    torchrun every rank scores its share of the rows and the metrics are all-reduced (every rank gets them all)."""
    if not rows:
        raise AttexpError("cannot evaluate a classifier on an empty split")
    model.to(device)
    loader = make_loader(
        encode_rows(rows, tokenizer, max_length), batch_size, batch_pad_id(model, tokenizer, required=True), shard=True
    )
    metrics = create_evaluator(model, device, precision).run(loader).metrics
    return {
        "accuracy": float(metrics["accuracy"]),
        "f1_weighted": float(metrics["f1_weighted"]),
        "loss": float(metrics["loss"]),
        "n": len(rows),
    }
