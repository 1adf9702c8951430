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

A finished job keeps its final training state in `state/` (the same two files, listed with their sha256 in the
manifest), so that a longer run need not start over: a new train_agent job with `continue_from: <this job>` and a
larger budget starts from that state (Q-network, target network, optimizer, counters, clocks, rewards and
learning curve) and trains on, as a resumed run does, up to its own `episodes` / `max_seconds`, which count the
batches and seconds of the job it continues. The finished job, and whatever was computed from it, stay as they
were; the continuation is a job of its own, with the whole run's rewards and learning curve.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from attexp.config.schema import ClassifierRef, JobConfig, NeutralDefault, Upstream, UpstreamJob
from attexp.distill.attexplainer.agent import Agent, AgentSettings
from attexp.distill.attexplainer.game import GameSettings, Victim
from attexp.distill.attexplainer.training import CHECKPOINT, mask_token_id, train
from attexp.errors import AttexpError
from attexp.io import checkpoints
from attexp.io.artifacts import MANIFEST, verify_file
from attexp.io.files import read_json, write_json, write_jsonl
from attexp.io.records import ATTEXPLAINER_AGENT, DATASET
from attexp.models.inputs import tokenize_rows
from attexp.models.layouts import BERT_FAMILY_TYPES
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
    `learning_curve` and `random_policy`). continue_from (None): a finished train_agent job to train on from (its
    final state; the same victim, data, game, agent and batch settings, a larger budget: `episodes` and
    `max_seconds` count its batches and seconds too).
    """

    job: Literal["train_agent"] = "train_agent"
    model: ClassifierRef
    data: Annotated[str, Upstream(("download",))]
    split: Literal["train", "validation", "test"] = "train"
    limit: int | None = Field(None, ge=1)
    max_length: int = Field(64, ge=8)
    game: GameSettings = Field(default_factory=GameSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    continue_from: Annotated[str | None, Upstream(("train_agent",)), NeutralDefault()] = Field(
        None,
        description="a finished train_agent job whose final state this job trains on from, to a larger budget "
        "(episodes and max_seconds count that job's batches and seconds too)",
    )

    def check_upstream_jobs(self, upstream: Mapping[str, UpstreamJob]) -> list[str]:
        """`continue_from` names a run this job can continue: the same settings, a larger budget, and (where it
        has finished) a final state to start from."""
        if self.continue_from is None or self.continue_from not in upstream:
            return []
        before = upstream[self.continue_from]
        where = f"continue_from {self.continue_from!r}"
        if before.folder is not None and not before.config:
            unreadable = before.folder / "config.json"
            return [f"{where}: {unreadable} is missing or unreadable, so its settings cannot be compared."]
        theirs, mine = _settings(before.config), self.model_dump(mode="json")
        problems = [
            f"{where}: {key} is {theirs.get(key)!r} there and {mine[key]!r} here; a continuation plays the same "
            f"games with the same agent. Set {key} to {theirs.get(key)!r}, or train a new agent."
            for key in CONTINUED_SETTINGS
            if theirs.get(key) != mine[key]
        ]
        if theirs.get("eval_every") is not None:
            if self.eval_every is None:
                problems.append(
                    f"{where}: it has a learning curve; set eval_every (e.g. {theirs['eval_every']}) so it goes on."
                )
            elif theirs.get("eval_size") != self.eval_size:
                problems.append(
                    f"{where}: its learning curve plays {theirs.get('eval_size')} held-out games and this job "
                    f"{self.eval_size}, so the curve would change games halfway; set eval_size to "
                    f"{theirs.get('eval_size')}."
                )
        if before.folder is not None and not checkpoints.exists(before.folder / STATE / CHECKPOINT):
            problems.append(
                f"{where}: {before.folder / STATE} holds no final training state (agents trained before attexp kept "
                f"it have none), so its training cannot be continued exactly. Train a new agent with the larger "
                f"budget, or rerun {self.continue_from!r} (--force) to get one."
            )
        problems += _budget_problems(self, before, where)
        return problems

    @model_validator(mode="after")
    def _curve_is_held_out(self) -> TrainAgentConfig:
        if self.eval_every is not None and self.split == "validation":
            raise ValueError(
                "eval_every plays the learning curve on the first eval_size validation rows, which split "
                "'validation' trains on: the curve would not be held out. Train on split 'train' (or 'test'), or "
                "remove eval_every"
            )
        return self


CONTINUED_SETTINGS = (
    "model",
    "data",
    "split",
    "limit",
    "max_length",
    "game",
    "agent",
    "seed",
    "batch_size",
    "precision",
)
"""What a continuation (`continue_from`) must share with the run it continues."""

STATE = "state"
"""A finished job's final training state (`state/last.safetensors` + `last.json`), read by `continue_from`."""
STATE_SUFFIXES = (".safetensors", ".json")
CONTINUED = "continued_from.json"
"""What a continuation recorded of the run it continues when it copied that run's state in (for a resumed run)."""


