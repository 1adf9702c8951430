"""The `huggingface` source: the real `datasets.load_dataset` call, for machines where the hub is reachable (or a
local dataset folder / packaged builder such as `json` with `data_files`), with a column mapping
(attexp/data/sources/columns.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator

from attexp.data.sources.base import Corpus, DataSource, check_split_names
from attexp.data.sources.columns import ColumnMapping, as_int, build_rows, missing_column
from attexp.errors import AttexpError
from attexp.registry import SOURCES


class HuggingFaceConfig(ColumnMapping):
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
        check_split_names(list(splits))
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
                    raise missing_column(where, role, column, ds.column_names)
            feature = ds.features[cfg.label]
            if isinstance(feature, datasets.ClassLabel):
                class_names = list(feature.names)
            table = ds.select_columns(columns).to_dict()
            records = [({c: table[c][i] for c in columns}, f"{where} row {i}") for i in range(ds.num_rows)]
            kept = [(r, w) for r, w in records if as_int(r[cfg.label]) != -1]
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
        splits, names = build_rows(raw, cfg.text, cfg.text_pair, cfg.label, names)
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
