"""The visualize stage: renders artifacts into HTML pages and plots (`html`, `tree`, `flow`); runs no model and
imports no model, explainer, metric or analysis code.

Importing the package registers the visualize job and the page renderers of the analysis jobs
(`analysis_pages`).
"""

from attexp.visualize import analysis_pages, job  # noqa: F401  (registers)
