"""The artifact store: one folder per job under the base directory, with its resolved config and manifest.

Layout::

    <base>/<stage folder>/<job name>/config.json     the resolved job config
                                     manifest.json   provenance and status (see `new_manifest`)
                                     ...             the stage's data files
    <base>/<stage folder>/.<job name>.lock           held while a run writes the folder

Each job declares its folder (`Job.folder`): download -> data/; train, distill and train_agent -> models/;
explain -> explanations/; evaluate, head_pruning and triggers -> logs/; visualize, attribution_tree and
layer_flow -> visualizations/. A job is finished when its manifest says
`"status": "finished"`; downstream jobs read only finished artifacts.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from attexp import registry
from attexp.errors import AttexpError
from attexp.io.files import read_json, read_jsonl
from attexp.io.records import RecordSchema

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
CONFIG = "config.json"
_PACKAGES = ("attexp", "torch", "transformers", "tokenizers", "datasets", "captum", "pytorch-ignite", "numpy", "wandb")


def stage_folders() -> dict[str, str]:
    """Job type -> the folder of the base directory its artifacts go to, as each registered job declares it
    (`Job.folder`: data/, models/, explanations/, logs/ or visualizations/)."""
    registry.load_all()
    return {entry.name: entry.cls.folder for entry in registry.JOBS.entries()}


def job_dir(base: Path, stage: str, name: str) -> Path:
    return Path(base) / stage_folders()[stage] / name


def lock_path(base: Path, stage: str, name: str) -> Path:
    return Path(base) / stage_folders()[stage] / f".{name}.lock"


def cache_dir_of(base_dir: Path) -> Path:
    """Downloaded archives and extracted weights shared by all jobs: `$ATTEXP_CACHE_DIR`, else `<base>/.cache`."""
    return Path(os.environ.get("ATTEXP_CACHE_DIR") or Path(base_dir) / ".cache")


UNSET_NEUTRAL = {
    "paper": None,
    "precision": None,
    # distill: the empirical explainer's mode and loss (the values before they existed)
    "mode": "copy",
    "student_layers": None,
    "branch_layers": None,
    "branch_init": None,
    "correlation_weight": 0.0,
    # head_pruning: the Taylor criterion
    "taylor": "michel",
    # train_agent: the learning curve
    "eval_every": None,
    "eval_size": 64,
    "continue_from": None,
}
"""Job keys added after artifacts were written, and the value that leaves the hash as it was, so that a
finished job is not refused for a key it could not have had."""

UNSET_NEUTRAL_EXPLAINER = {"mixed_precision": False}
"""The same for keys of a job's `explainer` block."""


def _neutral(value: Any, unset: dict[str, Any]) -> Any:
    if not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if not (k in unset and v == unset[k])}


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of a resolved job config, without keys that do not change results."""
    semantic = {
        k: _neutral(v, UNSET_NEUTRAL_EXPLAINER) if k == "explainer" else v
        for k, v in config.items()
        if k not in ("wandb", "device") and not (k in UNSET_NEUTRAL and v == UNSET_NEUTRAL[k])
    }
    return hashlib.sha256(json.dumps(semantic, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Artifact:
    """A job's folder, as read by a downstream job."""

    name: str
    stage: str
    dir: Path
    manifest: dict

    @property
    def finished(self) -> bool:
        return self.manifest.get("status") == "finished"

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
                f"{self.dir}: job {self.name!r} has not finished (status {self.manifest.get('status')!r}). "
                f"Rerun it to completion first."
            )
        return self


def find_artifact(base: Path, name: str) -> Artifact | None:
    """The artifact of job `name` in any stage folder of `base`, or None."""
    for stage, folder in stage_folders().items():
        path = Path(base) / folder / name / MANIFEST
        if path.exists():
            manifest = read_json(path)
            if manifest.get("job") == stage:
                return Artifact(name, stage, path.parent, manifest)
    return None


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
    *, schema: str, schema_version: int, stage: str, config: dict, upstream: dict[str, Artifact]
) -> dict[str, Any]:
    """The manifest written when a job starts (status "running"); the runner completes it at the end."""
    return {
        "schema": {"name": schema, "version": schema_version},
        "job": stage,
        "name": config["name"],
        "status": "running",
        "config_hash": config_hash(config),
        "seed": config.get("seed"),
        "upstream": {
            name: {"job": a.stage, "path": str(a.dir), "config_hash": a.manifest.get("config_hash")}
            for name, a in upstream.items()
        },
        "versions": package_versions(),
        "git_revision": git_revision(),
        "started": now(),
        "finished": None,
        "seconds": None,
        "counts": {},
    }


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


def verify_file(folder: Path, name: str, manifest: dict) -> None:
    """Refuse a file of a finished artifact that is not the one its job finished with (cut, appended to, edited).

    Manifests written before the content record (no `files`) are read as they are.
    """
    expected = (manifest.get("files") or {}).get(name)
    if expected is None:
        return
    path = Path(folder) / name
    if not path.is_file():
        raise AttexpError(
            f"{path}: missing, but the manifest of job {manifest.get('name')!r} lists it "
            f"({expected.get('records', '?')} records). Rerun that job with --force to write it again."
        )
    found = file_record(path)
    if found != expected:
        said = ", ".join(f"{k} {v}" for k, v in expected.items())
        got = ", ".join(f"{k} {v}" for k, v in found.items())
        raise AttexpError(
            f"{path}: not the file job {manifest.get('name')!r} finished with: its manifest says {said}; found "
            f"{got}. The file was cut, changed or replaced after the job finished. Rerun that job with --force."
        )
