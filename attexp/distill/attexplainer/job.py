"""The train_agent job: train an AttExplainer agent (Niu et al., IJCAI 2022) on a classifier's masking games.

The agent learns, from the victim classifier's attention alone, which tokens to mask so that the predicted
class's probability drops by `game.done_threshold` (`game.task: explain`) or the prediction flips
(`game.task: attack`). Games are played on instances of `split` of `data` (the training split by default),
`batch_size` at a time; see `attexp.distill.attexplainer` for the game, the agent and the training loop.

Output (`models/<name>/`): `agent/` (`agent.safetensors`, the Q-network's weights, and `agent.json`: agent
settings, game rules and the victim model), `rewards.jsonl` (one line per game batch: reward, success rate,
mask rate, steps, delta_p, learn loss, seconds) and in the manifest the batches and game steps played, the
victim model, why training stopped and a rewards curve (mean reward per tenth of the run). While running,
`checkpoints/last.safetensors` + `last.json` hold the resumable state (no pickle): a killed job rerun with the
same command continues from its last checkpoint (the replay memory is not checkpointed; it refills within a few
batches). `max_seconds` caps the (wall-clock) training time, summed over resumed runs; the manifest also records
the CPU seconds. The explain stage uses the agent through the `attexplainer` explainer
(`{"type": "attexplainer", "agent": <job>}`).
"""

from __future__ import annotations

import shutil
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from attexp.config.schema import ClassifierRef, JobConfig, Upstream
from attexp.distill.attexplainer.agent import Agent, AgentSettings
from attexp.distill.attexplainer.game import GameSettings, Victim
from attexp.distill.attexplainer.training import mask_token_id, train
from attexp.errors import AttexpError
from attexp.io.files import write_jsonl
from attexp.io.records import ATTEXPLAINER_AGENT, DATASET
from attexp.models.encoder import ENCODER_MODEL_TYPES
from attexp.models.inputs import tokenize_rows
from attexp.models.loading import resolve_device
from attexp.registry import JOBS
from attexp.runner import Job, JobContext
from attexp.train.settings import AgentTrainSettings


class TrainAgentConfig(AgentTrainSettings, JobConfig):
    """Train an AttExplainer agent on `model`'s masking games over `split` of `data`.

    batch_size (32, the official simulate batch): instances played together per game batch. episodes (1000):
    game batches to play at most. max_seconds (None): stop after this much training time (over resumes).
    limit: use only the first `limit` rows of the split. max_length (64): truncate inputs to this many tokens.
    game: the rules (task, done_threshold, max_steps, bins); agent: the DQN hyperparameters (paper defaults).
    checkpoint_every (20) / log_every (10): game batches between checkpoints / logged means. eval_every (None) /
    eval_size (64): the learning curve, the greedy agent on the first `eval_size` validation instances every
    `eval_every` batches against a random policy on the same games (`learning_curve.jsonl`, the manifest's
    `learning_curve` and `random_policy`).
    """

    job: Literal["train_agent"] = "train_agent"
    model: ClassifierRef
    data: Annotated[str, Upstream(("download",))]
    split: Literal["train", "validation", "test"] = "train"
    limit: int | None = Field(None, ge=1)
    max_length: int = Field(64, ge=8)
    game: GameSettings = Field(default_factory=GameSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)

    @model_validator(mode="after")
    def _curve_is_held_out(self) -> TrainAgentConfig:
        if self.eval_every is not None and self.split == "validation":
            raise ValueError(
                "eval_every plays the learning curve on the first eval_size validation rows, which split "
                "'validation' trains on: the curve would not be held out. Train on split 'train' (or 'test'), or "
                "remove eval_every"
            )
        return self


@JOBS.register("train_agent", TrainAgentConfig)
class TrainAgentJob(Job):
    """Train an AttExplainer DQN agent (explain or attack) on a classifier's masking games."""

    architectures = ENCODER_MODEL_TYPES

    schema = ATTEXPLAINER_AGENT
    folder = "models"

    def run(self, config: TrainAgentConfig, ctx: JobContext) -> None:
        data = ctx.upstream(config.data)
        rows = data.read(DATASET, f"{config.split}.jsonl")
        if config.limit is not None:
            rows = rows[: config.limit]
        if not rows:
            raise AttexpError(f"train_agent {config.name!r}: split {config.split!r} of {config.data!r} has no rows.")
        device = resolve_device(config.device)
        model, tokenizer = ctx.classifier(config.model, device=device)
        mask_token_id(tokenizer)  # fail before training if the tokenizer cannot mask
        victim = Victim(model, precision=config.precision)
        agent = Agent(config.agent, config.game, device=device, seed=config.seed)

        def on_log(metrics: dict) -> None:
            ctx.log_metrics(metrics, step=int(metrics["episode"]))

        held_out = None
        if config.eval_every is not None:  # the learning curve's games: held-out, the same at every point
            held_out = data.read(DATASET, "validation.jsonl")[: config.eval_size]
            if not held_out:
                raise AttexpError(
                    f"train_agent {config.name!r}: eval_every needs validation rows, and {config.data!r} has none. "
                    f"Give the download job a validation split, or remove eval_every."
                )
            held_out = tokenize_rows(tokenizer, held_out, config.max_length)
        result = train(
            agent,
            victim,
            tokenizer,
            tokenize_rows(tokenizer, rows, config.max_length),
            config,
            ctx.path("checkpoints"),
            device,
            on_log=on_log,
            eval_features=held_out,
        )
        agent.save(ctx.path("agent"), extra={"victim": config.model, "episodes": result.episodes})
        write_jsonl(ctx.path("rewards.jsonl"), ({"idx": i, **row} for i, row in enumerate(result.history)))
        shutil.rmtree(ctx.path("checkpoints"), ignore_errors=True)  # only needed to resume an interrupted run
        curve = _curve(result.history)
        last = result.history[-max(1, len(result.history) // 10) :] if result.history else []
        final = (
            {k: float(np.nanmean([r[k] for r in last])) for k in ("reward", "success_rate", "mask_rate")}
            if last
            else {}
        )
        ctx.counts.update(episodes=result.episodes, instances=len(rows), learn_steps=agent.learn_steps)
        ctx.manifest_extra.update(
            task=config.game.task,
            victim=config.model,
            device=str(device),
            episodes=result.episodes,
            game_steps=agent.game_steps,
            learn_steps=agent.learn_steps,
            training_seconds=round(result.seconds, 1),
            training_cpu_seconds=round(result.cpu_seconds, 1),
            stopped_by=result.stopped_by,
            resumed_from_episode=result.resumed_from,
            rewards_curve=curve,
            final=final,
        )
        if result.learning_curve:  # greedy agent on held-out games against the random policy on the same games
            ctx.manifest_extra.update(
                learning_curve=result.learning_curve, random_policy=result.random_policy, heldout=len(held_out)
            )
            write_jsonl(
                ctx.path("learning_curve.jsonl"),
                ({"idx": i, **point} for i, point in enumerate(result.learning_curve)),
            )
        ctx.tracker.summary({f"final_{k}": v for k, v in final.items()})


def _curve(history: list[dict], points: int = 10) -> list[dict[str, float]]:
    """Mean reward, success rate and mask rate over `points` equal stretches of the run."""
    if not history:
        return []
    out = []
    for chunk in np.array_split(np.arange(len(history)), min(points, len(history))):
        rows = [history[i] for i in chunk]
        out.append(
            {
                "episode": int(rows[-1]["episode"]),
                **{k: round(float(np.mean([r[k] for r in rows])), 4) for k in ("reward", "success_rate", "mask_rate")},
            }
        )
    return out
