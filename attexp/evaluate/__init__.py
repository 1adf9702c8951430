"""The evaluate stage: metrics of explanation records (the Metric base in `base`; `agreement`, `faithfulness`,
`masking`, `normalised`, `soft`) and the job that scores explanation files (`job`).

Importing the package registers its metrics and the evaluate job.
"""

from attexp.evaluate import agreement, faithfulness, job, masking, normalised, quality, soft  # noqa: F401  (registers)
