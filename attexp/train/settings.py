"""The training settings shared by every trained thing: the classifier (train stage), the empirical explainer
(distill stage) and the AttExplainer agent (train_agent job).

Each field is declared once, here, with its default and its bounds. A job config inherits the settings of what
it trains (`TrainConfig(ClassifierSettings, JobConfig)`), so the config a user writes is validated by these
declarations, and the job passes its config straight to the training loop: nothing is copied field by field.

- `LoopSettings`: what every training loop reads (batch size, seed, progress bar);
- `TrainSettings`: gradient-descent epochs with AdamW, linear warmup and decay, gradient clipping and early
  stopping (the classifier and the empirical explainer);
- `ClassifierSettings`: + the batch size of evaluation passes;
- `DistillSettings`: + the empirical explainer's mode, head and loss (5 epochs by default, as emp-exp trains);
- `AgentTrainSettings`: the agent's game batches, time budget, checkpoint and log intervals.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from attexp.config.schema import NeutralDefault, StrictModel
from attexp.models.precision import Precision


class LoopSettings(StrictModel):
    """batch_size: instances per step; seed: the run's seed; progress: draw a progress bar."""

    batch_size: int = Field(32, ge=1)
    seed: int = 42
    progress: bool = True


class TrainSettings(LoopSettings):
    """Fine-tuning hyperparameters (AdamW with linear warmup and decay, gradient clipping, early stopping)."""

    epochs: int = Field(3, ge=1)
    lr: float = Field(
        5e-5, ge=0, description="peak learning rate (0 leaves the weights as they are: a sanity baseline)"
    )
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(2, ge=1, description="epochs without a validation gain before stopping")
    max_length: int = Field(128, ge=8)
    precision: Annotated[Precision | None, NeutralDefault()] = Field(
        None, description="fp32 (None), bf16 or fp16 (with loss scaling) autocast for training and validation"
    )


class ClassifierSettings(TrainSettings):
    """Fine-tuning a classifier: early stopping on validation weighted F1; `eval_batch_size` rows per
    evaluation pass."""

    eval_batch_size: int = Field(64, ge=1)


class DistillSettings(TrainSettings):
    """Training an empirical explainer (`attexp.distill.empirical.model`): early stopping on validation MSE.

    mode: `copy` (the paper's: a fine-tuned copy of the classifier's encoder), `student` (a copy of its first
    `student_layers` layers only: cheaper than one forward) or `shared` (the frozen classifier and a branch of
    `branch_layers` transformer layers over its hidden states, copies of its top layers to start with unless
    `branch_init: 'random'`: one forward gives prediction and explanation) or `heads` (the frozen classifier and a
    learned linear map from the attention of the row its head reads, the value vectors that row reads and the last
    hidden states, AT2-style: `attexp.distill.empirical.heads`; `features` picks the terms).
    head: `token` (a per-token regression head), `flat` (emp-exp's decoder over the padded max_length x hidden
    states, for parity; `copy` only) or `class` (a per-token score for every class, the target's read out, so the
    explainer explains whichever class is asked, as its teacher does; chosen for `shared` on MiniLM).
    correlation_weight: weight of a per-instance (1 - Pearson correlation) term added to the MSE, which rewards
    each instance's ranking whatever the scale of its scores. The fresh parts
    of `shared` and `student` want a higher `lr` than a fine-tuned copy: on MiniLM, shared at 1e-3 and student at
    2e-4, both with correlation_weight 1 (configs/lib/convergence.libsonnet; benchmarks/README.md).
    """

    mode: Annotated[Literal["copy", "student", "shared", "heads"], NeutralDefault()] = "copy"
    head: Literal["token", "flat", "class"] = "token"
    epochs: int = Field(5, ge=1)
    student_layers: Annotated[int | None, NeutralDefault()] = Field(
        None, ge=1, description="student mode: layers kept (default: a third of the classifier's, at least 1)"
    )
    branch_layers: Annotated[int | None, NeutralDefault()] = Field(
        None, ge=0, description="shared mode: transformer layers of the branch (default 1)"
    )
    branch_init: Annotated[Literal["top_layers", "random"] | None, NeutralDefault()] = Field(
        None,
        description="shared mode: start the branch as a copy of the classifier's top layers or fresh (default: a "
        "copy where the classifier's layout allows it)",
    )
    correlation_weight: Annotated[float, NeutralDefault()] = Field(0.0, ge=0)
    features: Annotated[list[Literal["attention", "values", "hidden"]] | None, NeutralDefault()] = Field(
        None,
        min_length=1,
        description="heads mode: the terms of the map (default all: attention, values, hidden)",
    )

    @model_validator(mode="after")
    def _mode_settings(self) -> DistillSettings:
        if self.head == "flat" and self.mode != "copy":
            raise ValueError(
                f"head 'flat' is emp-exp's decoder for mode 'copy'; mode {self.mode!r} takes head 'token' or 'class'"
            )
        if self.student_layers is not None and self.mode != "student":
            raise ValueError(f"student_layers is a setting of mode 'student', not of mode {self.mode!r}")
        for key in ("branch_layers", "branch_init"):
            if getattr(self, key) is not None and self.mode != "shared":
                raise ValueError(f"{key} is a setting of mode 'shared', not of mode {self.mode!r}")
        if self.features is not None and self.mode != "heads":
            raise ValueError(f"features is a setting of mode 'heads', not of mode {self.mode!r}")
        return self


class AgentTrainSettings(LoopSettings):
    """Training an AttExplainer agent: `batch_size` instances per game batch, at most `episodes` batches and
    `max_seconds` of training (None: no limit; counted over resumes), a checkpoint every `checkpoint_every` and a
    log line every `log_every` batches; with `eval_every`, a learning curve of the greedy agent on `eval_size`
    held-out instances against a random policy on the same games. `precision` autocasts the classifier's forwards
    (the games' cost); the agent's own small network trains in float32."""

    episodes: int = Field(1000, ge=1)
    precision: Annotated[Precision | None, NeutralDefault()] = Field(
        None, description="fp32 (None), bf16 or fp16 autocast of the classifier's forwards in the games"
    )
    max_seconds: float | None = Field(None, gt=0)
    checkpoint_every: int = Field(20, ge=1)
    log_every: int = Field(10, ge=1)
    eval_every: Annotated[int | None, NeutralDefault()] = Field(
        None,
        ge=1,
        description="the learning curve: every N game batches (and before the first and after the last), the greedy "
        "agent plays the first `eval_size` validation instances; a uniformly random policy plays the same games once",
    )
    eval_size: Annotated[int, NeutralDefault()] = Field(
        64, ge=1, description="held-out instances of the learning curve"
    )
