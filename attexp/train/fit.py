"""The training loop shared by the train and distill stages: `fit` attaches every handler in one place
(validation after each epoch, early stopping, the best model by validation score, a resumable checkpoint of the
whole training state each epoch, a progress bar and the caller's per-epoch callback) and runs the trainer.

Resuming: every epoch the trainer, model, optimizer, scheduler, early-stopping and best-checkpoint state,
the epoch history and the torch RNG state are written to `checkpoint_dir/last_checkpoint_<epoch>.pt`. A job
killed mid-run and started again with the same `checkpoint_dir` loads the newest one and continues with the
next epoch; a finished run is not trained again (its best weights are loaded back).
"""

from __future__ import annotations

import logging
import pickle  # only for its error type: checkpoints are read with torch's weights_only unpickler
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, EarlyStopping, ProgressBar, global_step_from_engine
from ignite.metrics import Average
from torch.utils.data import DataLoader

from attexp import distributed as dist
from attexp.errors import AttexpError
from attexp.train.settings import TrainSettings

log = logging.getLogger(__name__)


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
