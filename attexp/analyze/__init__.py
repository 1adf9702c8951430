"""Analyses of the model itself: Self-Attention Attribution head importance and pruning (`heads`), adversarial
triggers (`triggers`), attribution trees (`trees`) and IBA's per-layer flow (`flow`); the jobs that run them
over a split (`model_jobs`: head_pruning, triggers, writing to logs/) or on chosen instances (`instance_jobs`:
attribution_tree, layer_flow, writing to visualizations/, where the visualize stage draws their pages).

Importing the package registers the four jobs.
"""

from attexp.analyze import instance_jobs, model_jobs  # noqa: F401  (registers)
