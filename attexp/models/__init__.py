"""What every stage knows about a classifier: where it comes from and how it is loaded (`sources`, `loading`),
what is inside a transformer of each supported layout (`encoder`) and how its inputs are made (`inputs`).

Importing the package registers the model sources and the architecture check of plans (`architectures`).
"""

from attexp.models import architectures, sources  # noqa: F401  (registers)
