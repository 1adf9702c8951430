"""What a second process buys per stage: the same jobs on 1 process and on 2 (torchrun, gloo), side by side.

This machine has 2 cores, so the fair comparison is 1 process with 2 intra-op threads against 2 processes with 1
thread each (`OMP_NUM_THREADS`); on a machine with more cores or GPUs, --procs and --threads set it. Every stage is
a separate single-job config run through `run_job.py`, each variant under its own job name on the same upstream
artifacts, and the variants alternate (the order flips every repeat), so load from elsewhere hits both alike.
Reported per stage: the job's own seconds from its manifest (process start and imports excluded) as the median
over --repeats, the ratio 1-process / N-process, and the equality checks:

  train      test accuracy of both (equal within 0.01: different batch splits, same data)
  explain    records: same idx, input_ids and targets; attributions within 1e-4
  distill    the empirical explainer's best validation MSE of both
  evaluate   table.md identical
  triggers   (not sharded yet) omitted

    python benchmarks/scale.py [--model tiny|minilm] [--train-rows 2000] [--repeats 3] [--procs 2] [--threads 2]

Setup (untimed): download, one single-process train and the LIG explanations the distill stage needs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.io.files import read_jsonl  # noqa: E402

LIB = ROOT / "configs" / "lib"


def pipeline(model: str, train_rows: int, explain_rows: int) -> str:
    """The demo pipeline's jobs for `model`, shrunk to the sizes asked for (jsonnet)."""
    train = (
        "{ epochs: 2, batch_size: 32, lr: 1e-3, progress: false }"
        if model == "tiny"
        else ("{ epochs: 1, batch_size: 32, lr: 5e-5, progress: false }")
    )
    return f"""
local empexp = import '{LIB}/empexp.libsonnet';
local rt = import '{LIB}/rotten_tomatoes.libsonnet';
local quiet = {{ progress: false }};
empexp.jobs('rt', rt.source, '{model}',
  download={{ limit: {{ train: {train_rows}, validation: {explain_rows}, test: {explain_rows} }} }},
  train={train},
  explain_limits={{ train: {explain_rows}, validation: {explain_rows // 2}, test: {explain_rows} }},
  lig={{ n_steps: 8 }},
  distill={{ epochs: 2, lr: 1e-3, progress: false }},
  max_length=64,
) {{ explain_train+: quiet, explain_validation+: quiet, explain_test+: quiet, explain_empirical+: quiet }}
"""


def run(base: Path, jobs_file: Path, key: str, name: str | None, procs: int, threads: int, port: int) -> float:
    """Run job `key` of the pipeline (renamed `name`) on `procs` processes; return its manifest's seconds."""
    config = base / f"{key}.{name or 'setup'}.jsonnet"
    rename = f" {{ name: '{name}' }}" if name else ""
    config.write_text(f"(import '{jobs_file}').{key}{rename}")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    launcher = [sys.executable]
    if procs > 1:
        launcher += ["-m", "torch.distributed.run", f"--nproc_per_node={procs}", f"--master_port={port}"]
    cmd = [*launcher, str(ROOT / "run_job.py"), str(config), "--base-dir", str(base), "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return manifest(base, name)["seconds"] if name else 0.0


def manifest(base: Path, name: str) -> dict:
    for folder in ("data", "models", "explanations", "logs", "visualizations"):
        path = base / folder / name / "manifest.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


def folder_of(base: Path, name: str) -> Path:
    for folder in ("models", "explanations", "logs"):
        if (base / folder / name).is_dir():
            return base / folder / name
    raise FileNotFoundError(name)


def check(stage: str, base: Path, one: str, many: str) -> str:
    """The equality check of a stage between the 1-process job `one` and the N-process job `many`."""
    if stage == "train":
        a, b = manifest(base, one)["test"]["accuracy"], manifest(base, many)["test"]["accuracy"]
        return f"test accuracy {a:.4f} vs {b:.4f} ({'ok' if abs(a - b) <= 0.01 else 'DIFFERS'})"
    if stage == "explain":
        x, y = (read_jsonl(folder_of(base, n) / "records.jsonl") for n in (one, many))
        same = [r["idx"] for r in x] == [r["idx"] for r in y] and all(
            r["input_ids"] == s["input_ids"] and r["target"] == s["target"] for r, s in zip(x, y, strict=True)
        )
        worst = max(
            max(abs(p - q) for p, q in zip(r["attributions"], s["attributions"], strict=True))
            for r, s in zip(x, y, strict=True)
        )
        return f"{len(x)} records, same ids/targets: {same}, max abs attribution difference {worst:.1e}"
    if stage == "distill":
        a, b = (manifest(base, n)["best_validation_mse"] for n in (one, many))
        return f"best validation MSE {a:.5f} vs {b:.5f}"
    if stage == "evaluate":
        same = (folder_of(base, one) / "table.md").read_text() == (folder_of(base, many) / "table.md").read_text()
        return f"table.md identical: {same}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("tiny", "minilm"), default="tiny")
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--explain-rows", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of the 1-process variant")
    parser.add_argument("--stages", default="train,explain,distill,evaluate")
    parser.add_argument("--base-dir", type=Path, default=None, help="keep the artifacts here (default: a temp dir)")
    args = parser.parse_args()

    base = args.base_dir or Path(tempfile.mkdtemp(prefix="attexp-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    jobs_file = base / "pipeline.libsonnet"
    jobs_file.write_text(pipeline(args.model, args.train_rows, args.explain_rows))
    port = 29600
    started = time.time()
    for key in ("download", "train", "explain_train", "explain_validation", "explain_test"):
        run(base, jobs_file, key, None, 1, args.threads, port)
    print(f"setup done in {time.time() - started:.0f} s ({base})", flush=True)

    keys = {"train": "train", "explain": "explain_test", "distill": "distill", "evaluate": "evaluate"}
    rows = []
    for stage in args.stages.split(","):
        if stage == "evaluate":  # evaluates the empirical explainer: its distill and explain jobs first (untimed)
            run(base, jobs_file, "distill", None, 1, args.threads, port)
            run(base, jobs_file, "explain_empirical", None, 1, args.threads, port)
        times: dict[int, list[float]] = {1: [], args.procs: []}
        names: dict[int, str] = {}
        for repeat in range(args.repeats):
            order = (1, args.procs) if repeat % 2 == 0 else (args.procs, 1)
            for procs in order:
                port += 1
                name = f"scale.{stage}.p{procs}.r{repeat}"
                threads = args.threads if procs == 1 else max(1, args.threads // args.procs)
                times[procs].append(run(base, jobs_file, keys[stage], name, procs, threads, port))
                names[procs] = name
                print(f"{stage} {procs} proc: {times[procs][-1]:.1f} s", flush=True)
        one, many = statistics.median(times[1]), statistics.median(times[args.procs])
        rows.append((stage, one, many, one / many, check(stage, base, names[1], names[args.procs])))

    print(f"\n{args.model}, {args.train_rows} training rows, {args.explain_rows} explained; median of {args.repeats}")
    print(f"| stage | 1 proc x {args.threads} threads (s) | {args.procs} procs x 1 thread (s) | ratio | equality |")
    print("|---|---:|---:|---:|---|")
    for stage, one, many, ratio, note in rows:
        print(f"| {stage} | {one:.1f} | {many:.1f} | {ratio:.2f}x | {note} |")


if __name__ == "__main__":
    main()
