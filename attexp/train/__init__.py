"""The train stage: fine-tune a classifier (`job`) with ignite engines (`engines`); the training settings of
every trained thing (`settings`).

Importing the package registers the train job.
"""

from attexp.train import job  # noqa: F401  (registers)
