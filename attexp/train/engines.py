"""Fine-tuning loops as pytorch-ignite engines, shared by the train and distill stages.

Following ignite's own examples, the loop is built from engine factories (`create_trainer`, `create_evaluator`)
and one function, `fit`, that attaches every handler in one place: validation after each epoch, early stopping
(`EarlyStopping`), the best model by validation score (`Checkpoint`), a resumable checkpoint of the whole
training state each epoch, a tqdm progress bar (`ProgressBar`) and the caller's per-epoch callback. The train
stage (`fine_tune`) and the distill stage (`attexp.distill.empirical.training.distill`) differ only in the loss, the
evaluator and the score they select on.

Resuming: every epoch the trainer, model, optimizer, scheduler, early-stopping and best-checkpoint state,
the epoch history and the torch RNG state are written to `checkpoint_dir/last_checkpoint_<epoch>.pt`. A job
killed mid-run and started again with the same `checkpoint_dir` loads the newest one and continues with the
next epoch; a finished run is not trained again (its best weights are loaded back).

Batches are length-bucketed and padded dynamically (to the longest sequence in the batch), so the cost of a
batch follows its real lengths rather than `max_length`.
"""

from __future__ import annotations

import logging
import math
import pickle  # only for its error type: checkpoints are read with torch's weights_only unpickler
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, EarlyStopping, ProgressBar, global_step_from_engine
from ignite.metrics import Accuracy, Average, ConfusionMatrix, Loss, MetricsLambda
from ignite.utils import manual_seed
from torch import Tensor
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from attexp import distributed as dist
from attexp.errors import AttexpError
from attexp.models.inputs import pad_features, pad_id, tokenize_rows
from attexp.models.precision import Precision, autocast, grad_scaler
from attexp.train.settings import ClassifierSettings, TrainSettings

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------------------
# Data: encoding, dynamic padding, length buckets


