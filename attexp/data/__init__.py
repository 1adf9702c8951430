"""The download stage: data sources (`sources`), splitting and subsampling (`splits`) and the job that writes the
splits (`job`).

Importing the package registers its data sources and its job.
"""

from attexp.data import job, sources  # noqa: F401  (registers)
