"""Proportional prioritised experience replay (Schaul et al., 2016, "Prioritized Experience Replay", ICLR).

AttExplainer's DQN samples its training transitions by priority: p_i = (|delta_i| + eps) ** alpha from the
transition's last TD error delta_i, P(i) = p_i / sum p, and corrects the bias with importance weights
w_i = (N * P(i)) ** -beta / max w, beta growing by `beta_increment` per sample call up to 1. New transitions
get the priority of their TD error at insertion and every sampled one is updated from the TD errors of the
learn step that used it (the official code's constants: eps 0.01, alpha 0.6, beta 0.4 + 0.001 per call).
The memory is a ring of `capacity` transitions; sampling draws with replacement in proportion to priority
(numpy's weighted choice over the ring, which at the paper's capacities costs less than the learn step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor


@dataclass
class Transition:
    """One move of one instance, trimmed to its n real tokens: features [n, F], status [n], allowed [n] bool,
    action (a position < n), reward, next_features [n, F], next_status [n], done (goal reached)."""

    features: Tensor
    status: Tensor
    allowed: Tensor
    action: int
    reward: float
    next_features: Tensor
    next_status: Tensor
    done: bool


class PrioritizedReplay:
    """A ring buffer of transitions sampled in proportion to their priority (see the module docstring)."""

    def __init__(
        self,
        capacity: int,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_increment: float = 0.001,
        eps: float = 0.01,
        seed: int = 0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.alpha, self.beta, self.beta_increment, self.eps = alpha, beta, beta_increment, eps
        self.items: list[Transition | None] = [None] * capacity
        self.priorities = np.zeros(capacity, dtype=np.float64)
        self.next = 0  # where the next transition goes
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def priority(self, errors: np.ndarray) -> np.ndarray:
        return (np.abs(np.asarray(errors, dtype=np.float64)) + self.eps) ** self.alpha

    def add(self, transitions: Sequence[Transition], errors: np.ndarray) -> None:
        """Store transitions with the priorities of their TD errors (one per transition)."""
        for transition, priority in zip(transitions, self.priority(errors), strict=True):
            self.items[self.next] = transition
            self.priorities[self.next] = priority
            self.next = (self.next + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, n: int) -> tuple[np.ndarray, list[Transition], np.ndarray]:
        """Draw n transitions by priority: their slots (n,), the transitions, importance weights (n,) in (0, 1]."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay memory")
        priorities = self.priorities[: self.size]
        probabilities = priorities / priorities.sum()
        slots = self.rng.choice(self.size, size=n, replace=True, p=probabilities)
        self.beta = min(1.0, self.beta + self.beta_increment)
        weights = (self.size * probabilities[slots]) ** -self.beta
        weights /= weights.max()
        return slots, [self.items[s] for s in slots], weights  # type: ignore[misc]

    def update(self, slots: np.ndarray, errors: np.ndarray) -> None:
        """New priorities for sampled slots from their latest TD errors."""
        self.priorities[np.asarray(slots)] = self.priority(errors)
