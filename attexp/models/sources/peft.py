"""`peft`: a LoRA adapter folder over its base model, the form decoder classifiers are published in.

`path` (a local adapter folder, relative paths against the base directory) or `name` (a hub repository, fetched
with `huggingface_hub.snapshot_download` restricted to JSON, safetensors and tokenizer files, so nothing that runs
code is downloaded); `base` overrides the base the adapter names (`base_model_name_or_path`) with a model source,
e.g. a local copy of a hub base where the hub is out of reach. The classifier is the adapter merged into its base
(`attexp.models.adapters`); `dtype` is the base's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SerializeAsAny, model_validator

from attexp.config.schema import ComponentConfig, Registered
from attexp.errors import AttexpError
from attexp.models.adapters import ADAPTER_CONFIG, check_adapter_folder
from attexp.models.loading import hub_error
from attexp.models.sources.base import Loaded, ModelSource, ModelSourceConfig, folder_fingerprint
from attexp.registry import MODELS

BASE_SOURCES = ("local", "hub", "packaged")
SAFE_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "tokenizer*"]
"""What is fetched of a hub adapter: its configs, safetensors weights and tokenizer files (no pickles, no code)."""


class PeftModelConfig(ModelSourceConfig):
    """A LoRA adapter folder (`path`) or hub repository (`name`, `revision`) over its base, or over `base`."""

    type: Literal["peft"] = "peft"
    path: str | None = None
    name: str | None = None
    revision: str = "main"
    base: Annotated[SerializeAsAny[ComponentConfig] | None, Registered("model source", only=BASE_SOURCES)] = Field(
        None, description="the base model, when not the one the adapter names"
    )

    @model_validator(mode="after")
    def _one_place(self) -> PeftModelConfig:
        if (self.path is None) == (self.name is None):
            raise ValueError("give the adapter's `path` (a local folder) or its hub `name`, one of them")
        return self


@MODELS.register("peft", PeftModelConfig)
class PeftAdapterModel(ModelSource):
    """A LoRA adapter over its base model, merged (read as it is: it is already fine-tuned)."""

    config: PeftModelConfig

    def folder(self, cache_dir: Path, root: Path | None = None) -> Path:
        """The local adapter folder (a hub adapter is fetched into the hub cache first, safe files only)."""
        if self.config.path is not None:
            path = Path(self.config.path).expanduser()
            return Path(root) / path if not path.is_absolute() and root is not None else path
        from huggingface_hub import snapshot_download

        try:
            where = snapshot_download(self.config.name, revision=self.config.revision, allow_patterns=SAFE_PATTERNS)
        except Exception as err:  # the hub client raises several kinds when it cannot reach the hub
            raise hub_error(self.config.name, self.config.revision, err) from err
        return Path(where)

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        folder = self.folder(cache_dir, root)
        if not (folder / ADAPTER_CONFIG).is_file():
            raise AttexpError(
                f"{folder}: not a peft adapter folder (no {ADAPTER_CONFIG}). Fix the `peft` source's path."
            )
        check_adapter_folder(folder)
        kwargs: dict = {}
        if self.config.base is not None:
            where, base_kwargs = MODELS.get(self.config.base.type).cls(self.config.base).pretrained(cache_dir, root)
            if base_kwargs.get("revision") not in (None, "main"):
                raise AttexpError("a `peft` source's hub base is read at its main revision; use a local copy instead.")
            kwargs["base"] = where
        return folder, kwargs

    def problem(self, root: Path | None = None) -> str | None:
        if self.config.path is None:
            return None
        folder = self.folder(Path("."), root)
        if not (folder / ADAPTER_CONFIG).is_file():
            return f"peft model path {self.config.path!r} resolves to {folder}, which has no {ADAPTER_CONFIG}"
        return None

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        if self.config.path is None:
            return None
        folder = self.folder(cache_dir, root)
        return folder_fingerprint(folder) if folder.is_dir() else None

    def load(self, *args: object, **kwargs: object) -> Loaded:
        raise AttexpError(
            "a `peft` adapter is a classifier already fine-tuned: explain or evaluate it (model: {type: 'peft', ...}); "
            "to fine-tune LoRA adapters, give the train job its base model and `lora: {r: 8}`."
        )
