"""Playing and training: the game loop shared by the train_agent job, the explainer and the evaluation.

Rows are tokenised once (`attexp.models.inputs.tokenize_rows`); `start_game` pads a list of them into a
`MaskingGame`; `play` runs a game to the end, with the agent exploring and learning (training) or greedy
(explaining). `train` is the
training loop of the train_agent job as an ignite `Engine` whose iterations are game batches: each iteration
samples `batch_size` instances of similar length (seeded by the run's seed and the batch number, so a resumed
run draws the same batches it would have drawn), plays them to the end while the agent stores every transition
and takes a learn step every `learn_every` game steps, and returns the batch's statistics. Handlers attached in
one place log them, checkpoint the run every `checkpoint_every` batches, stop at `episodes` batches or after
`max_seconds` (counted over resumes), and draw a progress bar. With `eval_every` and held-out instances, the
learning curve: the greedy agent plays them before the first batch, every `eval_every` batches and after the last
(`evaluate_policy`), against a uniformly random policy (`RandomPolicy`) that plays the same games once; both are
kept in the checkpoint, so a resumed run continues the same curve. The training rewards (`history`) are not a
learning curve: they include the exploration moves and come from ever-changing batches. The curve's games do not
count as training time (`max_seconds`, the reported seconds).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from torch import Tensor

from attexp.distill.attexplainer.agent import Agent
from attexp.distill.attexplainer.game import MaskingGame, Victim
from attexp.errors import AttexpError
from attexp.io import checkpoints
from attexp.models.inputs import batch_pad_id, pad_features, structural_positions
from attexp.train.settings import AgentTrainSettings

log = logging.getLogger(__name__)
CHECKPOINT = "last"  # last.safetensors + last.json (attexp.io.checkpoints: no pickle)
PICKLED = "last.pt"  # what earlier versions wrote; never unpickled


def start_game(
    agent_or_settings: Agent | Any,
    victim: Victim,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    device: torch.device | str,
) -> MaskingGame:
    """Right-pad encoded instances and start their game (the victim's prediction is the class to move)."""
    settings = agent_or_settings.game if isinstance(agent_or_settings, Agent) else agent_or_settings
    ids, mask, types = pad_features(list(features), batch_pad_id(victim.model, tokenizer))  # each [B, T]
    ids, mask = ids.to(device), mask.to(device)
    types = None if types is None else types.to(device)
    allowed = ~structural_positions(ids, mask, tokenizer)
    return MaskingGame(victim, ids, mask, types, allowed, settings, mask_token_id(tokenizer))


def mask_token_id(tokenizer: Any) -> int:
    if tokenizer.mask_token_id is None:
        raise AttexpError(
            f"the masking game replaces tokens with [MASK], but {type(tokenizer).__name__} has no mask token. "
            f"Use a classifier whose tokenizer has one (BERT, RoBERTa, DistilBERT, ELECTRA do)."
        )
    return int(tokenizer.mask_token_id)


def play(agent: Agent, game: MaskingGame, train: bool = False) -> dict[str, float]:
    """Play `game` to the end: greedy moves, or (train) epsilon-greedy moves with every transition stored and
    a learn step every `learn_every` game steps. Returns the game's summary (+ mean learn loss when training)."""
    losses = []
    while not game.finished:
        observation = game.observe()
        actions = agent.act(observation, explore=train)
        step = game.step(actions)
        if train:
            agent.remember(observation, actions, step)
            if agent.should_learn():
                losses.append(agent.learn())
    summary = game.summary()
    if train:
        summary["loss"] = float(np.mean(losses)) if losses else float("nan")
    return summary


class RandomPolicy:
    """The baseline of the learning curve: every move uniform among the allowed positions (seeded)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, observation: Any, explore: bool = False) -> Tensor:
        allowed = observation.allowed.cpu().numpy()
        return torch.tensor([int(self.rng.choice(np.flatnonzero(row))) for row in allowed], dtype=torch.long)


def evaluate_policy(
    policy: Agent | RandomPolicy,
    victim: Victim,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    settings: Any,
    batch_size: int,
    device: torch.device | str,
) -> dict[str, float]:
    """Play `features` in batches of `batch_size` (length-sorted) with `policy`, greedy and without learning;
    the instance-weighted means of success rate, mask rate, reward and steps."""
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    totals: dict[str, float] = {}
    for start in range(0, len(order), batch_size):
        chunk = [features[i] for i in order[start : start + batch_size]]
        summary = play(policy, start_game(settings, victim, tokenizer, chunk, device))
        for key in ("success_rate", "mask_rate", "reward", "steps"):
            totals[key] = totals.get(key, 0.0) + summary[key] * len(chunk)
    return {key: round(value / len(features), 4) for key, value in totals.items()}


@dataclass
class TrainResult:
    """What `train` did: batches played, wall-clock and CPU seconds spent (all runs), per-batch statistics, and
    the learning curve (greedy agent on held-out games) with the random policy's result on the same games."""

    episodes: int
    seconds: float
    cpu_seconds: float
    resumed_from: int
    stopped_by: str
    history: list[dict[str, float]] = field(default_factory=list)
    learning_curve: list[dict[str, float]] = field(default_factory=list)
    random_policy: dict[str, float] | None = None


def train(
    agent: Agent,
    victim: Victim,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    settings: AgentTrainSettings,
    checkpoint_dir: Path,
    device: torch.device | str,
    on_log: Callable[[dict[str, float]], None] | None = None,
    eval_features: Sequence[dict[str, list[int]]] | None = None,
) -> TrainResult:
    """Train `agent` on games over `features` (encoded instances); resumes from `checkpoint_dir/last.*`, and
    leaves the final state there. `eval_features` (with `settings.eval_every`): the held-out instances of the
    learning curve."""
    checkpoint = Path(checkpoint_dir) / CHECKPOINT
    pickled = Path(checkpoint_dir) / PICKLED
    if pickled.exists():
        raise AttexpError(
            f"{pickled}: a pickled checkpoint is never loaded (unpickling can run any code put into the file). "
            f"Delete it ({pickled}) to train from the start; checkpoints are now written as safetensors + JSON."
        )
    history: list[dict[str, float]] = []
    curve: dict[str, Any] = {"points": [], "random": None}
    done_before, seconds_before, cpu_before = 0, 0.0, 0.0
    if checkpoints.exists(checkpoint):
        state = checkpoints.load_state(checkpoint, device=agent.device)
        agent.load_state_dict(state["agent"])
        done_before, seconds_before, history = int(state["episode"]), float(state["seconds"]), list(state["history"])
        cpu_before = float(state.get("cpu_seconds", 0.0))
        curve = {"points": list(state.get("learning_curve", [])), "random": state.get("random_policy")}
        log.info("resuming agent training after %d game batches (%.0f s)", done_before, seconds_before)
    clock = {"episode": done_before, "seconds": seconds_before, "cpu_seconds": cpu_before}
    evaluating = bool(settings.eval_every and eval_features)

    paused = {"seconds": 0.0, "cpu_seconds": 0.0}  # time spent on the curve: not training time (max_seconds)

    def evaluate(episode: int) -> None:
        """A point of the learning curve (and, once, the random policy on the same games)."""
        if curve["points"] and curve["points"][-1]["episode"] == episode:
            return
        wall, cpu = time.perf_counter(), time.process_time()
        if curve["random"] is None:
            random_policy = RandomPolicy(settings.seed)
            curve["random"] = evaluate_policy(
                random_policy, victim, tokenizer, eval_features, agent.game, settings.batch_size, device
            )
            log.info("learning curve: random policy %s", curve["random"])
        point = {
            "episode": episode,
            **evaluate_policy(agent, victim, tokenizer, eval_features, agent.game, settings.batch_size, device),
        }
        curve["points"].append(point)
        paused["seconds"] += time.perf_counter() - wall
        paused["cpu_seconds"] += time.process_time() - cpu
        log.info("learning curve: %s", point)
        if on_log is not None:
            on_log({"episode": episode, **{f"heldout_{k}": v for k, v in point.items() if k != "episode"}})

    started, cpu_started = time.perf_counter(), time.process_time()
    if evaluating and not curve["points"]:
        evaluate(done_before)  # the untrained agent: the curve's first point
    stopped = {"by": "episodes"}

    by_length = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    size = min(settings.batch_size, len(features))

    def batches():
        """A random window of `size` instances of the length-sorted list per batch: similar lengths, little
        padding; seeded by (seed, batch number), so a resumed run draws the batches it would have drawn."""
        episode = done_before
        while True:
            start = int(np.random.default_rng([settings.seed, episode]).integers(0, len(features) - size + 1))
            yield [features[i] for i in by_length[start : start + size]]
            episode += 1

    def play_batch(engine: Engine, batch: list[dict[str, list[int]]]) -> dict[str, float]:
        return play(agent, start_game(agent, victim, tokenizer, batch, device), train=True)

    engine = Engine(play_batch)

    @engine.on(Events.ITERATION_COMPLETED)
    def bookkeeping(engine: Engine) -> None:
        clock["episode"] += 1
        clock["seconds"] = seconds_before + time.perf_counter() - started - paused["seconds"]
        clock["cpu_seconds"] = cpu_before + time.process_time() - cpu_started - paused["cpu_seconds"]
        stats = {
            "episode": clock["episode"],
            **engine.state.output,
            "seconds": round(clock["seconds"], 2),
            "cpu_seconds": round(clock["cpu_seconds"], 2),
        }
        history.append(stats)
        if on_log is not None and clock["episode"] % settings.log_every == 0:
            on_log(_mean(history[-settings.log_every :], clock["episode"], clock["seconds"]))
        out_of_time = settings.max_seconds is not None and clock["seconds"] >= settings.max_seconds
        if evaluating and (clock["episode"] % settings.eval_every == 0 or out_of_time):
            evaluate(clock["episode"])
        if clock["episode"] % settings.checkpoint_every == 0 or out_of_time:
            save_checkpoint(checkpoint, agent, clock, history, curve)
        if out_of_time:
            stopped["by"] = "max_seconds"
            engine.terminate()

    remaining = settings.episodes - done_before
    out_of_time = settings.max_seconds is not None and seconds_before >= settings.max_seconds
    if remaining > 0 and not out_of_time:
        if settings.progress:
            ProgressBar(persist=False, desc="train agent").attach(
                engine, output_transform=lambda out: {"reward": out["reward"], "success": out["success_rate"]}
            )
        engine.run(batches(), max_epochs=1, epoch_length=remaining)
    elif out_of_time:
        stopped["by"] = "max_seconds"
    if remaining <= 0 or out_of_time:
        log.warning(
            "nothing left to train: %d game batches and %.0f s played, of a budget of %d and %s s",
            done_before,
            seconds_before,
            settings.episodes,
            settings.max_seconds,
        )
    if evaluating:
        evaluate(clock["episode"])  # the last point: where training stopped
    save_checkpoint(checkpoint, agent, clock, history, curve)  # the final state: what a continuation starts from
    agent.net.eval()
    return TrainResult(
        clock["episode"],
        clock["seconds"],
        clock["cpu_seconds"],
        done_before,
        stopped["by"],
        history,
        curve["points"],
        curve["random"],
    )


def save_checkpoint(
    path: Path, agent: Agent, clock: dict[str, float], history: list[dict], curve: dict[str, Any] | None = None
) -> None:
    """Atomically write the resumable training state (agent, optimizer, counters, clocks, history, learning
    curve)."""
    curve = curve or {"points": [], "random": None}
    state = {
        "agent": agent.state_dict(),
        "history": history,
        "learning_curve": curve["points"],
        "random_policy": curve["random"],
        **{k: clock[k] for k in ("episode", "seconds", "cpu_seconds")},
    }
    checkpoints.save_state(path, state)


def _mean(rows: list[dict[str, float]], episode: int, seconds: float) -> dict[str, float]:
    keys = [k for k in rows[-1] if k not in ("episode", "seconds", "cpu_seconds")]
    out: dict[str, float] = {"episode": episode, "seconds": round(seconds, 1)}
    for key in keys:
        values = [r[key] for r in rows if key in r and r[key] == r[key]]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out
