"""AttExplainer (Niu et al., 2022, "AttExplainer: Explain Transformer via Attention by Reinforcement
Learning", IJCAI; code niuzaisheng/AttExplainer): a DQN agent that watches a classifier's attention while it
masks tokens one at a time, until the predicted class's probability has dropped by a threshold (explanation)
or the prediction flips (adversarial attack).

Modules: `features` (attention features per token), `game` (the masking game over a batch, the victim),
`replay` (prioritised replay), `agent` (Q-network, DQN agent, saving), `training` (playing and the training
loop), `job` (the train_agent job, which trains and saves an agent) and `explainer` (the `attexplainer`
explainer, which plays it on the explain stage's batches); `attexp.evaluate.masking` scores the masking game.
Importing the package registers the job and the explainer.
"""

from attexp.distill.attexplainer import explainer, job  # noqa: E402, F401  (registers)
from attexp.distill.attexplainer.agent import Agent, AgentSettings, QNetwork
from attexp.distill.attexplainer.features import attention_features, feature_size
from attexp.distill.attexplainer.game import GameSettings, MaskingGame, Observation, Victim
from attexp.distill.attexplainer.replay import PrioritizedReplay, Transition
from attexp.distill.attexplainer.training import play, start_game, train

__all__ = [
    "Agent",
    "AgentSettings",
    "GameSettings",
    "MaskingGame",
    "Observation",
    "PrioritizedReplay",
    "QNetwork",
    "Transition",
    "Victim",
    "attention_features",
    "feature_size",
    "play",
    "start_game",
    "train",
]
