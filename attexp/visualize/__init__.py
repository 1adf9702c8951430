"""The visualize stage: renders artifacts into HTML pages and plots; runs no model and imports no model,
explainer, metric or analysis code.

`heatmap` (coloured rows of one record), `report` (the per-instance pages and their index), `summary` (the
evaluation's metric table), `render` (the jinja2 environment every page goes through), `text` (class names,
previews), `tree` and `flow` (the analyses' drawings).

Importing the package registers the visualize job and the page renderers of the analysis jobs
(`analysis_pages`).
"""

from attexp.visualize import analysis_pages, job  # noqa: F401  (registers)