def _settings(config: dict) -> dict:
    """A train_agent config as this attexp resolves it (defaults of keys added since filled in), so that an agent
    written by an earlier version is compared on its values; as written where it no longer validates."""
    try:
        return TrainAgentConfig.model_validate(config).model_dump(mode="json")
    except ValueError:
        return config


def _budget_problems(config: TrainAgentConfig, before: UpstreamJob, where: str) -> list[str]:
    """Whether a continuation's budget leaves something to train. Its `episodes` and `max_seconds` count what the
    run it continues played: from that run's manifest where it has finished, else from its config (the run time
    checks again, against the exact final state: `_nothing_left`)."""
    if before.folder is not None:
        try:
            manifest = ATTEXPLAINER_AGENT.read_manifest(read_json(before.folder / MANIFEST))
        except (OSError, ValueError):
            manifest = ATTEXPLAINER_AGENT.manifest()
        episodes, seconds = manifest.episodes, manifest.training_seconds
        if isinstance(episodes, int) and isinstance(seconds, (int, float)):
            problem = _nothing_left(config, episodes, seconds)
            return [f"{where}: {problem}"] if problem else []
    old_episodes, old_seconds = int(before.config.get("episodes") or 0), before.config.get("max_seconds")
    more_time = old_seconds is not None and (config.max_seconds is None or config.max_seconds > old_seconds)
    if not (config.episodes > old_episodes or more_time):  # the batches it will have played are not known yet
        time = "" if old_seconds is None else f" or max_seconds above {old_seconds}"
        return [
            f"{where}: raise episodes above {old_episodes}{time}: this job's budget (episodes {config.episodes}, "
            f"max_seconds {config.max_seconds}) counts that job's batches and seconds."
        ]
    return []


def _nothing_left(config: TrainAgentConfig, episodes: int, seconds: float) -> str | None:
    """Why a continuation of a run that played `episodes` game batches in `seconds` would train nothing."""
    if config.episodes > episodes and (config.max_seconds is None or config.max_seconds > seconds):
        return None
    time = "" if config.max_seconds is None else f" and max_seconds above {seconds:.1f}"
    return (
        f"nothing left to train: that job played {episodes} game batches in {seconds:.1f} s, and this job's budget "
        f"(episodes {config.episodes}, max_seconds {config.max_seconds}) counts them. Raise episodes above "
        f"{episodes}{time}."
    )


