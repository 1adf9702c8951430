"""Empirical Explainers (Schwarzenberg et al. 2021, "Efficient Explanations from Empirical Explainers",
BlackboxNLP; code DFKI-NLP/emp-exp): a model distilled from an expensive explainer's records that predicts its
attributions in one forward pass.

Modules: `model` (the copy, student and shared designs), `heads` (the heads design: a learned map over the read
row's attention), `frozen` (what the designs reading the frozen classifier share), `loading` (any saved design),
`training` (the ignite training loop), `job` (the distill job) and `explainer` (the `empirical` explainer).
Importing the package registers the job and the explainer.
"""

from attexp.distill.empirical import explainer, job  # noqa: F401  (registers)
