"""The artifact store: one folder per job under the base directory, with its resolved config and manifest.

Layout::

    <base>/<stage folder>/<job name>/config.json     the resolved job config
                                     manifest.json   provenance and status (`attexp.io.manifests`)
                                     ...             the stage's data files
                                     <file>.rank<i>.partial  share i's part of <file> while the job runs
                                                     (`shard_file`; merged into <file> when it finishes)
    <base>/<stage folder>/.<job name>.lock           the job's lock (`lock_path`; see attexp.runner)
    <base>/<stage folder>/.<job name>.shard<i>.lock  held while array task i runs its share (`shard_lock_path`)

The stage folders are `FOLDERS`; each job declares which one it writes (`Job.folder`): download -> data/; train,
distill and train_agent -> models/; explain -> explanations/; evaluate, head_pruning and triggers -> logs/;
visualize, attribution_tree and layer_flow -> visualizations/. A job is finished when its manifest says
`"status": "finished"`; downstream jobs read only finished artifacts. An artifact is found by its job name alone
(`find_artifact`): names are unique within a base directory, and the manifest says which stage wrote it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from attexp.errors import AttexpError
from attexp.io.files import read_json, read_jsonl
from attexp.io.manifests import FileEntry, Manifest, SchemaRef, UpstreamRef
from attexp.io.records import SCHEMAS, RecordSchema

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
CONFIG = "config.json"
_PACKAGES = ("attexp", "torch", "transformers", "tokenizers", "datasets", "captum", "pytorch-ignite", "numpy", "wandb")


FOLDERS = ("data", "models", "explanations", "logs", "visualizations")
"""The stage folders of a base directory (`Job.folder` is one of them)."""


def job_dir(base: Path, folder: str, name: str) -> Path:
    """`<base>/<folder>/<name>/`: the folder of job `name`, whose stage writes into `folder` (`Job.folder`)."""
    return Path(base) / folder / name


def lock_path(base: Path, folder: str, name: str) -> Path:
    """The lock of job `name` (`attexp.runner`): held by whoever starts, records or finishes the job."""
    return Path(base) / folder / f".{name}.lock"


def shard_lock_path(base: Path, folder: str, name: str, index: int) -> Path:
    """The lock an array task holds while it runs share `index` of job `name`, so two tasks never run one share."""
    return Path(base) / folder / f".{name}.shard{index}.lock"


def shard_file(folder: Path, name: str, index: int) -> Path:
    """`<folder>/<name>.rank<index>.partial`: share `index`'s part of the job file `name` (a rank's under torchrun,
    an array task's with --shard); every data-parallel stage names its shard files this way."""
    return Path(folder) / f"{name}.rank{index}.partial"


def shard_files(folder: Path, name: str) -> list[Path]:
    """Every shard file of the job file `name` in `folder` (of this run or an interrupted earlier one)."""
    return sorted(Path(folder).glob(f"{name}.rank*.partial"))


def cache_dir_of(base_dir: Path) -> Path:
    """Downloaded archives and extracted weights shared by all jobs: `$ATTEXP_CACHE_DIR`, else `<base>/.cache`."""
    return Path(os.environ.get("ATTEXP_CACHE_DIR") or Path(base_dir) / ".cache")


