"""The masking game of AttExplainer (Niu et al., IJCAI 2022) as an environment over a batch of instances.

Each instance starts as the victim classifier's input with its prediction y0 and probability p0 = p(y0 | x).
At every step the agent picks one token position per unfinished instance; the token there is toggled: replaced
by [MASK] if it is in place, put back if it was masked. The victim then runs once on the changed inputs (one
query per instance), and the game reads its probabilities and attention features (`features.py`). Structural
specials ([CLS], [SEP], ...) and padding can never be chosen (the agent's Q-values there are -inf).

When an instance is done (its game goal reached) or has used `max_steps` steps, it leaves the batch: later
victim forwards run only the rows still playing. Goals and rewards are those of the official code
(niuzaisheng/AttExplainer, run_train.py), with delta_p = p0 - p_t(y0):

- `explain`: done when delta_p >= `done_threshold` (0.8 in the paper; 0.7 for SST-2); reward 10 * delta_p at
  every step (a reward for the state reached, not for the change).
- `attack`: done when the prediction leaves y0; reward 10 when done, else 0.

`reward: difference` (not the paper's; an option) rewards the change instead of the state: 10 * (delta_p_t -
delta_p_{t-1}) plus 10 when done, so each move is credited with what it did to p(y0) and a game that stops at its
goal is not worth less than one that lingers near it (under the official explanation reward, staying at delta_p
= 0.7 for ever is worth 70 at gamma 0.9, reaching 0.8 and stopping 8).

Running out of steps is a time limit, not a terminal state: such a transition is stored as not done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor

from attexp.config.schema import StrictModel
from attexp.distill.attexplainer.features import attention_features, mean_attention
from attexp.models.encoder import Encoder
from attexp.models.precision import Precision, autocast

Task = Literal["explain", "attack"]


class GameSettings(StrictModel):
    """The rules of the masking game.

    task: `explain` (drop p(y0) by `done_threshold`) or `attack` (flip the prediction). done_threshold (0.8, the
    paper's; 0.7 for SST-2): the probability drop that ends an explanation game. max_steps (100): steps before an
    instance gives up. bins (32): histogram bins of the attention features (2 * bins + 4 features per token).
    reward: `official` (the official code's, default) or `difference` (see the module docstring).
    """

    task: Task = "explain"
    done_threshold: float = Field(0.8, gt=0, le=1)
    max_steps: int = Field(100, ge=1)
    bins: int = Field(32, ge=1)
    reward: Literal["official", "difference"] = "official"


class Victim:
    """The classifier being explained, as the game queries it: class probabilities and mean attention.

    Runs the model layer by layer through `attexp.models.encoder.Encoder` (no hook on the model, any attention
    implementation), so the attention probabilities are the eager ones whatever the model was loaded with.
    `queries` counts the instances run (one per row per forward). `precision`: autocast of the classifier's
    forwards (the agent's own network, 5k parameters, stays float32); probabilities and attention come back
    float32 either way.
    """

    def __init__(self, model: torch.nn.Module, precision: Precision | None = None) -> None:
        self.model = model
        self.encoder = Encoder(model)
        self.precision = precision
        self.queries = 0

    @torch.no_grad()
    def __call__(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """ids, mask, types [B, T] -> probabilities [B, C], layer- and head-mean attention [B, T, T]."""
        with autocast(input_ids.device, self.precision):
            trace = self.encoder.trace(input_ids, attention_mask, token_type_ids)
            logits = self.encoder.classify(trace.output, trace.context)
        probabilities = logits.float().softmax(dim=-1)
        self.queries += int(input_ids.shape[0])
        return probabilities, mean_attention(trace.probs).float()


@dataclass
class Observation:
    """What the agent sees of the instances still playing (b of them).

    features [b, T, F]; status [b, T] (1 = original token in place, specials included; 0 = masked or padding);
    allowed [b, T] bool (positions the agent may toggle).
    """

    features: Tensor
    status: Tensor
    allowed: Tensor

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass
class Step:
    """The outcome of one step for the b instances that played it: reward [b], done [b] bool (goal reached),
    delta_p [b], and the next observation of those same b instances (before finished ones leave)."""

    reward: Tensor
    done: Tensor
    delta_p: Tensor
    next: Observation


class MaskingGame:
    """A batch of masking games played in lockstep; finished instances leave the batch.

    input_ids, attention_mask, token_type_ids (or None), allowed: [B, T]; `target` [B] (optional) is the class
    whose probability should drop / prediction should flip (default: the victim's prediction). After the game,
    per instance: `steps` [B], `delta_p` [B], `success` [B] bool, `prediction` [B] (last predicted class),
    `status` [B, T] and `masked_at` [B, T] (the step at which a token still masked was last masked, -1 if not).
    """

    def __init__(
        self,
        victim: Victim,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None,
        allowed: Tensor,
        settings: GameSettings,
        mask_token_id: int,
        target: Tensor | None = None,
    ) -> None:
        self.victim = victim
        self.settings = settings
        self.mask_token_id = int(mask_token_id)
        self.original = input_ids
        self.ids = input_ids.clone()
        self.attention_mask = attention_mask
        self.token_type_ids = token_type_ids
        self.allowed = allowed.bool() & attention_mask.bool()
        size, width = input_ids.shape
        device = input_ids.device
        probabilities, attention = victim(input_ids, attention_mask, token_type_ids)
        self.target = probabilities.argmax(dim=-1) if target is None else target.to(device)
        self.p0 = probabilities.gather(1, self.target[:, None]).squeeze(1)  # [B]
        self.initial_prediction = probabilities.argmax(dim=-1)
        self.prediction = self.initial_prediction.clone()
        self.features = attention_features(attention, attention_mask, settings.bins)  # [B, T, F]
        self.status = attention_mask.float().clone()  # [B, T]
        self.masked_at = torch.full((size, width), -1, dtype=torch.long, device=device)
        self.steps = torch.zeros(size, dtype=torch.long, device=device)
        self.delta_p = torch.zeros(size, device=device)
        self.success = torch.zeros(size, dtype=torch.bool, device=device)
        self.returns = torch.zeros(size, device=device)  # undiscounted sum of rewards
        # an instance with nothing to toggle has nothing to play
        self.active = torch.nonzero(self.allowed.any(dim=1)).flatten()  # [b] indices still playing

    @property
    def finished(self) -> bool:
        return self.active.numel() == 0

    def observe(self) -> Observation:
        rows = self.active
        return Observation(self.features[rows], self.status[rows], self.allowed[rows])

    def step(self, actions: Tensor) -> Step:
        """Toggle position `actions[i]` of the i-th active instance, query the victim once for them; returns the
        step's outcome for the instances that played it, then drops those finished from the batch."""
        rows = self.active
        if actions.shape != rows.shape:
            raise ValueError(f"expected one action per active instance ({rows.numel()}), got shape {actions.shape}")
        actions = actions.to(rows.device)
        if not bool(self.allowed[rows, actions].all()):
            raise ValueError("an action chose a position that may not be toggled (a special token or padding)")
        was_in_place = self.status[rows, actions] > 0
        self.ids[rows, actions] = torch.where(
            was_in_place, torch.full_like(actions, self.mask_token_id), self.original[rows, actions]
        )
        self.status[rows, actions] = (~was_in_place).float()
        self.steps[rows] += 1
        self.masked_at[rows, actions] = torch.where(was_in_place, self.steps[rows], torch.full_like(actions, -1))

        # the victim runs only the rows still playing, cut to the longest of them
        width = int(self.attention_mask[rows].sum(dim=1).max())
        mask = self.attention_mask[rows, :width]
        types = None if self.token_type_ids is None else self.token_type_ids[rows, :width]
        probabilities, attention = self.victim(self.ids[rows, :width], mask, types)
        self.features[rows, :width] = attention_features(attention, mask, self.settings.bins)
        prediction = probabilities.argmax(dim=-1)
        delta_p = self.p0[rows] - probabilities.gather(1, self.target[rows, None]).squeeze(1)
        if self.settings.task == "explain":
            done = delta_p >= self.settings.done_threshold
            reward = 10.0 * delta_p
        else:
            done = prediction != self.target[rows]
            reward = 10.0 * done.float()
        if self.settings.reward == "difference":
            reward = 10.0 * (delta_p - self.delta_p[rows]) + 10.0 * done.float()
        self.prediction[rows] = prediction
        self.delta_p[rows] = delta_p
        self.success[rows] = done
        self.returns[rows] += reward
        out = Step(reward=reward, done=done, delta_p=delta_p, next=self.observe())
        leaving = done | (self.steps[rows] >= self.settings.max_steps)
        self.active = rows[~leaving]
        return out

    def order_scores(self) -> Tensor:
        """[B, T]: tokens masked at the end scored by the order they were masked in (the first 1, then
        decreasing to 1/k for the k-th of k), every other position 0."""
        scores = torch.zeros(self.masked_at.shape, device=self.masked_at.device)
        for i in range(self.masked_at.shape[0]):
            positions = torch.nonzero(self.masked_at[i] > 0).flatten()
            if positions.numel() == 0:
                continue
            order = positions[torch.argsort(self.masked_at[i, positions], stable=True)]
            k = order.numel()
            scores[i, order] = (k - torch.arange(k, device=scores.device)).float() / k
        return scores

    def summary(self) -> dict[str, Any]:
        """Batch means: success rate, steps, token modification rate (masked / allowed), return per instance."""
        allowed = self.allowed.sum(dim=1).clamp_min(1).float()
        masked = (self.masked_at > 0).sum(dim=1).float()
        return {
            "success_rate": self.success.float().mean().item(),
            "steps": self.steps.float().mean().item(),
            "mask_rate": (masked / allowed).mean().item(),
            "reward": self.returns.mean().item(),
            "delta_p": self.delta_p.mean().item(),
        }
