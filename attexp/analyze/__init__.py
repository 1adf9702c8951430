"""Analyses of the model itself: Self-Attention Attribution head importance and pruning (`heads`), adversarial
triggers (`triggers`), attribution trees (`trees`) and IBA's per-layer flow (`flow`); the jobs that run them
over a split (`pruning_job`: head_pruning, `triggers_job`: triggers, writing to logs/, sharing
`model_analysis`) or on chosen instances (`instance_jobs`:
attribution_tree, layer_flow, writing to visualizations/, where the visualize stage draws their pages).

Importing the package registers the four jobs.
"""

from attexp.analyze import instance_jobs, pruning_job, triggers_job  # noqa: F401  (registers)
