"""What every model source is (`ModelSource`, one verb: `load`) and what they share: the label maps, reading a
folder's `config.json` without loading it, a folder's fingerprint, loading a `save_pretrained` folder."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import transformers
from pydantic import Field
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from attexp.config.schema import ComponentConfig, NeutralDefault
from attexp.errors import AttexpError
from attexp.models.loading import WeightsDtype, load_classifier, torch_dtype
from attexp.models.prompted import LabelWordsHead

Loaded = tuple[PreTrainedModel, PreTrainedTokenizerBase]


class ModelSourceConfig(ComponentConfig):
    """What every model source's config holds: `dtype`, the dtype its weights are loaded in.

    float32 (the default), bfloat16 or float16, or `auto` for what the checkpoint declares: the checkpoints of
    0.5-8B decoders are published in bfloat16, which halves their memory against float32. The explainers and
    metrics whose arithmetic needs it accumulate in float32 whatever the weights (integrals, ALTI's distances,
    the scorer's probabilities); what bf16 weights change is measured in benchmarks/dtype_attributions.py.
    Fine-tuning every weight keeps float32 (a bf16 weight loses updates below its precision): the train stage
    refuses another dtype, unless it trains LoRA adapters over the frozen weights (`lora:`).

    `head`: a `label_words` head reads a causal LM (no classification head of its own) as a prompted classifier, its
    classes the next-token logits of label words after a template (`attexp.models.prompted.LabelWordsHead`).
    """

    dtype: Annotated[WeightsDtype, NeutralDefault()] = Field(
        "float32", description="the weights' dtype: float32, bfloat16, float16, or auto (as the checkpoint declares)"
    )
    head: Annotated[LabelWordsHead | None, NeutralDefault()] = Field(
        None,
        description="read a causal LM as a prompted classifier: a template around the text and one label word per "
        "class, scored by their next-token logits (attexp.models.prompted)",
    )


def label_maps(num_labels: int, label_names: Sequence[str]) -> dict:
    """`from_pretrained`/config keyword arguments that name the labels; checks the names fit `num_labels`."""
    if len(label_names) != num_labels:
        raise AttexpError(
            f"got {len(label_names)} label names {list(label_names)} for {num_labels} labels; "
            "the dataset manifest must list one name per label id"
        )
    return {
        "num_labels": num_labels,
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: i for i, name in enumerate(label_names)},
    }


class ModelSource:
    """Base of the MODELS entries: holds the validated config."""

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        """A sequence classifier with `num_labels` outputs named by `label_names`, and its tokenizer.

        `train_texts` feed the tiny model's vocabulary; `cache_dir` holds fetched archives; `seed` seeds any
        newly initialised weights (the classification head, or a whole tiny model); `root` resolves relative
        local paths.
        """
        raise NotImplementedError

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        """Where a ready classifier of this source is: `(folder or hub name, from_pretrained keyword arguments)`.

        Used by the jobs that read a classifier as it is (explain, evaluate, distill, analyses), not fine-tune it.
        """
        raise AttexpError(
            f"a {self.config.type!r} model is built untrained; a job that reads a classifier needs a trained one: "
            "name the train job that fine-tunes it, or use a 'hub', 'local' or 'packaged' model source."
        )

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        """The model's `config.json` (what the plan checks read: `model_type`, `max_position_embeddings`) if it can be
        read without loading or fetching anything, else None."""
        return None

    def model_type(self, cache_dir: Path, root: Path | None = None) -> str | None:
        """The architecture (`config.json`'s `model_type`) if it can be read without loading or fetching anything."""
        value = (self.model_config(cache_dir, root) or {}).get("model_type")
        return str(value) if value else None

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        """A sha256 of the model's files as they are now (None where they are not on this machine)."""
        return None

    def problem(self, root: Path | None = None) -> str | None:
        """What is wrong with this source that can be seen before running anything (None: nothing seen)."""
        return None


def read_model_config(folder: Path) -> dict | None:
    """The `config.json` in `folder` as a dict, or None when there is none (nothing is loaded)."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def read_model_type(folder: Path) -> str | None:
    """`model_type` of the `config.json` in `folder`, or None when there is none (nothing is loaded)."""
    value = (read_model_config(folder) or {}).get("model_type")
    return str(value) if value else None


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the names and contents of the files in a model folder (hidden files and folders left out).

    A job records it in its manifest; when a rerun finds the folder changed, the job's results no longer
    describe that model and the run is refused like a changed config.
    """
    digest = hashlib.sha256()
    folder = Path(folder)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        digest.update(relative.as_posix().encode() + b"\0")
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def from_folder(
    folder: Path,
    num_labels: int,
    label_names: Sequence[str],
    dtype: WeightsDtype = "float32",
    head: LabelWordsHead | None = None,
) -> Loaded:
    """A classifier to fine-tune from a `save_pretrained` folder: its head resized to `num_labels` (new weights where
    the sizes differ), or the causal LM in it read through `head` (a prompted classifier, `attexp.models.prompted`)."""
    transformers.logging.set_verbosity_error()
    if head is not None:
        label_maps(num_labels, label_names)  # the names fit the number of labels
        return load_classifier(folder, dtype=dtype, head=head, label_names=list(label_names))
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, ignore_mismatched_sizes=True, dtype=torch_dtype(dtype), **label_maps(num_labels, label_names)
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer
