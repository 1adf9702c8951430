"""The `local` source: csv/tsv/jsonl files, one per split, with a column mapping (attexp/data/sources/columns.py)."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from attexp.data.sources.base import Corpus, DataSource, check_split_names
from attexp.data.sources.columns import ColumnMapping, build_rows
from attexp.errors import AttexpError
from attexp.registry import SOURCES

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


class LocalConfig(ColumnMapping):
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
        check_split_names(list(files))
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
        splits, names = build_rows(raw, cfg.text, cfg.text_pair, cfg.label, cfg.label_names)
        return Corpus(splits=splits, label_names=names, description=f"local files: {', '.join(paths)}")
