"""Crash-safe files: atomic writes, JSON and JSON-lines readers that name the file and line of a problem,
and a resumable JSON-lines writer.

A finished artifact is never half-written: whole files are written to a temporary sibling, fsynced and
renamed over the target (`os.replace` is atomic on POSIX). Records that stream out of a long job go to
`<file>.partial` one fsynced line at a time; a job killed mid-line leaves at most one torn line, which
`ResumableJsonlWriter` cuts off when the job is rerun, so no record is lost or duplicated. `finalize()`
sorts by `idx` and renames the partial file into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from attexp.errors import AttexpError

_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
FIX = "Rerun the job that wrote it with --force, or fix the line."


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes it private; an artifact follows the umask like any file
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (the directory entry, not only the file, reaches the disk)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. a platform without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AttexpError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg}). Rerun the job that wrote it with --force."
        ) from None


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Atomically write records as JSON lines; returns the count."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: Path, required: Sequence[str] = ()) -> list[dict]:
    """Read JSON lines, checking that every record is an object with the `required` fields and a unique `idx`.

    Errors name the file and the 1-based line, what was found and what was expected.
    """
    path = Path(path)
    if not path.exists():
        raise AttexpError(f"{path}: file not found. Run the job that writes it first.")
    records: list[dict] = []
    seen: set[int] = set()
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise AttexpError(
                    f"{where}: not valid JSON ({e.msg}); expected one JSON object per line. {FIX}"
                ) from None
            if not isinstance(record, dict):
                raise AttexpError(f"{where}: expected a JSON object, got {type(record).__name__}. {FIX}")
            missing = [k for k in required if k not in record]
            if missing:
                raise AttexpError(
                    f"{where}: record lacks field(s) {', '.join(missing)}; expected fields: {', '.join(required)}. "
                    f"{FIX}"
                )
            if "idx" in record:
                if not isinstance(record["idx"], int):
                    raise AttexpError(f"{where}: 'idx' must be an integer, got {record['idx']!r}. {FIX}")
                if record["idx"] in seen:
                    raise AttexpError(f"{where}: duplicate idx {record['idx']}; every idx must appear once. {FIX}")
                seen.add(record["idx"])
            records.append(record)
    return records


class ResumableJsonlWriter:
    """Append records to `<path>.partial`, one fsynced line each; resume where a killed run stopped.

    `done` holds the idx of every record already on disk. Call `finalize()` once all records are written:
    it rewrites them sorted by idx into `path` atomically and removes the partial file.
    """

    def __init__(self, path: Path, partial: Path | None = None) -> None:
        self.path = Path(path)
        self.partial = Path(partial) if partial is not None else self.path.with_name(self.path.name + ".partial")
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[int] = set()
        self._recover()
        self._file = self.partial.open("a", encoding="utf-8")

    def _recover(self) -> None:
        """Keep every complete line of an earlier run; cut a torn last line."""
        if not self.partial.exists():
            return
        good_bytes = 0
        with self.partial.open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break  # torn write: the process died mid-line
                try:
                    record = json.loads(raw)
                except json.JSONDecodeError:
                    break
                if record["idx"] not in self.done:
                    self.done.add(record["idx"])
                good_bytes += len(raw)
        with self.partial.open("r+b") as f:
            f.truncate(good_bytes)

    def write(self, records: Iterable[dict]) -> None:
        for record in records:
            if record["idx"] in self.done:
                raise AttexpError(f"{self.partial}: idx {record['idx']} written twice; this is a bug in the job.")
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.done.add(record["idx"])
        self._file.flush()
        os.fsync(self._file.fileno())

    def finalize(self) -> int:
        """Sort by idx, move into place atomically; returns the record count."""
        self._file.close()
        records = read_jsonl(self.partial)
        records.sort(key=lambda r: r["idx"])
        n = write_jsonl(self.path, records)
        self.partial.unlink()
        return n

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def done_idx(paths: Iterable[Path]) -> set[int]:
    """The idx of every complete record in these (partial) JSON-lines files; a torn last line is ignored."""
    done: set[int] = set()
    for path in paths:
        if not Path(path).exists():
            continue
        with Path(path).open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                done.add(json.loads(raw)["idx"])
    return done


def read_shards(partials: Sequence[Path], required: Sequence[str] = ()) -> list[dict]:
    """The records of a job's shard files (one per rank or array task), sorted by idx.

    The one duplicate policy of every merge: an idx in two shard files is refused (two processes did one instance,
    which the fixed shares of `attexp.distributed.share_of` rule out), never silently kept once.
    """
    records: list[dict] = []
    origin: dict[int, Path] = {}
    for partial in partials:
        if not Path(partial).exists():
            continue
        for record in read_jsonl(partial, required):
            if record["idx"] in origin:
                raise AttexpError(
                    f"idx {record['idx']} is in two shard files ({origin[record['idx']].name} and {Path(partial).name} "
                    f"in {Path(partial).parent}): two processes did one instance. Rerun the job with --force."
                )
            origin[record["idx"]] = Path(partial)
            records.append(record)
    records.sort(key=lambda r: r["idx"])
    return records


def merge_partials(path: Path, partials: Sequence[Path], required: Sequence[str] = ()) -> int:
    """Merge shard files into `path`, sorted by idx, atomically (`read_shards`: a duplicate idx is refused); remove
    them; return the count."""
    n = write_jsonl(path, read_shards(partials, required))
    for partial in partials:
        Path(partial).unlink(missing_ok=True)
    return n
