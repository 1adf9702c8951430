"""The command line: `run_job.py [CONFIG] [options] [--a.b=value ...]`.

Exit codes: 0 success, 2 config error (nothing written), 1 runtime error. A wandb sweep agent runs
`python run_job.py CONFIG --key=value ...`; every unrecognised `--dotted.key=value` argument is an
override, exactly like `--override dotted.key=value`.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
from pathlib import Path

from attexp import distributed as dist
from attexp import registry
from attexp.errors import AttexpError, ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "run_job.jsonnet"
log = logging.getLogger("attexp")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_job.py",
        description="Run an attexp job or pipeline from a jsonnet config.",
        epilog="Any other --dotted.key=value argument is an override (the form a wandb sweep agent passes).",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="jsonnet config (default: configs/run_job.jsonnet, the demo pipeline)",
    )
    p.add_argument(
        "--base-dir",
        default=os.environ.get("ATTEXP_BASE_DIR", "."),
        help="base directory of data/, models/, explanations/, visualizations/, logs/ "
        "(default: $ATTEXP_BASE_DIR, else the current directory)",
    )
    p.add_argument("--ext-var", action="append", default=[], metavar="K=V", help="jsonnet external variable")
    p.add_argument("--override", action="append", default=[], metavar="A.B=V", help="set a config key after jsonnet")
    p.add_argument("--dry-run", action="store_true", help="validate and show what would run; write nothing")
    p.add_argument("--force", action="store_true", help="overwrite finished or partial artifacts of these jobs")
    p.add_argument(
        "--shard",
        metavar="I/N",
        help="run as task I of a job array of N (0 <= I < N; default from SLURM_ARRAY_TASK_ID/_COUNT): the explain "
        "and evaluate jobs on shard I of the instances, the task that finishes the last shard merges them",
    )
    p.add_argument("--merge", action="store_true", help="merge the shards of a job array whose tasks all finished")
    p.add_argument("--list", action="store_true", help="list registered jobs, explainers, metrics and sources")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return p


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = list(args.override)
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg.startswith("--") and len(arg) > 2:
            key, sep, value = arg[2:].partition("=")
            if not sep:  # "--a.b value"
                if i + 1 >= len(rest):
                    raise ConfigError(f"argument {arg}: no value given; use --{key}=VALUE.")
                value, i = rest[i + 1], i + 1
            overrides.append(f"{key}={value}")
        else:
            raise ConfigError(f"unrecognised argument {arg!r}. Run with --help for the options.")
        i += 1
    return args, overrides


def list_registered() -> str:
    registry.load_all()
    out = []
    for reg in (registry.JOBS, registry.EXPLAINERS, registry.METRICS, registry.SOURCES, registry.MODELS):
        out.append(f"{reg.kind}s:")
        out += [f"  {e.name:<17} {e.summary}" for e in reg.entries()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args, overrides = parse_args(argv)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for name in ("transformers", "datasets", "httpx", "urllib3", "filelock", "ignite"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if args.list:
        print(list_registered())
        return 0
    ext_vars = {}
    for item in args.ext_var:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"config error: --ext-var {item!r} is not of the form KEY=VALUE.", file=sys.stderr)
            return 2
        ext_vars[key] = value
    config = Path(args.config) if args.config else DEFAULT_CONFIG
    with dist.process_group():  # a no-op unless started by torchrun with several processes
        if not dist.is_main():
            logging.getLogger().setLevel(logging.WARNING)
        return _run(config, Path(args.base_dir), ext_vars, overrides, args)


def _run(config: Path, base_dir: Path, ext_vars: dict[str, str], overrides: list[str], args) -> int:
    from attexp.config.loader import load_config
    from attexp.runner import Launch, prepare, run_plan

    try:
        shard = _shard(args)
        launch = Launch.of(shard, args.merge)
        plan = load_config(config, base_dir=base_dir, ext_vars=ext_vars, overrides=overrides)
        prepared = prepare(plan, base_dir, args.force, array=launch.mode == "shard")
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    if args.dry_run:
        if dist.is_main():
            print(describe(plan, prepared, base_dir, shard))
        return 0
    _quiet_libraries()
    try:
        outputs = run_plan(plan, base_dir, launch, force=args.force)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    except AttexpError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume.", file=sys.stderr)
        return 130
    if dist.is_main():
        opened = what_to_open(outputs)
        if opened:
            print("Open:\n" + "\n".join(f"  {path}" for path in opened))
    return 0


def _shard(args) -> dist.Shard | None:
    """The job-array task of this command (`--shard I/N`, else a SLURM array's variables), checked against the
    other options; None outside an array."""
    try:
        shard = dist.parse_shard(args.shard) if args.shard else dist.shard_from_environment()
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if shard is not None and (args.force or dist.launched()):
        what = "--force" if args.force else "torchrun"
        raise ConfigError(
            f"--shard {shard} cannot be combined with {what}: array tasks share the job's folder. Run one command "
            f"with --force and no --shard to start over, or launch the tasks as separate single processes."
        )
    if args.merge and shard is not None and args.shard:
        raise ConfigError("--merge merges the shards of every task; give it without --shard.")
    return None if args.merge else shard


OPEN_FIRST = ("summary.html", "index.html", "table.md")
"""The files of a finished run a reader opens first, in this order: the visualize stage's summary and index pages,
the evaluate stage's table."""


def what_to_open(outputs: list[Path]) -> list[Path]:
    """The pages and tables the jobs of a run wrote (`OPEN_FIRST`), the last job's first."""
    found = []
    for out in reversed(outputs):
        found += [out / name for name in OPEN_FIRST if (out / name).is_file()]
    return found


def runs_on(job_cls, shard: dist.Shard | None = None) -> str:
    """Where a job's work runs (`Job.splits`): on every rank under torchrun and on the shards of a job array, on
    every rank only, or on rank 0 alone; with the reason the job declares when it does not split its instances."""
    from attexp.runner import Splits

    if shard is not None:
        return f"shard {shard} of its instances (array task)"
    if job_cls.splits is Splits.INSTANCES:
        return "all ranks under torchrun (each a share of the work) or the shards of a job array (--shard I/N)"
    if job_cls.splits is Splits.RANKS:
        return f"all ranks under torchrun, not as a job array: {job_cls.splits_because}"
    return f"rank 0 only under torchrun (the other ranks wait: {job_cls.splits_because})"


def describe(plan, prepared, base_dir: Path, shard: dist.Shard | None = None) -> str:
    """The dry-run report: per job, what would happen, where it writes, where its work runs, what it reads, the
    resolved config."""
    lines = [f"config: {plan.source}", f"base directory: {base_dir.resolve()}", f"jobs: {len(plan.jobs)}"]
    for i, item in enumerate(prepared, start=1):
        cfg = item.config
        lines.append(f"\n[{i}] {cfg.job} {cfg.name}: would {item.action} -> {item.out_dir}")
        lines.append(f"    runs on: {runs_on(registry.JOBS.get(cfg.job).cls, shard)}")
        for name, origin in plan.upstream.get(cfg.name, {}).items():
            where = "written earlier in this pipeline" if origin == "pipeline" else origin
            lines.append(f"    reads {name}: {where}")
        lines.append(
            "    resolved config: " + json.dumps(cfg.model_dump(mode="json"), indent=2).replace("\n", "\n    ")
        )
    return "\n".join(lines)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


_OS_FIXES = {
    errno.EACCES: "the user running attexp may not write there: fix the permissions or choose another --base-dir",
    errno.EPERM: "the user running attexp may not write there: fix the permissions or choose another --base-dir",
    errno.EROFS: "the file system is mounted read-only: choose a writable --base-dir (or $ATTEXP_CACHE_DIR)",
    errno.ENOSPC: "the disk is full: free space and run the same command again; the job resumes where it stopped",
    errno.EDQUOT: "the disk quota is used up: free space and run the same command again; the job resumes",
}


def describe_os_error(error: OSError) -> str:
    """One line for an OS error: the path, the problem and the fix (no traceback)."""
    where = error.filename or "(no path)"
    problem = error.strerror or str(error)
    fix = _OS_FIXES.get(error.errno, "check the path and run the same command again; a killed job resumes")
    return f"{where}: {problem} (errno {error.errno}). {fix}."