def encode_rows(
    rows: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[dict[str, Any]]:
    """Tokenize dataset rows (`{"idx", "text", "label"}` plus `"text_pair"` for pairs) without padding.

    Returns one feature per row: `{"idx", "input_ids", "label"}` plus `"token_type_ids"` when the tokenizer
    produces them (sentence pairs get segment ids 0/1). Sequences are truncated to `max_length` tokens.
    """
    if not rows:
        return []
    missing = [key for key in ("idx", "text", "label") if key not in rows[0]]
    if missing:
        raise AttexpError(f"dataset rows need the keys idx, text, label; the first row lacks {missing}: {rows[0]}")
    encoded = tokenize_rows(tokenizer, rows, max_length)
    return [
        {"idx": row["idx"], **feature, "label": int(row["label"])} for row, feature in zip(rows, encoded, strict=True)
    ]


def pad_collate(features: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, Tensor]:
    """Stack features into a batch padded to its longest sequence.

    Always gives `input_ids` and `attention_mask` [B, T]; `token_type_ids` [B, T] when the features have them;
    `labels` [B] from `label`; `attributions` [B, T] (float, 0 on padding) and `targets` [B] (the class each
    was explained for, when every feature has a `target`) for explainer distillation.
    """
    ids, mask, types = pad_features(features, pad_token_id)  # each [B, T]
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    first = features[0]
    if "attributions" in first:
        batch["attributions"] = torch.zeros(ids.shape, dtype=torch.float)
        for row, feature in enumerate(features):
            batch["attributions"][row, : len(feature["attributions"])] = torch.tensor(feature["attributions"])
    if "label" in first:
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    if all("target" in f for f in features):
        batch["targets"] = torch.tensor([f["target"] for f in features], dtype=torch.long)
    return batch


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar length: sorted by length within random chunks of `bucket_batches` batches.

    Training (`shuffle=True`): each epoch draws a permutation from `seed + epoch` (set by `set_epoch`, which
    `fit` calls at every epoch start, so a resumed run sees the same order as an uninterrupted one), sorts
    each chunk by length, and shuffles the order of the resulting batches. Evaluation: sorted by length.

    Data-parallel (`world_size` > 1): every rank draws the same global batches of `batch_size` rows and takes
    its share of each (rows `rank::world_size`), so the global batch is the config's `batch_size` split over the
    ranks and DDP's averaged gradient is the one-process gradient of that batch (exactly when the ranks' shares
    are equal in size). In training, a last global batch with fewer rows than ranks is dropped (every rank must
    step together); in evaluation a rank whose share of a batch is empty skips it (the metrics are all-reduced).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        bucket_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1:
            raise AttexpError(f"batch_size must be at least 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_batches = bucket_batches
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        by_length = self.lengths.__getitem__
        if not self.shuffle:
            order = sorted(range(len(self.lengths)), key=by_length)
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(len(self.lengths), generator=generator).tolist()
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(perm), chunk):
            part = sorted(perm[start : start + chunk], key=by_length)
            batches += [part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def _shares(self) -> list[list[int]]:
        """This rank's share of every global batch (all of them for one process)."""
        batches = self._batches()
        if self.world_size == 1:
            return batches
        if self.shuffle:
            batches = [b for b in batches if len(b) >= self.world_size]
        return [share for b in batches if (share := b[self.rank :: self.world_size])]

    def __iter__(self):
        return iter(self._shares())

    def __len__(self) -> int:
        if self.world_size == 1:
            return math.ceil(len(self.lengths) / self.batch_size)
        return len(self._shares())


def make_loader(
    features: Sequence[Mapping[str, Any]],
    batch_size: int,
    pad_token_id: int,
    shuffle: bool = False,
    seed: int = 0,
    shard: bool = False,
) -> DataLoader:
    """A DataLoader over encoded features with length buckets and dynamic padding (`pad_collate`). `shard`: under
    torchrun, this rank's share of every batch (`LengthBucketSampler`); one process gets every row either way."""
    rank, world = (dist.rank(), dist.world_size()) if shard else (0, 1)
    sampler = LengthBucketSampler(
        [len(f["input_ids"]) for f in features], batch_size, shuffle, seed, rank=rank, world_size=world
    )
    return DataLoader(features, batch_sampler=sampler, collate_fn=partial(pad_collate, pad_token_id=pad_token_id))


def to_device(batch: Mapping[str, Tensor], device: torch.device | str) -> dict[str, Tensor]:
    return {key: value.to(device) for key, value in batch.items()}


def model_inputs(batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The encoder inputs of a batch (`input_ids`, `attention_mask`, `token_type_ids` when present)."""
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


# ---------------------------------------------------------------------------------------------------------------
# Engine factories


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


# ---------------------------------------------------------------------------------------------------------------
# The loop: handlers in one place, resumable


class _SaveThenDelete(DiskSaver):
    """A DiskSaver that deletes a superseded checkpoint only once its successor is on disk.

    ignite's Checkpoint removes the old file before writing the new one; a process killed in between would
    leave no checkpoint to resume from.
    """

    def __init__(self, dirname: Path) -> None:
        super().__init__(dirname, require_empty=False)
        self._superseded: list[str] = []

    def remove(self, filename: str) -> None:
        self._superseded.append(filename)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, filename, metadata)  # written by rank `save_on_rank` (0) alone
        if dist.rank() == self.save_on_rank:
            for old in self._superseded:
                if old != filename:
                    (self.dirname / old).unlink(missing_ok=True)
        self._superseded.clear()


class _History:
    """Per-epoch summaries, checkpointed with the training state so a resumed run reports every epoch."""

    def __init__(self) -> None:
        self.entries: list[dict[str, float]] = []

    def state_dict(self) -> dict:
        return {"entries": [dict(e) for e in self.entries]}

    def load_state_dict(self, state: Mapping) -> None:
        self.entries = [dict(e) for e in state["entries"]]


class _TorchRng:
    """The torch RNG state (dropout), checkpointed so a resumed run continues exactly as an uninterrupted one."""

    def state_dict(self) -> dict:
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class FitOutcome:
    """What `fit` reports: the epoch history (resumed epochs included) and the best epoch."""

    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    best_checkpoint: Path
    stopped_early: bool
    resumed_from_epoch: int  # 0 for a fresh run


def _epoch_of(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[-1])


def fit(
    model: torch.nn.Module,
    trainer: Engine,
    evaluator: Engine,
    train_loader: DataLoader,
    val_loader: DataLoader,
    settings: TrainSettings,
    checkpoint_dir: Path,
    training_state: Mapping[str, Any],
    report: Mapping[str, str],
    score_metric: str,
    mode: Literal["max", "min"] = "max",
    on_epoch: Callable[[dict], None] | None = None,
) -> FitOutcome:
    """Run `trainer` for `settings.epochs` epochs with validation, early stopping, checkpoints and resume.

    `training_state` holds the objects besides the trainer and model whose state a resume needs (optimizer,
    scheduler). `report` maps evaluator metric names to history keys (e.g. `{"f1_weighted": "val_f1"}`);
    `score_metric` is the evaluator metric that selects the best model and drives early stopping (`mode` says
    whether higher or lower is better). Each epoch, in this order: validate; keep the model if it is the best
    so far (`best_model_<epoch>_...pt`); update early stopping; save the resumable state
    (`last_checkpoint_<epoch>.pt`); call `on_epoch` with `{"epoch", "train_loss", <report keys>, "seconds"}`.
    At the end the best weights are loaded back into `model`.

    Data-parallel: under torchrun every rank calls `fit` with the same arguments, `trainer` and `evaluator` built
    on the DDP-wrapped model (`attexp.distributed.wrap_for_gradients`) and the loaders made with `shard=True`;
    `model` is the unwrapped module. The metrics (train loss, validation scores) are all-reduced by ignite, so
    every rank selects and stops alike; rank 0 alone writes and deletes checkpoints, and every rank loads them.
    """
    checkpoint_dir = Path(checkpoint_dir)
    sign = 1.0 if mode == "max" else -1.0
    history, started = _History(), [0.0]

    Average().attach(trainer, "train_loss")  # mean batch loss of the epoch, in trainer.state.metrics

    best = Checkpoint(
        {"model": model},
        _SaveThenDelete(checkpoint_dir),
        filename_prefix="best",
        score_function=lambda engine: sign * engine.state.metrics[score_metric],
        score_name=f"val_{score_metric}" if mode == "max" else f"neg_val_{score_metric}",
        n_saved=1,
        global_step_transform=global_step_from_engine(trainer),
    )
    stopper = EarlyStopping(
        settings.patience, score_function=lambda engine: engine.state.metrics[score_metric], trainer=trainer, mode=mode
    )
    last = Checkpoint(
        {
            "trainer": trainer,
            "model": model,
            **training_state,
            "best": best,
            "early_stopping": stopper,
            "history": history,
            "rng": _TorchRng(),
        },
        _SaveThenDelete(checkpoint_dir),
        filename_prefix="last",
        n_saved=1,
        global_step_transform=global_step_from_engine(trainer),
        include_self=True,
    )

    @trainer.on(Events.EPOCH_STARTED)
    def start_epoch(engine: Engine) -> None:
        started[0] = time.perf_counter()
        sampler = getattr(train_loader, "batch_sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(engine.state.epoch)

    @trainer.on(Events.EPOCH_COMPLETED)
    def validate(engine: Engine) -> None:
        evaluator.run(val_loader)  # fires `best` and `stopper` on evaluator COMPLETED
        metrics = evaluator.state.metrics
        entry = {"epoch": engine.state.epoch, "train_loss": float(engine.state.metrics["train_loss"])}
        entry.update({key: float(metrics[name]) for name, key in report.items()})
        entry["seconds"] = time.perf_counter() - started[0]
        history.entries.append(entry)

    evaluator.add_event_handler(Events.COMPLETED, best)
    evaluator.add_event_handler(Events.COMPLETED, stopper)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, last)
    if on_epoch is not None:
        trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda: on_epoch(dict(history.entries[-1])))
    if settings.progress and dist.is_main():
        ProgressBar(persist=False).attach(trainer, output_transform=lambda loss: {"loss": loss})

    resumed = _resume(checkpoint_dir, last, best)
    finished = resumed >= settings.epochs or (resumed > 0 and stopper.counter >= settings.patience)
    if not finished:
        trainer.run(train_loader, max_epochs=settings.epochs)

    if best.last_checkpoint is None:
        raise AttexpError(f"no best checkpoint in {checkpoint_dir} after training; was any epoch run?")
    dist.barrier()  # rank 0 has written the best checkpoint
    model.load_state_dict(_load_tensors(Path(best.last_checkpoint)))
    key = report[score_metric]
    scores = [sign * e[key] for e in history.entries]
    best_index = scores.index(max(scores))
    return FitOutcome(
        history=[dict(e) for e in history.entries],
        best_epoch=int(history.entries[best_index]["epoch"]),
        best_score=history.entries[best_index][key],
        best_checkpoint=Path(best.last_checkpoint),
        stopped_early=stopper.counter >= settings.patience,
        resumed_from_epoch=resumed,
    )


def _load_tensors(path: Path) -> Any:
    """A checkpoint of ignite's `DiskSaver`, read with torch's `weights_only` unpickler (tensors, numbers, strings
    and containers only): a file planted with code in it is refused, not run."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        why = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        raise AttexpError(
            f"{path}: not a checkpoint of plain tensors ({why}); it is not loaded. Delete the folder {path.parent} "
            f"to train from the start."
        ) from None


def _resume(checkpoint_dir: Path, last: Checkpoint, best: Checkpoint) -> int:
    """Load the newest `last_checkpoint_<epoch>.pt` into the objects `last` saves; return its epoch (0: none).

    Tidies what a kill may leave behind: older `last_*` files, and `best_*` files the loaded state does not
    know. If the process died after saving a new best model but before saving the epoch's state, the
    recorded best file is gone; the best-model record is then reset and the repeated epoch saves it again.
    """
    found = sorted(checkpoint_dir.glob("last_checkpoint_*.pt"), key=_epoch_of)
    tidy = dist.is_main()  # under torchrun every rank loads, rank 0 alone deletes
    if not found:  # a fresh run: best models of an unknown earlier run would only confuse
        for stray in checkpoint_dir.glob("best_*.pt") if tidy else ():
            stray.unlink(missing_ok=True)
        dist.barrier()
        return 0
    newest = found[-1]
    state = _load_tensors(newest)
    Checkpoint.load_objects({**last.to_save, "checkpointer": last}, state)
    for stale in found[:-1] if tidy else ():
        stale.unlink(missing_ok=True)
    if best.last_checkpoint is not None and not Path(best.last_checkpoint).is_file():
        log.warning(
            "best checkpoint %s is missing; the best-model record restarts at the next epoch", best.last_checkpoint
        )
        best.reset()
    keep = {Path(best.last_checkpoint).name} if best.last_checkpoint is not None else set()
    for stray in checkpoint_dir.glob("best_*.pt") if tidy else ():
        if stray.name not in keep:
            stray.unlink(missing_ok=True)
    dist.barrier()
    epoch = last.to_save["trainer"].state.epoch
    log.info("resuming from %s (epoch %d done)", newest.name, epoch)
    return epoch


# ---------------------------------------------------------------------------------------------------------------
# The train stage's entry points


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
) -> FineTuneResult:
    """Fine-tune a sequence classifier; select and early-stop on validation weighted F1; resumable.

    The best weights (by validation weighted F1) are loaded back into `model`, which is left in eval mode.
    """
    if not train_rows or not val_rows:
        raise AttexpError(
            f"fine-tuning needs training and validation rows (got {len(train_rows)} and {len(val_rows)}); "
            "the validation split selects the best epoch and drives early stopping"
        )
    manual_seed(settings.seed)
    model.to(device)
    pad = pad_id(tokenizer)
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
        create_trainer(trained, optimizer, scheduler, settings, device),
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
    loader = make_loader(encode_rows(rows, tokenizer, max_length), batch_size, pad_id(tokenizer), shard=True)
    metrics = create_evaluator(model, device, precision).run(loader).metrics
    return {
        "accuracy": float(metrics["accuracy"]),
        "f1_weighted": float(metrics["f1_weighted"]),
        "loss": float(metrics["loss"]),
        "n": len(rows),
    }
