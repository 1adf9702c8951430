"""`trained`: the classifier another train job of the pipeline wrote (`models/<job>/model/`), to fine-tune further.

What a second train job starts from when it continues a first one: the F-Fidelity protocol fine-tunes a copy of the
explained classifier with random masking (`mask_augment`), so that deletion measures the explanation and not the
distribution shift. The job name is an upstream reference: the plan orders the jobs and checks the name before
anything runs. The classifier is loaded as every downstream job reads it (a LoRA adapter merged over its base, a
prompted classifier through its label words) and its classes must be the dataset's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from attexp.config.schema import Upstream
from attexp.errors import AttexpError
from attexp.io.artifacts import job_dir
from attexp.models.loading import label_names_of, load_classifier
from attexp.models.sources.base import Loaded, ModelSource, ModelSourceConfig, folder_fingerprint, read_model_config
from attexp.registry import MODELS


class TrainedModelConfig(ModelSourceConfig):
    """The classifier of the train job `job` (its `models/<job>/model/`), loaded in float32 to train further."""

    type: Literal["trained"] = "trained"
    job: Annotated[str, Upstream(("train",))]


@MODELS.register("trained", TrainedModelConfig)
class TrainedModel(ModelSource):
    """A classifier an earlier train job wrote, read as it is and fine-tuned further."""

    config: TrainedModelConfig

    def folder(self, root: Path | None) -> Path:
        if root is None:
            raise AttexpError(f"model 'trained' (job {self.config.job!r}) needs the base directory to find the job")
        return job_dir(Path(root), "models", self.config.job) / "model"

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        folder = self.folder(root)
        model, tokenizer = load_classifier(folder, dtype=self.config.dtype, label_names=list(label_names))
        found = label_names_of(model)
        if found != list(label_names):
            raise AttexpError(
                f"the classifier of train job {self.config.job!r} has the classes {found}, but this job's dataset "
                f"has {list(label_names)}: continue training on the dataset that job was trained on"
            )
        return model.train(), tokenizer

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        return self.folder(root), {}

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        return read_model_config(self.folder(root)) if root is not None else None

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        folder = self.folder(root) if root is not None else None
        return folder_fingerprint(folder) if folder is not None and folder.is_dir() else None
