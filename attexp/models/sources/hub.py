"""`hub`: the ordinary `from_pretrained(name, revision=...)` path, for machines that reach the Hugging Face hub;
the plan checks read its `config.json` from the hub cache when it is there, and fetch nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from attexp.models.loading import hub_error, load_classifier, torch_dtype
from attexp.models.sources.base import Loaded, ModelSource, ModelSourceConfig, label_maps, read_model_config
from attexp.registry import MODELS


class HubModelConfig(ModelSourceConfig):
    """A model on the Hugging Face hub, loaded with `from_pretrained(name, revision=...)` (needs the hub)."""

    type: Literal["hub"] = "hub"
    name: str
    revision: str = "main"


@MODELS.register("hub", HubModelConfig)
class HubModel(ModelSource):
    """A model from the Hugging Face hub (only where the hub is reachable)."""

    config: HubModelConfig

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        transformers.logging.set_verbosity_error()
        name, revision = self.config.name, self.config.revision
        torch.manual_seed(seed)
        if self.config.head is not None:  # a causal LM read through label words
            return load_classifier(name, revision=revision, dtype=self.config.dtype, head=self.config.head,
                                   label_names=list(label_names))  # fmt: skip
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                name, revision=revision, dtype=torch_dtype(self.config.dtype), **label_maps(num_labels, label_names)
            )
            tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        except (OSError, ValueError) as err:
            raise hub_error(name, revision, err) from err
        return model, tokenizer

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        return self.config.name, {"revision": self.config.revision}

    def _cached_config(self) -> Path | None:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.config.name, "config.json", revision=self.config.revision)
        return Path(found) if isinstance(found, str) else None

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        found = self._cached_config()  # the hub cache, if this model was downloaded before; nothing is fetched
        return read_model_config(found.parent) if found is not None else None

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        found = self._cached_config()  # a snapshot folder is named by the commit it holds
        return f"{self.config.name}@{found.parent.name}" if found is not None else None
