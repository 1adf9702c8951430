"""Train an empirical explainer on explanation records (Schwarzenberg et al. 2021).

The training pairs are the explain stage's records: their `input_ids` are fed as they are (the classifier's
tokenization, specials included) and their `attributions` are the regression targets. The loss is the mean
squared error over real tokens only, padding masked out, plus `correlation_weight` times the mean over
instances of (1 - the Pearson correlation of scores and targets over the instance's real tokens). The loop is
the train stage's (`attexp.train.engines`, `attexp.train.fit`): the same trainer factory with a different loss,
validation each epoch, early stopping on validation MSE, the best model kept by ignite's `Checkpoint`, and the
same resume-at-the-next-epoch behaviour. `build_explainer` makes the explainer of the settings' `mode`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from ignite.exceptions import NotComputableError
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce
from ignite.utils import manual_seed
from torch import Tensor
from transformers import PreTrainedModel

from attexp import distributed as dist
from attexp.distill.empirical.frozen import ReadsClassifier
from attexp.distill.empirical.heads import FEATURES, HeadsExplainerModel
from attexp.distill.empirical.loading import LearnedExplainer
from attexp.distill.empirical.model import EmpiricalExplainerModel, SharedExplainerModel
from attexp.errors import AttexpError
from attexp.models.inputs import pad_id
from attexp.train.batches import make_loader, model_inputs, to_device
from attexp.train.engines import create_optimizer, create_trainer
from attexp.train.fit import fit
from attexp.train.settings import DistillSettings


@dataclass
class DistillResult:
    """Outcome of `distill`: the trained explainer (best epoch's weights, eval mode) and the epoch history."""

    model: LearnedExplainer
    best_epoch: int
    best_val_mse: float
    stopped_early: bool
    resumed_from_epoch: int
    best_checkpoint: Path
    history: list[dict[str, float]] = field(default_factory=list)


def explainer_scores(model: torch.nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """The explainer's scores [B, T] for a batch; a per-class (`head="class"`) explainer reads the column of
    the class each record's teacher explained (`targets`, from the records' `target`)."""
    if getattr(dist.unwrap(model), "head_type", None) != "class":  # DDP hides the module's attributes
        return model(**model_inputs(batch))
    if "targets" not in batch:
        raise AttexpError(
            "head 'class' learns each record's scores as those of the class its teacher explained, but these "
            "explanation records have no 'target'; re-run the explain job, or distil with head 'token'"
        )
    return model(**model_inputs(batch), targets=batch["targets"])


def masked_mse(scores: Tensor, targets: Tensor, attention_mask: Tensor, tokens: Tensor | None = None) -> Tensor:
    """Mean squared error over real tokens: scores, targets, attention_mask [B, T] -> scalar. `tokens`: the count
    to divide by (default: this batch's real tokens)."""
    mask = attention_mask.to(scores.dtype)
    return ((scores - targets) ** 2 * mask).sum() / (mask.sum() if tokens is None else tokens).clamp_min(1.0)


def masked_pearson(scores: Tensor, targets: Tensor, attention_mask: Tensor, eps: float = 1e-12) -> Tensor:
    """Pearson correlation per instance over its real tokens: [B, T] x 3 -> [B] (0 where either side is
    constant)."""
    mask = attention_mask.to(scores.dtype)
    count = mask.sum(dim=1, keepdim=True).clamp_min(1.0)
    x = (scores - (scores * mask).sum(dim=1, keepdim=True) / count) * mask
    y = (targets - (targets * mask).sum(dim=1, keepdim=True) / count) * mask
    # clamped inside the root: its gradient at 0 (a constant instance) would be infinite
    return (x * y).sum(dim=1) / (x.pow(2).sum(dim=1) * y.pow(2).sum(dim=1)).clamp_min(eps).sqrt()


def distill_loss(correlation_weight: float = 0.0) -> Callable[[torch.nn.Module, Mapping[str, Tensor]], Tensor]:
    """The trainer's loss for `create_trainer`: masked MSE between predicted and target attributions, plus
    `correlation_weight` x mean(1 - per-instance Pearson correlation)."""

    def loss(model: torch.nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
        scores, targets, mask = explainer_scores(model, batch), batch["attributions"], batch["attention_mask"]
        # Under DDP each rank holds a share of the global batch and the gradients are averaged over the ranks: the
        # share's squared error is divided by the ranks' mean token count, so that the average is the gradient of
        # the global batch's MSE over its real tokens (shares of different lengths weigh by their tokens).
        value = masked_mse(scores, targets, mask, dist.mean_over_ranks(mask.sum().to(scores.dtype)))
        if correlation_weight:
            value = value + correlation_weight * (1.0 - masked_pearson(scores.float(), targets, mask)).mean()
        return value

    return loss


class MaskedMSE(Metric):
    """ignite metric: squared error summed over real tokens / number of real tokens (padding excluded)."""

    @reinit__is_reduced
    def reset(self) -> None:
        self._squared_error = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._tokens = torch.tensor(0.0, dtype=torch.float64, device=self._device)

    @reinit__is_reduced
    def update(self, output: tuple[Tensor, Tensor, Tensor]) -> None:
        scores, targets, mask = (t.detach().to(self._device, torch.float64) for t in output)  # each [B, T]
        self._squared_error += ((scores - targets) ** 2 * mask).sum()
        self._tokens += mask.sum()

    @sync_all_reduce("_squared_error", "_tokens")
    def compute(self) -> float:
        if self._tokens == 0:
            raise NotComputableError("MaskedMSE needs at least one real token before it can be computed")
        return (self._squared_error / self._tokens).item()


def create_explainer_evaluator(model: LearnedExplainer, device: torch.device | str) -> Engine:
    """An ignite Engine computing `mse`, the validation MSE over real tokens."""

    @torch.no_grad()
    def step(engine: Engine, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        model.eval()
        batch = to_device(batch, device)
        return explainer_scores(model, batch), batch["attributions"], batch["attention_mask"]

    evaluator = Engine(step)
    MaskedMSE().attach(evaluator, "mse")
    return evaluator


def token_type_ids_from_sep(input_ids: Sequence[int], sep_token_id: int) -> list[int]:
    """BERT segment ids for a stored token sequence: 0 up to and including the first [SEP], 1 after it."""
    types, segment = [], 0
    for token in input_ids:
        types.append(segment)
        if token == sep_token_id:
            segment = 1
    return types


def encode_records(
    records: Sequence[Mapping[str, Any]], max_length: int, sep_token_id: int | None = None
) -> list[dict[str, Any]]:
    """Features `{"idx", "input_ids", "attributions"}` (+ `target`, the class the teacher explained, where the
    record has one; + `token_type_ids` when `sep_token_id` is given).

    Records are never truncated (that would drop their final [SEP] and shift what the explainer sees);
    one longer than `max_length` is an error.
    """
    features = []
    for record in records:
        ids, scores = list(record["input_ids"]), [float(a) for a in record["attributions"]]
        if len(ids) != len(scores):
            raise AttexpError(
                f"explanation record idx={record.get('idx')} has {len(ids)} input_ids but {len(scores)} attributions; "
                "they must align one score per token"
            )
        if len(ids) > max_length:
            raise AttexpError(
                f"explanation record idx={record.get('idx')} has {len(ids)} tokens, more than the distill "
                f"max_length={max_length}; set max_length to at least the explain stage's max_length"
            )
        feature = {"idx": record.get("idx"), "input_ids": ids, "attributions": scores}
        if record.get("target") is not None:
            feature["target"] = int(record["target"])
        if sep_token_id is not None:
            feature["token_type_ids"] = token_type_ids_from_sep(ids, sep_token_id)
        features.append(feature)
    return features


def _encoder_config(model: PreTrainedModel | LearnedExplainer) -> Any:
    if isinstance(model, EmpiricalExplainerModel):
        return model.encoder.config
    return model.classifier.config if isinstance(model, ReadsClassifier) else model.config


def build_explainer(classifier: PreTrainedModel, settings: DistillSettings) -> LearnedExplainer:
    """A fresh explainer of `settings.mode` built from `classifier` (see `attexp.distill.empirical.model` and
    `attexp.distill.empirical.heads`)."""
    if settings.mode == "heads":
        return HeadsExplainerModel(
            classifier,
            head="token" if settings.head == "token" else "class",
            features=settings.features or FEATURES,
        )
    if settings.mode == "shared":
        return SharedExplainerModel(
            classifier,
            branch_layers=1 if settings.branch_layers is None else settings.branch_layers,
            branch_init=settings.branch_init,
            head="class" if settings.head == "class" else "token",
        )
    layers = None
    if settings.mode == "student":
        layers = settings.student_layers or max(1, classifier.config.num_hidden_layers // 3)
    return EmpiricalExplainerModel.from_classifier(
        classifier, head=settings.head, max_length=settings.max_length, layers=layers
    )


def distill(
    classifier: PreTrainedModel,
    train_records: Sequence[Mapping[str, Any]],
    val_records: Sequence[Mapping[str, Any]],
    settings: DistillSettings,
    checkpoint_dir: Path,
    device: torch.device | str,
    on_epoch: Callable[[dict], None] | None = None,
    sep_token_id: int | None = None,
) -> DistillResult:
    """Train an explainer of `settings.mode` (built from `classifier`) to predict the records' attributions.

    Early stopping and model selection use the validation MSE over real tokens; `on_epoch` receives
    `{"epoch", "train_loss", "val_mse", "seconds"}`. Records store no token types: pass the tokenizer's
    `sep_token_id` and, for encoders with segment embeddings (`type_vocab_size > 1`, e.g. BERT), the segment
    ids are derived from the first [SEP] as the tokenizer would give them for sentence pairs (all 0 for
    single sentences); otherwise all are 0. Resumable from `checkpoint_dir` like `fine_tune`.
    """
    if not train_records or not val_records:
        raise AttexpError(
            f"distillation needs training and validation records (got {len(train_records)} and "
            f"{len(val_records)}); split the explanation records of the explain job into both"
        )
    manual_seed(settings.seed)
    explainer = build_explainer(classifier, settings)
    explainer.to(device)
    pad = pad_id(_encoder_config(classifier))
    if getattr(classifier.config, "type_vocab_size", 1) < 2:
        sep_token_id = None  # no segment embeddings to feed
    train_loader = make_loader(
        encode_records(train_records, settings.max_length, sep_token_id),
        settings.batch_size,
        pad,
        shuffle=True,
        seed=settings.seed,
        shard=True,
    )
    val_loader = make_loader(
        encode_records(val_records, settings.max_length, sep_token_id), settings.batch_size, pad, shard=True
    )
    optimizer, scheduler = create_optimizer(explainer, settings, len(train_loader) * settings.epochs)
    # DDP under torchrun; the frozen classifier of `shared` requires no gradient and stays out of the all-reduce.
    # A copied encoder keeps parameters its scores never use (the pooler): DDP is told to look for them.
    trained = dist.wrap_for_gradients(explainer, find_unused_parameters=True)
    outcome = fit(
        explainer,
        create_trainer(
            trained, optimizer, scheduler, settings, device, loss_fn=distill_loss(settings.correlation_weight)
        ),
        create_explainer_evaluator(trained, device),
        train_loader,
        val_loader,
        settings,
        checkpoint_dir,
        training_state={"optimizer": optimizer, "scheduler": scheduler},
        report={"mse": "val_mse"},
        score_metric="mse",
        mode="min",
        on_epoch=on_epoch,
    )
    explainer.eval()
    return DistillResult(
        model=explainer,
        best_epoch=outcome.best_epoch,
        best_val_mse=outcome.best_score,
        stopped_early=outcome.stopped_early,
        resumed_from_epoch=outcome.resumed_from_epoch,
        best_checkpoint=outcome.best_checkpoint,
        history=outcome.history,
    )


def evaluate_explainer(
    explainer: LearnedExplainer,
    records: Sequence[Mapping[str, Any]],
    batch_size: int,
    device: torch.device | str,
    sep_token_id: int | None = None,
) -> dict[str, float]:
    """`{"mse", "n"}`: the explainer's MSE over real tokens against the records' attributions."""
    if not records:
        raise AttexpError("cannot evaluate an explainer on no records")
    explainer.to(device)
    if getattr(_encoder_config(explainer), "type_vocab_size", 1) < 2:
        sep_token_id = None
    features = encode_records(records, max(len(r["input_ids"]) for r in records), sep_token_id)  # no length cap
    loader = make_loader(features, batch_size, pad_id(_encoder_config(explainer)))
    metrics = create_explainer_evaluator(explainer, device).run(loader).metrics
    return {"mse": float(metrics["mse"]), "n": len(records)}
