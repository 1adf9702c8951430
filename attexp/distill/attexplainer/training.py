"""Playing and training: the game loop shared by the train_agent job, the explainer and the evaluation.

Rows are tokenised once (`attexp.models.inputs.tokenize_rows`); `start_game` pads a list of them into a
`MaskingGame`; `play` runs a game to the end, with the agent exploring and learning (training) or greedy
(explaining). `train` is the
training loop of the train_agent job as an ignite `Engine` whose iterations are game batches: each iteration
samples `batch_size` instances of similar length (seeded by the run's seed and the batch number, so a resumed
run draws the same batches it would have drawn), plays them to the end while the agent stores every transition
and takes a learn step every `learn_every` game steps, and returns the batch's statistics. Handlers attached in
one place log them, checkpoint the run every `checkpoint_every` batches, stop at `episodes` batches or after
`max_seconds` (counted over resumes), and draw a progress bar.
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

from attexp.distill.attexplainer.agent import Agent
from attexp.distill.attexplainer.game import MaskingGame, Victim
from attexp.errors import AttexpError
from attexp.io import checkpoints
from attexp.models.inputs import pad_features, pad_id, structural_positions
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
    ids, mask, types = pad_features(list(features), pad_id(tokenizer))  # each [B, T]
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


@dataclass
class TrainResult:
    """What `train` did: batches played, wall-clock and CPU seconds spent (all runs), per-batch statistics."""

    episodes: int
    seconds: float
    cpu_seconds: float
    resumed_from: int
    stopped_by: str
    history: list[dict[str, float]] = field(default_factory=list)


def train(
    agent: Agent,
    victim: Victim,
    tokenizer: Any,
    features: Sequence[dict[str, list[int]]],
    settings: AgentTrainSettings,
    checkpoint_dir: Path,
    device: torch.device | str,
    on_log: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `agent` on games over `features` (encoded instances); resumes from `checkpoint_dir/last.*`."""
    checkpoint = Path(checkpoint_dir) / CHECKPOINT
    pickled = Path(checkpoint_dir) / PICKLED
    if pickled.exists():
        raise AttexpError(
            f"{pickled}: a pickled checkpoint is never loaded (unpickling can run any code put into the file). "
            f"Delete it ({pickled}) to train from the start; checkpoints are now written as safetensors + JSON."
        )
    history: list[dict[str, float]] = []
    done_before, seconds_before, cpu_before = 0, 0.0, 0.0
    if checkpoints.exists(checkpoint):
        state = checkpoints.load_state(checkpoint, device=agent.device)
        agent.load_state_dict(state["agent"])
        done_before, seconds_before, history = int(state["episode"]), float(state["seconds"]), list(state["history"])
        cpu_before = float(state.get("cpu_seconds", 0.0))
        log.info("resuming agent training after %d game batches (%.0f s)", done_before, seconds_before)
    clock = {"episode": done_before, "seconds": seconds_before, "cpu_seconds": cpu_before}
    started, cpu_started = time.perf_counter(), time.process_time()
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
        clock["seconds"] = seconds_before + time.perf_counter() - started
        clock["cpu_seconds"] = cpu_before + time.process_time() - cpu_started
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
        if clock["episode"] % settings.checkpoint_every == 0 or out_of_time:
            save_checkpoint(checkpoint, agent, clock, history)
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
    agent.net.eval()
    return TrainResult(clock["episode"], clock["seconds"], clock["cpu_seconds"], done_before, stopped["by"], history)


def save_checkpoint(path: Path, agent: Agent, clock: dict[str, float], history: list[dict]) -> None:
    """Atomically write the resumable training state (agent, optimizer, counters, clocks, history)."""
    state = {
        "agent": agent.state_dict(),
        "history": history,
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
