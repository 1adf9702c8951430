"""The visualize stage: renders artifacts into HTML pages and plots.

Importing the package registers its jobs.
"""

from attexp.visualize import analysis_job, job  # noqa: F401  (registers)
