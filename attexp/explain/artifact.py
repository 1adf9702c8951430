"""The explain artifact, written in one place: shard files merged into `records.jsonl`, the cost totals and the
record count in the manifest.

An explain job streams each rank's records to `records.jsonl.rank<r>.partial` and, once every rank is done, calls
`finish_records`; `attexp.explain(...).save()` writes the records it holds as one shard and calls the same
function (`save_records`), so that both give the same file, the same cost fields (`ExplanationCost`) and a
manifest that readers check the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attexp.io.artifacts import CONFIG, MANIFEST, finish_manifest, shard_file, shard_files
from attexp.io.files import merge_partials, read_jsonl, write_json, write_jsonl
from attexp.io.manifests import ExplanationCost, ExplanationsManifest
from attexp.io.records import EXPLANATIONS

RECORDS = EXPLANATIONS.files[0]  # records.jsonl


def finish_records(folder: Path, manifest: ExplanationsManifest) -> int:
    """Merge the shard files of `folder` into `records.jsonl` (sorted by idx; an idx in two shards is an error)
    and record its count and cost totals in `manifest`. Returns the number of records."""
    n = merge_partials(Path(folder) / RECORDS, shard_files(folder, RECORDS))
    manifest.cost = ExplanationCost.of(read_jsonl(Path(folder) / RECORDS))
    manifest.counts = {**manifest.counts, "records": n}
    return n


def save_records(
    folder: Path, records: list[dict[str, Any]], config: dict[str, Any], manifest: ExplanationsManifest
) -> Path:
    """Write explanation records made outside a job as a finished explain artifact in `folder`: `config.json`, the
    records (through `finish_records`, as a job's shards) and `manifest` completed and marked finished."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CONFIG, config)
    write_jsonl(shard_file(folder, RECORDS, 0), records)
    finish_records(folder, manifest)
    finish_manifest(manifest, folder, EXPLANATIONS.files, 0.0, 1)
    write_json(folder / MANIFEST, manifest.to_json())
    return folder
