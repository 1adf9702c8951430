"""The evaluate stage: metrics of explanation records and the job that scores explanation files.

Importing the package registers its metrics and jobs.
"""

from attexp.evaluate import analysis_job, faithfulness, job, masking, metrics  # noqa: F401  (registers)
