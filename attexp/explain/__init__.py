"""The explain stage: the Explainer interface (`base`), the batching engine (`batching`), the job (`job`) and
one module per family of explainers: `captum` (what every Captum explainer shares), `gradient`, `perturbation`,
`attention` (raw attention, rollout, ALTI), `attattr` (Self-Attention Attribution), `bottleneck` (IBA) and
`baseline` (the random floor). Learned explainers register from `attexp.distill`, which this package never
imports.

Importing the package registers its explainers and the explain job.
"""

from attexp.explain import (  # noqa: F401
    attattr,
    attention,
    baseline,
    bottleneck,
    captum_base,
    gradient,
    job,
    perturbation,
)