@dataclass(frozen=True)
class Artifact:
    """A job's folder, as read by a downstream job."""

    name: str
    stage: str
    dir: Path
    manifest: Manifest  # the typed manifest of the schema it declares (`RecordSchema.manifest`)

    @property
    def finished(self) -> bool:
        return self.manifest.is_finished

    @property
    def config(self) -> dict:
        return read_json(self.dir / CONFIG)

    def read(self, schema: RecordSchema, file: str | None = None, required: Sequence[str] | None = None) -> list[dict]:
        """The records of `file` (default: the schema's first file), after checking that the manifest declares
        `schema` at a version this code reads and that the file is the one the job finished with (its record count
        and sha256 in the manifest's `files`). `required`: the fields the reader needs (default: all the schema
        requires)."""
        version = schema.check(self.manifest, str(self.dir / MANIFEST))
        path = self.dir / (file or schema.files[0])
        verify_file(self.dir, path.name, self.manifest)
        records = read_jsonl(path, schema.required if required is None else required)
        log.info("read %d records of %s version %d from %s", len(records), schema.name, version, path)
        return records

    def require_finished(self) -> Artifact:
        if not self.finished:
            raise AttexpError(
                f"{self.dir}: job {self.name!r} has not finished (status {self.manifest.status!r}). "
                f"Rerun it to completion first."
            )
        return self


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, typed by the schema it declares (the base `Manifest` for one it does not know)."""
    data = read_json(path)
    declared = data.get("schema") if isinstance(data, dict) else None
    schema = SCHEMAS.get(declared.get("name")) if isinstance(declared, dict) else None
    return (schema.manifest if schema is not None else Manifest).model_validate(data)


def find_artifact(base: Path, name: str) -> Artifact | None:
    """The artifact of job `name` in any stage folder of `base`, or None."""
    for folder in FOLDERS:
        path = Path(base) / folder / name / MANIFEST
        if path.exists():
            manifest = read_manifest(path)
            if manifest.job:
                return Artifact(name, manifest.job, path.parent, manifest)
    return None


def names_on_disk(base: Path) -> list[str]:
    """The job names that have a manifest in `base`, by stage folder and name."""
    names = []
    for folder in FOLDERS:
        root = Path(base) / folder
        if root.is_dir():
            names += sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))
    return names


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_manifest(
    *,
    schema: RecordSchema,
    stage: str,
    config: dict,
    config_hash: str,
    upstream: dict[str, Artifact],
    code_version: int = 1,
) -> Manifest:
    """The manifest written when a job starts (status "running"); `finish_manifest` completes it at the end.
    `config_hash`: the job's hash (`attexp.config.hashing.config_hash`)."""
    return schema.manifest(
        schema=SchemaRef(name=schema.name, version=schema.version),
        job=stage,
        name=config["name"],
        status="running",
        config_hash=config_hash,
        code_version=code_version,
        seed=config.get("seed"),
        upstream={
            name: UpstreamRef(job=a.stage, path=str(a.dir), config_hash=a.manifest.config_hash)
            for name, a in upstream.items()
        },
        versions=package_versions(),
        git_revision=git_revision(),
        started=now(),
        finished=None,
        seconds=None,
        counts={},
    )


def finish_manifest(manifest: Manifest, folder: Path, files: Sequence[str], seconds: float, world_size: int) -> None:
    """Mark `manifest` finished: the content record of `files` (readers check it), the seconds this run added,
    how many processes did the work, the end time."""
    manifest.files = {name: FileEntry(**entry) for name, entry in file_records(folder, files).items()}
    manifest.seconds = round((manifest.seconds or 0) + seconds, 3)
    manifest.world_size = world_size
    manifest.finished = now()
    manifest.status = "finished"


def file_record(path: Path) -> dict[str, Any]:
    """What a finished job's manifest says of one of its files: sha256 and, for JSON lines, the record count."""
    digest = hashlib.sha256()
    lines = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            lines += block.count(b"\n")
    entry: dict[str, Any] = {"sha256": digest.hexdigest()}
    if path.suffix == ".jsonl":
        entry["records"] = lines
    return entry


def file_records(folder: Path, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`file_record` of each of `names` that exists in `folder` (written into the manifest at finish)."""
    return {name: file_record(folder / name) for name in names if (folder / name).is_file()}


def verify_file(folder: Path, name: str, manifest: Manifest) -> None:
    """Refuse a file of a finished artifact that is not the one its job finished with (cut, appended to, edited).

    Manifests written before the content record (no `files`) are read as they are.
    """
    expected = manifest.file_entry(name)
    if expected is None:
        return
    path = Path(folder) / name
    if not path.is_file():
        raise AttexpError(
            f"{path}: missing, but the manifest of job {manifest.name!r} lists it "
            f"({expected.get('records', '?')} records). Rerun that job with --force to write it again."
        )
    found = file_record(path)
    if found != expected:
        said = ", ".join(f"{k} {v}" for k, v in expected.items())
        got = ", ".join(f"{k} {v}" for k, v in found.items())
        raise AttexpError(
            f"{path}: not the file job {manifest.name!r} finished with: its manifest says {said}; found "
            f"{got}. The file was cut, changed or replaced after the job finished. Rerun that job with --force."
        )
