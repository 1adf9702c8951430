"""Two nodes on one machine: `torchrun --nnodes=2 --nproc_per_node=1` with a c10d rendezvous on localhost, each
"node" its own launcher process, running the tiny pipeline end to end on a shared base directory (gloo on CPU).

This is how a SLURM allocation of two nodes runs it (one `srun` line, see the README); here the shared filesystem
is the local disk.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import FIXTURES, ROOT

SMALL = FIXTURES / "configs" / "pipeline.small.jsonnet"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_node_torchrun_runs_the_tiny_pipeline_end_to_end(tmp_path, cache_dir):
    base = tmp_path / "base"
    port = free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ATTEXP_CACHE_DIR": str(cache_dir),
        "WANDB_DIR": str(tmp_path / "wandb"),
        "GLOO_SOCKET_IFNAME": "lo",
    }
    nodes = []
    for node in range(2):
        cmd = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes=2", "--nproc_per_node=1", f"--node_rank={node}",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=attexp-test",
            "run_job.py", str(SMALL), "--base-dir", str(base),
        ]  # fmt: skip
        log = open(tmp_path / f"node{node}.log", "w")  # noqa: SIM115
        nodes.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    for proc, log in nodes:
        proc.wait(timeout=1500)
        log.close()
    for node, (proc, _) in enumerate(nodes):
        assert proc.returncode == 0, (tmp_path / f"node{node}.log").read_text()[-4000:]
    for folder, name in [
        ("data", "rt.download"),
        ("models", "rt.train.tiny"),
        ("explanations", "rt.explain.lig.tiny.test"),
        ("models", "rt.distill.tiny"),
        ("logs", "rt.evaluate.tiny"),
        ("visualizations", "rt.visualize.tiny"),
    ]:
        manifest = json.loads((base / folder / name / "manifest.json").read_text())
        assert manifest["status"] == "finished", name
    explain = json.loads((base / "explanations" / "rt.explain.lig.tiny.test" / "manifest.json").read_text())
    assert explain["world_size"] == 2 and explain["counts"]["records"] == 40
    assert (base / "explanations" / "rt.explain.lig.tiny.test" / "job.rank1.log").exists(), "node 1 did its share"
    evaluation = json.loads((base / "logs" / "rt.evaluate.tiny" / "manifest.json").read_text())
    assert evaluation["world_size"] == 2 and evaluation["evaluation_cost"]["shares"] == 2
