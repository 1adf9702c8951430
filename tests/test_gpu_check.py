"""benchmarks/gpu_check.py runs on a CPU with --device cpu and prints its one Markdown table (issue 15)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow  # about a minute on 2 cores: every explainer twice, three LIG variants, training steps
def test_gpu_check_runs_small_on_the_cpu():
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| check") and set(lines[1]) <= {"|", "-", " "}
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]
    agreement = {row[1]: float(row[3]) for row in rows if row[0].startswith("explainer on the device")}
    assert {"lig", "alti", "occlusion", "shapley_sampling"} <= set(agreement) and max(agreement.values()) < 1e-5
    timed = [row for row in rows if row[0].startswith("LIG-20")]
    assert {row[1] for row in timed} == {"attexp", "captum per instance", "torch floor"}
    assert {row[2] for row in timed} == {"fp32", "bf16"} and all(float(row[3]) > 0 for row in timed)
    assert [row[2] for row in rows if row[0].startswith("train step")] == ["fp32", "bf16"]
