"""The engine factories of the training loops (as in ignite's own examples): the optimizer and schedule, the
trainer that does one optimisation step per batch, and the evaluator of a classifier. The loop that runs them with
its handlers is `attexp.train.fit`; the train stage's entry points are `attexp.train.fine_tune`; the distill stage
(`attexp.distill.empirical.training`) uses the same factories with its own loss and evaluator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from ignite.engine import Engine
from ignite.metrics import Accuracy, ConfusionMatrix, Loss, MetricsLambda
from torch import Tensor
from transformers import PreTrainedModel, get_linear_schedule_with_warmup

from attexp import distributed as dist
from attexp.errors import AttexpError
from attexp.models.precision import Precision, autocast, grad_scaler
from attexp.train.batches import model_inputs, to_device
from attexp.train.settings import TrainSettings

log = logging.getLogger(__name__)


def create_optimizer(
    model: torch.nn.Module, settings: TrainSettings, num_training_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on biases and LayerNorm weights) with linear warmup then linear decay to 0."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr)
    warmup = int(settings.warmup_ratio * num_training_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, num_training_steps)
    return optimizer, scheduler


def classification_loss(model: torch.nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Cross-entropy of a Hugging Face sequence classifier on a batch with `labels`."""
    return model(**model_inputs(batch), labels=batch["labels"]).loss


def create_trainer(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    settings: TrainSettings,
    device: torch.device | str,
    loss_fn: Callable[[torch.nn.Module, Mapping[str, Tensor]], Tensor] = classification_loss,
) -> Engine:
    """An ignite Engine doing one optimisation step per batch; its output is the batch loss (a float).

    The gradient norm is clipped to `settings.max_grad_norm` (when > 0); the scheduler steps every batch. The
    forward runs under `settings.precision`'s autocast; fp16 scales the loss (`attexp.models.precision`).
    """
    precision = getattr(settings, "precision", None)
    scaler = grad_scaler(device, precision)

    def step(engine: Engine, batch: Mapping[str, Tensor]) -> float:
        model.train()
        with autocast(device, precision):
            loss = loss_fn(model, to_device(batch, device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if settings.max_grad_norm > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        scaler.step(optimizer)  # skipped (and the scale lowered) when fp16 gradients overflowed
        scaler.update()
        scheduler.step()
        return loss.item()

    return Engine(step)


def _weighted_f1(confusion: Tensor) -> Tensor:
    """Support-weighted mean of per-class F1 (sklearn's `f1_score(average="weighted")`).

    `confusion` [C, C] has true labels in rows. Per-class F1 = 2 TP / (2 TP + FP + FN); a class with no
    predictions and some support scores 0, as in sklearn.
    """
    confusion = confusion.double()
    true_positives = confusion.diag()
    support = confusion.sum(dim=1)  # [C]
    f1 = 2 * true_positives / (support + confusion.sum(dim=0)).clamp_min(1e-12)
    return (f1 * support).sum() / support.sum().clamp_min(1e-12)


def create_evaluator(model: PreTrainedModel, device: torch.device | str, precision: Precision | None = None) -> Engine:
    """An ignite Engine computing `accuracy`, `f1_weighted` and `loss` (mean cross-entropy) of a classifier
    (forward under `precision`'s autocast, metrics in float32)."""
    num_classes = dist.unwrap(model).config.num_labels
    if num_classes < 2:
        raise AttexpError(f"the evaluator needs a classifier with at least 2 labels, got num_labels={num_classes}")

    @torch.no_grad()
    def step(engine: Engine, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        model.eval()
        batch = to_device(batch, device)
        with autocast(device, precision):
            logits = model(**model_inputs(batch)).logits.float()  # [B, C]
        return logits, batch["labels"]

    evaluator = Engine(step)
    Accuracy().attach(evaluator, "accuracy")
    Loss(F.cross_entropy).attach(evaluator, "loss")
    MetricsLambda(_weighted_f1, ConfusionMatrix(num_classes)).attach(evaluator, "f1_weighted")
    return evaluator
