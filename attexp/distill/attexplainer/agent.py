"""AttExplainer's DQN agent (Niu et al., IJCAI 2022): a per-token Q-network over attention features.

The Q-network scores every token position with the same small network (weights shared over tokens): its 68
attention features (`features.py`) -> 63 hidden units -> the token's status bit appended (1 = in place,
0 = masked) -> 8 -> 1 Q-value. The action is the position with the highest Q-value among those that may be
toggled (-inf elsewhere). Training is DQN with a target network synced every `target_sync` learn steps,
epsilon-greedy exploration, prioritised replay (`replay.py`), Adam, importance-weighted squared TD error and
gradient clipping at norm 5.

Defaults are the paper's: gamma 0.9, learning rate 1e-4, batch 256, target sync every 100 learn steps; the
official code (niuzaisheng/AttExplainer) also gives: epsilon 0.3 (its `epsilon=0.7` is the probability of a
greedy move), replay capacity 10,000, dropout 0.5 after both hidden layers, one learn step every 10 game steps.

Parity flags for the official code's quirks, each off by default:

- `dropout_at_eval`: the code calls `F.dropout` without `training=`, so dropout stays on when the agent acts
  greedily and at evaluation (its moves are then random-ish). Off: dropout only in learn steps.
- `same_action_target`: the code's TD target is r + gamma * Q_target(s', a), the *same* action a in the next
  state, instead of max over a' of Q_target(s', a'). Off: the usual max over the allowed positions.
(The third quirk, misclassified inputs counted as attack successes, is an evaluation matter:
`attexp.evaluate.masking`'s `count_misclassified_as_success`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from attexp.config.schema import StrictModel
from attexp.distill.attexplainer.features import feature_size
from attexp.distill.attexplainer.game import GameSettings, Observation, Step
from attexp.distill.attexplainer.replay import PrioritizedReplay, Transition
from attexp.errors import AttexpError
from attexp.io.files import read_json, write_json

AGENT_WEIGHTS = "agent.safetensors"
AGENT_CONFIG = "agent.json"


class AgentSettings(StrictModel):
    """DQN hyperparameters (defaults: the paper's and the official code's; see the module docstring)."""

    hidden: int = Field(63, ge=1, description="first hidden layer (the status bit is appended to it)")
    hidden2: int = Field(8, ge=1, description="second hidden layer")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout after both hidden layers, in learn steps")
    gamma: float = Field(0.9, ge=0, le=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(256, ge=1, description="transitions per learn step")
    target_sync: int = Field(100, ge=1, description="learn steps between target-network syncs")
    epsilon: float = Field(0.3, ge=0, le=1, description="probability of a random move while training")
    replay_capacity: int = Field(10_000, ge=1)
    learn_every: int = Field(10, ge=1, description="game steps between learn steps")
    max_grad_norm: float = Field(5.0, gt=0)
    dropout_at_eval: bool = Field(False, description="parity: dropout also when acting and at evaluation")
    same_action_target: bool = Field(False, description="parity: TD target Q_target(s', a) instead of max_a'")


class QNetwork(nn.Module):
    """Per-token Q-values: features [B, T, F], status [B, T] -> [B, T] (one shared MLP over tokens)."""

    def __init__(self, features: int, hidden: int = 63, hidden2: int = 8, dropout: float = 0.5) -> None:
        super().__init__()
        self.layer1 = nn.Linear(features, hidden)
        self.layer2 = nn.Linear(hidden + 1, hidden2)
        self.out = nn.Linear(hidden2, 1)
        self.dropout = dropout
        self.always_dropout = False  # parity with the official code: dropout even in eval mode

    def forward(self, features: Tensor, status: Tensor) -> Tensor:
        drop = self.training or self.always_dropout
        x = F.dropout(torch.relu(self.layer1(features)), self.dropout, drop)  # [B, T, hidden]
        x = torch.cat([x, status[..., None].to(x.dtype)], dim=-1)  # [B, T, hidden + 1]
        x = F.dropout(torch.relu(self.layer2(x)), self.dropout, drop)  # [B, T, hidden2]
        return self.out(x).squeeze(-1)  # [B, T]


def masked_q(q: Tensor, allowed: Tensor) -> Tensor:
    """Q-values [B, T] with -inf where a position may not be chosen."""
    return q.masked_fill(~allowed, float("-inf"))


def collate(transitions: Sequence[Transition], device: torch.device) -> dict[str, Tensor]:
    """Pad transitions of different lengths into a batch: [N, T, F] / [N, T] tensors, actions, rewards, dones."""
    width = max(t.features.shape[0] for t in transitions)
    size, n_features = len(transitions), transitions[0].features.shape[1]
    out = {
        "features": torch.zeros(size, width, n_features),
        "next_features": torch.zeros(size, width, n_features),
        "status": torch.zeros(size, width),
        "next_status": torch.zeros(size, width),
        "allowed": torch.zeros(size, width, dtype=torch.bool),
    }
    for i, t in enumerate(transitions):
        n = t.features.shape[0]
        out["features"][i, :n] = t.features
        out["next_features"][i, :n] = t.next_features
        out["status"][i, :n] = t.status
        out["next_status"][i, :n] = t.next_status
        out["allowed"][i, :n] = t.allowed
    out["action"] = torch.tensor([t.action for t in transitions], dtype=torch.long)
    out["reward"] = torch.tensor([t.reward for t in transitions], dtype=torch.float32)
    out["done"] = torch.tensor([t.done for t in transitions], dtype=torch.float32)
    return {k: v.to(device) for k, v in out.items()}


class Agent:
    """The DQN agent: acts on observations, remembers transitions, learns from prioritised replay."""

    def __init__(
        self, settings: AgentSettings, game: GameSettings, device: torch.device | str = "cpu", seed: int = 0
    ) -> None:
        self.settings, self.game = settings, game
        self.device = torch.device(device)
        torch.manual_seed(seed)
        n = feature_size(game.bins)
        self.net = QNetwork(n, settings.hidden, settings.hidden2, settings.dropout).to(self.device)
        self.target = QNetwork(n, settings.hidden, settings.hidden2, settings.dropout).to(self.device)
        self.target.load_state_dict(self.net.state_dict())
        self.target.eval()
        self.net.always_dropout = settings.dropout_at_eval
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=settings.lr)
        self.replay = PrioritizedReplay(settings.replay_capacity, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.learn_steps = 0
        self.game_steps = 0

    # ----------------------------------------------------------------------------------------- acting

    @torch.no_grad()
    def q_values(self, observation: Observation) -> Tensor:
        """Masked Q-values [b, T] of the observed instances (-inf where a move is not allowed)."""
        self.net.eval()
        q = self.net(observation.features.to(self.device), observation.status.to(self.device))
        return masked_q(q, observation.allowed.to(self.device))

    def act(self, observation: Observation, explore: bool = False) -> Tensor:
        """One position per observed instance [b]: greedy, or with probability epsilon uniform among allowed."""
        actions = self.q_values(observation).argmax(dim=-1).cpu()
        if explore and self.settings.epsilon > 0:
            allowed = observation.allowed.cpu().numpy()
            for i in np.flatnonzero(self.rng.random(len(actions)) < self.settings.epsilon):
                actions[i] = int(self.rng.choice(np.flatnonzero(allowed[i])))
        return actions

    # ---------------------------------------------------------------------------------------- learning

    def remember(self, observation: Observation, actions: Tensor, step: Step) -> None:
        """Store the b transitions of one game step (trimmed to each instance's length) with their TD errors."""
        real = (observation.status > 0) | observation.allowed  # [b, T]: padding is neither (specials are in place)
        transitions = []
        for i in range(len(observation)):
            n = int(torch.nonzero(real[i]).max()) + 1
            transitions.append(
                Transition(
                    features=observation.features[i, :n].cpu(),
                    status=observation.status[i, :n].cpu(),
                    allowed=observation.allowed[i, :n].cpu(),
                    action=int(actions[i]),
                    reward=float(step.reward[i]),
                    next_features=step.next.features[i, :n].cpu(),
                    next_status=step.next.status[i, :n].cpu(),
                    done=bool(step.done[i]),
                )
            )
        with torch.no_grad():
            errors = self._td_errors(collate(transitions, self.device), train=False)
        self.replay.add(transitions, errors.abs().cpu().numpy())
        self.game_steps += 1

    def ready(self) -> bool:
        return len(self.replay) >= self.settings.batch_size

    def should_learn(self) -> bool:
        return self.ready() and self.game_steps % self.settings.learn_every == 0

    def _td_errors(self, batch: dict[str, Tensor], train: bool) -> Tensor:
        """TD errors [N]: Q(s, a) - (r + gamma * (1 - done) * Q_target(s', .)) (see the parity flag)."""
        self.net.train(train)
        q = self.net(batch["features"], batch["status"]).gather(1, batch["action"][:, None]).squeeze(1)  # [N]
        with torch.no_grad():
            q_next = self.target(batch["next_features"], batch["next_status"])  # [N, T]
            if self.settings.same_action_target:
                bootstrap = q_next.gather(1, batch["action"][:, None]).squeeze(1)
            else:
                bootstrap = masked_q(q_next, batch["allowed"]).max(dim=1).values
            target = batch["reward"] + self.settings.gamma * (1 - batch["done"]) * bootstrap
        return q - target

    def learn(self) -> float:
        """One learn step on a prioritised sample; returns the weighted loss. Syncs the target network every
        `target_sync` learn steps (before the step, as the official code does)."""
        if self.learn_steps % self.settings.target_sync == 0:
            self.target.load_state_dict(self.net.state_dict())
        self.learn_steps += 1
        slots, transitions, weights = self.replay.sample(self.settings.batch_size)
        errors = self._td_errors(collate(transitions, self.device), train=True)  # [N]
        self.replay.update(slots, errors.detach().abs().cpu().numpy())
        loss = (errors**2 * torch.as_tensor(weights, dtype=errors.dtype, device=self.device)).mean()
        self.optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.net.parameters(), self.settings.max_grad_norm)
        self.optimizer.step()
        self.net.eval()
        return float(loss.detach())

    # ---------------------------------------------------------------------------------- saving, loading

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed training run needs except the replay memory (refilled within a few batches)."""
        return {
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "learn_steps": self.learn_steps,
            "game_steps": self.game_steps,
            "beta": self.replay.beta,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.learn_steps, self.game_steps = int(state["learn_steps"]), int(state["game_steps"])
        self.replay.beta = float(state["beta"])
        self.rng.bit_generator.state = state["rng"]

    def save(self, folder: Path, extra: dict[str, Any] | None = None) -> None:
        """The trained Q-network as `agent.safetensors` plus `agent.json` (settings, game rules, extras)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{AGENT_WEIGHTS}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        tmp.replace(folder / AGENT_WEIGHTS)
        write_json(
            folder / AGENT_CONFIG,
            {
                "agent": self.settings.model_dump(mode="json"),
                "game": self.game.model_dump(mode="json"),
                **(extra or {}),
            },
        )

    @classmethod
    def load(cls, folder: Path, device: torch.device | str = "cpu") -> Agent:
        """An agent saved by `save`, ready to act greedily."""
        from safetensors.torch import load_file

        folder = Path(folder)
        if not (folder / AGENT_WEIGHTS).is_file() or not (folder / AGENT_CONFIG).is_file():
            raise AttexpError(
                f"no trained AttExplainer agent in {folder} (expected {AGENT_WEIGHTS} and {AGENT_CONFIG}). "
                f"Run the train_agent job that writes it first."
            )
        meta = read_json(folder / AGENT_CONFIG)
        agent = cls(AgentSettings(**meta["agent"]), GameSettings(**meta["game"]), device=device)
        agent.net.load_state_dict(load_file(str(folder / AGENT_WEIGHTS), device=str(agent.device)))
        agent.net.eval()
        return agent
