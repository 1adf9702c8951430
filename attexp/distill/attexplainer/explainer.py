"""AttExplainer as an explainer: a trained agent plays the masking game on each instance.

AttExplainer (Niu et al., 2022, "AttExplainer: Explain Transformer via Attention by Reinforcement Learning",
IJCAI; code niuzaisheng/AttExplainer) explains a prediction by the tokens an RL agent masks, one at a time,
watching only the classifier's attention, until the explained class's probability has dropped by the done
threshold (task `explain`) or the prediction has flipped (task `attack`). The agent is trained by a
train_agent job (`attexp.distill.attexplainer.job`); here it plays greedily on the explain stage's batches.

Scores: the tokens masked when the game ends, by masking order: the first masked gets 1, the k-th of k gets
1/k; every other token (specials, padding, tokens never masked or put back) gets exactly 0. So the masked
token set is `attributions > 0` and "mask every token with positive attribution" (the evaluation of
`attexp.evaluate.masking`) replays the agent's final input.
Per-instance extras in the records: `steps` (game steps = victim queries after the first forward),
`delta_p` (p0 - p of the explained class at the end), `success` (1.0 when the goal was reached), `masked`
(tokens masked at the end) and `flipped` (1.0 when the prediction left the explained class).
Cost: 1 forward for the initial attention plus one per game step (each a forward with attention).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field

from attexp.config.schema import Upstream
from attexp.distill.attexplainer.agent import Agent
from attexp.distill.attexplainer.game import MaskingGame, Victim
from attexp.distill.attexplainer.training import mask_token_id, play
from attexp.explain.base import Explainer, ExplainerConfig, Explanation, zero_padding
from attexp.models.inputs import Batch, structural_positions
from attexp.models.layouts import BERT_FAMILY_TYPES
from attexp.registry import EXPLAINERS


class AttExplainerConfig(ExplainerConfig):
    """AttExplainer (Niu et al., 2022): a trained DQN agent's masking game as the explanation.

    agent: the train_agent job whose `agent/` holds the agent. max_steps / done_threshold / task: override the
    game rules the agent was trained with (None: keep them). dropout_at_eval: override the agent's parity flag
    (None: keep it; True reproduces the official code's stochastic evaluation and makes the explainer
    nondeterministic).
    """

    type: Literal["attexplainer"] = "attexplainer"
    agent: Annotated[str, Upstream(("train_agent",))]
    max_steps: int | None = Field(None, ge=1)
    done_threshold: float | None = Field(None, gt=0, le=1)
    task: Literal["explain", "attack"] | None = None
    dropout_at_eval: bool | None = None


@EXPLAINERS.register("attexplainer", AttExplainerConfig)
class AttExplainerExplainer(Explainer):
    """AttExplainer (Niu et al., 2022): tokens a trained RL agent masks, scored by masking order."""

    architectures = BERT_FAMILY_TYPES
    architecture_note = (
        "the agent masks tokens with the tokenizer's [MASK], which decoder vocabularies lack; ModernBERT has one, "
        "but the agent is tested on the BERT family only (the paper's models)"
    )

    needs_attentions = True
    config: AttExplainerConfig

    def __init__(
        self, config: AttExplainerConfig, model: torch.nn.Module, tokenizer: Any, upstream: Mapping[str, Path]
    ) -> None:
        super().__init__(config, model, tokenizer, upstream)
        self.agent = Agent.load(self.upstream_dir(config.agent, "agent") / "agent", device=self.device)
        overrides = {k: getattr(config, k) for k in ("max_steps", "done_threshold", "task")}
        self.game_settings = self.agent.game.model_copy(update={k: v for k, v in overrides.items() if v is not None})
        if config.dropout_at_eval is not None:
            self.agent.net.always_dropout = config.dropout_at_eval
        self.deterministic = not self.agent.net.always_dropout
        self.victim = Victim(model)
        self.mask_token_id = mask_token_id(tokenizer)

    def explain(self, batch: Batch) -> Explanation:
        allowed = ~structural_positions(batch.input_ids, batch.attention_mask, self.tokenizer)
        game = MaskingGame(
            self.victim,
            batch.input_ids,
            batch.attention_mask,
            batch.token_type_ids,
            allowed,
            self.game_settings,
            self.mask_token_id,
            target=batch.targets,
        )
        play(self.agent, game)
        scores = zero_padding(game.order_scores(), batch.attention_mask)  # [B, T]
        passes = (1 + game.steps).tolist()
        extras = {
            "steps": game.steps.float(),
            "delta_p": game.delta_p.float(),
            "success": game.success.float(),
            "masked": (scores > 0).sum(dim=1).float(),
            "flipped": (game.prediction != game.target).float(),
        }
        return Explanation(attributions=scores, forward_passes=passes, backward_passes=[0] * len(batch), extras=extras)
