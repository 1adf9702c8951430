"""Learned explainers, each whole in its own folder: `empirical` (Empirical Explainers: the model, its
training, the distill job and the `empirical` explainer) and `attexplainer` (AttExplainer: the masking game,
attention features, the agent, replay, training, the train_agent job and the `attexplainer` explainer).

Importing the package registers both explainers and both jobs.
"""

from attexp.distill import attexplainer, empirical  # noqa: F401  (registers)
