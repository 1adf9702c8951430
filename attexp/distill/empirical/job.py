"""The distill stage: train an empirical explainer (Schwarzenberg et al. 2021) on an explainer's records.

An empirical explainer is trained with MSE over real tokens (plus an optional correlation term) to predict an
expensive explainer's attributions in one forward pass. `mode` picks its design: `copy` (the paper's: a copy
of the fine-tuned classifier's encoder with a per-token regression head), `student` (the copy cut to its first
`student_layers` layers) or `shared` (a branch over the frozen classifier's hidden states: the prediction
forward gives the explanation too; only the branch is saved, and it runs only on the classifier it was
trained on).
`train` and `validation` name explain jobs over the training and validation splits (same classifier,
same explainer); early stopping watches the validation MSE. `head: "flat"` selects emp-exp's decoder
(a linear map from the padded max_length x hidden states to max_length scores) for parity.

Output (`models/<name>/`): `model/` (the explainer's `save_pretrained` + tokenizer),
`metrics.jsonl` per epoch (`checkpoints/` while running, to resume a killed job), the teacher and the best
validation MSE in the manifest.
The explain stage uses it through the `empirical` explainer (`{"type": "empirical", "model": <this job>}`).
"""

from __future__ import annotations

import shutil
from typing import Annotated, Literal

from attexp.config.schema import ClassifierRef, JobConfig, Upstream
from attexp.distill.empirical.training import distill
from attexp.errors import AttexpError
from attexp.io.files import write_jsonl
from attexp.io.records import EMPIRICAL_EXPLAINER, EXPLANATIONS
from attexp.registry import JOBS
from attexp.runner import Job, JobContext, Splits
from attexp.train.settings import DistillSettings

REQUIRED = ("idx", "input_ids", "attributions")


class DistillConfig(DistillSettings, JobConfig):
    """Distil the explanations of `train`/`validation` into an empirical explainer built from `model`."""

    job: Literal["distill"] = "distill"
    model: ClassifierRef
    train: Annotated[str, Upstream(("explain",))]
    validation: Annotated[str, Upstream(("explain",))]


@JOBS.register("distill", DistillConfig)
class DistillJob(Job):
    """Train an empirical explainer on explanation records."""

    schema = EMPIRICAL_EXPLAINER
    folder = "models"
    splits = Splits.RANKS
    splits_because = (
        "DDP: every rank trains on a share of every batch and the gradients are all-reduced at each step, which "
        "needs torchrun's process group (array tasks have none)"
    )

    def run(self, config: DistillConfig, ctx: JobContext) -> None:
        train_art, val_art = ctx.upstream(config.train), ctx.upstream(config.validation)
        teachers = {train_art.manifest.explainer_type, val_art.manifest.explainer_type}
        if len(teachers) != 1:
            raise AttexpError(
                f"distill {config.name!r}: train and validation explanations come from different explainers "
                f"({', '.join(map(str, teachers))}); explain both splits with the same explainer."
            )
        device = ctx.device
        classifier, tokenizer = ctx.classifier(config.model, device=device)

        def on_epoch(metrics: dict) -> None:
            ctx.log_metrics(metrics, step=metrics["epoch"])

        result = distill(
            classifier,
            train_art.read(EXPLANATIONS, required=REQUIRED),
            val_art.read(EXPLANATIONS, required=REQUIRED),
            config,
            checkpoint_dir=ctx.path("checkpoints"),
            device=device,
            on_epoch=on_epoch,
            sep_token_id=tokenizer.sep_token_id,
        )
        if not ctx.is_main:
            return
        write_jsonl(ctx.path("metrics.jsonl"), result.history)
        result.model.save_pretrained(ctx.path("model"))
        tokenizer.save_pretrained(ctx.path("model"))
        shutil.rmtree(ctx.path("checkpoints"))  # only needed to resume an interrupted run
        ctx.counts.update(
            train=train_art.manifest.counts.get("records", 0),
            validation=val_art.manifest.counts.get("records", 0),
        )
        manifest = ctx.manifest
        manifest.teacher = train_art.manifest.explainer
        manifest.teacher_cost = train_art.manifest.cost + val_art.manifest.cost
        manifest.mode = config.mode
        manifest.head = config.head
        manifest.device = str(device)
        manifest.best_epoch = result.best_epoch
        manifest.best_validation_mse = result.best_val_mse
        ctx.tracker.summary({"best_validation_mse": result.best_val_mse})
