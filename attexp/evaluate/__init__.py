"""The evaluate stage: metrics of explanation records (the Metric base in `base`; `agreement`, `faithfulness`,
`ferret_metrics`, `masking`, `normalised`, `soft`) and the job that scores explanation files (`job`).

Importing the package registers its metrics and the evaluate job.
"""

from attexp.evaluate import (  # noqa: F401  (registers)
    agreement,
    faithfulness,
    ferret_metrics,
    job,
    masking,
    normalised,
    quality,
    soft,
)