@JOBS.register("train_agent", TrainAgentConfig)
class TrainAgentJob(Job):
    """Train an AttExplainer DQN agent (explain or attack) on a classifier's masking games."""

    architectures = BERT_FAMILY_TYPES
    architecture_note = (
        "the agent masks tokens with the tokenizer's [MASK], which decoder vocabularies lack; ModernBERT has one, "
        "but the agent is tested on the BERT family only (the paper's models)"
    )

    schema = ATTEXPLAINER_AGENT
    folder = "models"
    splits_because = "reinforcement learning is sequential (one agent, one replay buffer)"

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

        continued_from = _checkpoint_to_resume(config, ctx)
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
        _keep_state(ctx.path("checkpoints"), ctx.path(STATE))
        curve = _curve(result.history)
        last = result.history[-max(1, len(result.history) // 10) :] if result.history else []
        final = (
            {k: float(np.nanmean([r[k] for r in last])) for k in ("reward", "success_rate", "mask_rate")}
            if last
            else {}
        )
        ctx.counts.update(episodes=result.episodes, instances=len(rows), learn_steps=agent.learn_steps)
        manifest = ctx.manifest
        manifest.task = config.game.task
        manifest.victim = config.model
        manifest.device = str(device)
        manifest.episodes = result.episodes
        manifest.game_steps = agent.game_steps
        manifest.learn_steps = agent.learn_steps
        manifest.training_seconds = round(result.seconds, 1)
        manifest.training_cpu_seconds = round(result.cpu_seconds, 1)
        manifest.stopped_by = result.stopped_by
        manifest.resumed_from_episode = result.resumed_from
        manifest.rewards_curve = curve
        manifest.final = final
        if continued_from is not None:
            manifest.continued_from = continued_from
        if result.learning_curve and held_out is not None:  # the greedy agent's and a random policy's games
            manifest.learning_curve = result.learning_curve
            manifest.random_policy = result.random_policy
            manifest.heldout = len(held_out)
            write_jsonl(
                ctx.path("learning_curve.jsonl"),
                ({"idx": i, **point} for i, point in enumerate(result.learning_curve)),
            )
        ctx.tracker.summary({f"final_{k}": v for k, v in final.items()})


def _checkpoint_to_resume(config: TrainAgentConfig, ctx: JobContext) -> dict | None:
    """Put the state this run starts from in `checkpoints/`, where `train` resumes from; returns what the
    manifest records of the run it continues (None for a job that continues none).

    - `checkpoints/last.*` there: a killed run of this job, resumed as it is;
    - else the job's own `state/`: a run killed after it kept its final state and before it finished;
    - else, with `continue_from`, that job's final state (checked against its manifest, and its victim and data
      against what they are now), copied in; the record of it is kept beside, for a resumed run.
    """
    own, record = ctx.path("checkpoints"), ctx.path(CONTINUED)
    if not checkpoints.exists(own / CHECKPOINT) and checkpoints.exists(ctx.path(STATE) / CHECKPOINT):
        _copy_state(ctx.path(STATE), own)
    if config.continue_from is None:
        return None
    if checkpoints.exists(own / CHECKPOINT):
        return read_json(record) if record.is_file() else None
    before = ctx.upstream(config.continue_from)
    where = f"continue_from {before.name!r}"
    state = before.dir / STATE
    if not checkpoints.exists(state / CHECKPOINT):
        raise AttexpError(
            f"{where}: {state} holds no final training state (agents trained before attexp kept it have none), "
            f"so its training cannot be continued exactly. Train a new agent with the larger budget, or rerun "
            f"{before.name!r} (--force) to get one."
        )
    for name in (config.model, config.data):  # a victim or data rerun since under the same name
        used = before.manifest.upstream[name].config_hash if name in before.manifest.upstream else None
        now = ctx.upstream(name).manifest.config_hash if name in ctx.upstream_artifacts else None
        if used and now and used != now:
            raise AttexpError(
                f"{where}: {name!r} was rerun with another config since {before.name!r} trained on it; a "
                f"continuation would play other games. Train a new agent."
            )
    for suffix in STATE_SUFFIXES:
        verify_file(before.dir, f"{STATE}/{CHECKPOINT}{suffix}", before.manifest)
    clock = read_json(state / f"{CHECKPOINT}.json")
    problem = _nothing_left(config, int(clock.get("episode", 0)), float(clock.get("seconds", 0.0)))
    if problem:
        raise AttexpError(f"{where}: {problem}")
    continued = {
        "job": before.name,
        "episodes": before.manifest.episodes,
        "training_seconds": before.manifest.training_seconds,
    }
    write_json(record, continued)
    _copy_state(state, own)  # last: a run killed before this copies it again
    return continued


def _keep_state(checkpoint_dir: Path, state_dir: Path) -> None:
    """Keep the final checkpoint as the finished job's `state/`; the checkpoint folder goes only once both files
    are copied, so a run killed in between still resumes (to an immediate finish)."""
    _copy_state(checkpoint_dir, state_dir)
    (checkpoint_dir / f"{CHECKPOINT}.json").unlink(missing_ok=True)  # first: it marks a whole checkpoint
    shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _copy_state(source: Path, target: Path) -> None:
    """Copy a checkpoint's two files, each through a temporary file, the JSON last: it marks a whole checkpoint
    (`attexp.io.checkpoints`), so a copy cut short is never read as one."""
    target.mkdir(parents=True, exist_ok=True)
    for suffix in STATE_SUFFIXES:
        tmp = target / f".{CHECKPOINT}{suffix}.tmp"
        shutil.copyfile(source / f"{CHECKPOINT}{suffix}", tmp)
        tmp.replace(target / f"{CHECKPOINT}{suffix}")


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
