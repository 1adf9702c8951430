"""How fast the evaluate stage measures faithfulness, side by side with a per-input loop and ferret's evaluators, in
one run, on the same records and model.

The workload is what an evaluate job scores: N instances explained by every `--explanations` file (joined by idx),
plus the random floor the evaluate stage adds (`attexp.evaluate.metric_table.with_floor`). Four variants:

  (a) loop: the model-reading metrics (`--metrics`, default eraser, ferret_aopc, tau_loo and soft), every run, metric
      and instance on its own, one forward pass per perturbed input (`ModelScorer(batch_size=1, cache=False)`; the
      soft metrics' masked rows run per instance, their two rows in one forward). Nothing is shared.
  (b) attexp: the same metrics as the evaluate stage runs them (`score_runs` with one `ModelScorer`): every distinct
      perturbed input of an instance runs once, whichever metrics and runs (explainers, the floor) ask for it, sorted
      by length, `--batch-size` rows per forward.
  (c) ferret: ferret's own AOPC comprehensiveness, AOPC sufficiency and tau-LOO evaluators, per run and instance
      (ferret 0.4.2: per explanation and evaluator it runs the unperturbed text, decodes each perturbed id list back
      to text and re-tokenises it, 8 texts per forward).
  (d) attexp (ferret's metrics): `ferret_aopc` + `tau_loo` as in (b).

Interleaved: the instances are cut into chunks of `--chunk`; every variant scores a chunk before the next chunk
starts, the order rotating, so that load from other processes hits all alike; `--repeats` repeats the whole
comparison. Reported per variant: forward passes, inputs run, tokens run (padding included, from a hook on the
model) and the share of them that is padding, seconds (summed over chunks, median over repeats), explanations per
second (N x runs / seconds) and the ratios (a)/(b) and (c)/(d).

Equality: (b) against (a), the largest difference of any per-instance value (they compute the same numbers; only
float noise from batching differs). (d) against (c): ferret decodes and re-tokenises, so for some explanations it runs
other inputs than the deletions it means (a word piece deleted from a word joins its neighbour). The benchmark
records the ids ferret's tokenizer produced for each explanation; where they are the inputs attexp perturbs, the
values must agree (reported: the largest difference there); the explanations where they are not are counted.

ferret: `import ferret` when installed, else `--ferret DIR` (the `ferret` package folder of an unpacked wheel,
`pip download ferret-xai==0.4.2 --no-deps`): its evaluator modules are loaded without ferret's top-level
`__init__`, which imports its explainers' dependencies (lime, shap, opencv) and pins numpy<2. Without either, (c)
and (d) are left out.

    python benchmarks/evaluate_speed.py --model <base>/models/rt.train.minilm/model \
        --explanations <base>/explanations/rt.explain.lig.minilm.test [more explain folders] \
        --instances 200 --ferret /tmp/ferret/ferret
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import attexp.evaluate.job  # noqa: E402,F401  (registers every metric)
from attexp.evaluate.metric_table import Run, score_runs, with_floor  # noqa: E402
from attexp.evaluate.model_scorer import Instance, ModelScorer, prepare  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402
from attexp.registry import METRICS  # noqa: E402

transformers.logging.set_verbosity_error()
MODEL_METRICS = ("eraser", "ferret_aopc", "tau_loo", "soft")
FERRET_METRICS = ("ferret_aopc", "tau_loo")
VARIANTS = ("loop", "attexp", "ferret", "attexp_ferret")
LABELS = {
    "loop": "(a) loop, one forward per input",
    "attexp": "(b) attexp (evaluate stage)",
    "ferret": "(c) ferret 0.4.2 evaluators",
    "attexp_ferret": "(d) attexp, ferret's metrics",
}


# ------------------------------------------------------------------------------------------------ inputs


def load_runs(paths: Sequence[Path], n: int) -> list[Run]:
    """(name, explainer, records) per explanations file, restricted to the first n idx of the first file."""
    runs: list[Run] = []
    keep: list[int] | None = None
    for path in paths:
        file = path / "records.jsonl" if path.is_dir() else path
        records = {r["idx"]: r for r in read_jsonl(file, required=("idx", "input_ids", "target", "attributions"))}
        if keep is None:
            keep = sorted(records)[:n]
        missing = [idx for idx in keep if idx not in records]
        if missing:
            sys.exit(f"{file}: no record for idx {missing[:5]}; every explanations file must cover the first's")
        name = file.parent.name
        runs.append((name, name, [records[idx] for idx in keep]))
    return runs


def metric(name: str):
    entry = METRICS.get(name)
    return entry.cls(entry.config_type.model_validate({"type": name}))


def load_ferret(folder: Path | None) -> types.ModuleType | None:
    """ferret's faithfulness evaluator module: the installed package, else loaded from `folder` without ferret's
    top-level __init__ (see the module docstring); None without either."""
    try:
        return importlib.import_module("ferret.evaluators.faithfulness_measures")
    except ImportError:
        if folder is None:
            return None
    package = types.ModuleType("ferret")
    package.__path__ = [str(folder)]
    sys.modules["ferret"] = package
    return importlib.import_module("ferret.evaluators.faithfulness_measures")


class Counter:
    """Forward passes, rows, tokens (padding included) and real tokens of every call of the model, from a forward
    pre-hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.passes = self.rows = self.tokens = self.real = 0
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module: Any, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        self.passes += 1
        self.rows += int(ids.shape[0])
        self.tokens += int(ids.shape[0] * ids.shape[1])
        mask = kwargs.get("attention_mask")
        self.real += int(mask.sum()) if mask is not None else int(ids.shape[0] * ids.shape[1])

    def snapshot(self) -> tuple[int, int, int, int]:
        return self.passes, self.rows, self.tokens, self.real


# ---------------------------------------------------------------------------------------------- variants


def run_loop(metrics, runs: list[Run], model, tokenizer) -> dict[tuple[str, int], dict]:
    scorer = ModelScorer(model, tokenizer, "cpu", batch_size=1, cache=False)
    values: dict[tuple[str, int], dict] = {}
    for name, _, records in runs:
        for m in metrics:
            for record in records:
                for idx, v in m.compute([record], scorer=scorer).per_instance.items():
                    values.setdefault((name, idx), {}).update(v)
    return values


def run_attexp(metrics, runs: list[Run], model, tokenizer, batch_size: int) -> dict[tuple[str, int], dict]:
    scorer = ModelScorer(model, tokenizer, "cpu", batch_size=batch_size)
    return score_runs(runs, metrics, None, scorer).per_instance


def run_ferret(module, runs: list[Run], model, tokenizer) -> tuple[dict, dict]:
    """ferret's three evaluators on every explanation: its values per (run, idx), and the unpadded ids its tokenizer
    produced for each explanation (every input it ran)."""
    from ferret.explainers.explanation import Explanation

    evaluators = [
        cls(model, tokenizer)
        for cls in (
            module.AOPC_Comprehensiveness_Evaluation,
            module.AOPC_Sufficiency_Evaluation,
            module.TauLOO_Evaluation,
        )
    ]
    seen: list[Any] = []
    for evaluator in evaluators:  # record what ferret tokenises (it runs exactly those encodings)
        evaluator.helper._tokenize = _recording(evaluator.helper._tokenize, seen)
    values, inputs = {}, {}
    for name, _, records in runs:
        for record in records:
            seen.clear()
            explanation = Explanation(
                record["text"], record["tokens"], np.asarray(record["attributions"]), name, record["target"]
            )
            scores = [float(e.compute_evaluation(explanation, record["target"]).score) for e in evaluators]
            values[(name, record["idx"])] = dict(zip(("comp", "suff", "tau"), scores, strict=True))
            inputs[(name, record["idx"])] = {
                tuple(ids[: int(mask.sum())].tolist())
                for item in seen
                for ids, mask in zip(item["input_ids"], item["attention_mask"], strict=True)
            }
    return values, inputs


def _recording(tokenize: Callable, sink: list) -> Callable:
    def recorded(*args: Any, **kwargs: Any) -> Any:
        item = tokenize(*args, **kwargs)
        sink.append(item)
        return item

    return recorded


def attexp_inputs(inst: Instance, metrics: list, scorer: ModelScorer) -> set[tuple[int, ...]]:
    """The inputs `metrics` (ferret_aopc, tau_loo) ask for on one instance, and the unperturbed one (ferret runs it
    always)."""
    rows = [inst.full()] + [row for m in metrics for row in m.inputs([inst], scorer)]
    return {tuple(ids.tolist()) for ids, _ in rows}


# ------------------------------------------------------------------------------------------------- equality


def differences(a: dict, b: dict, beyond: float = 1e-6) -> dict[str, tuple[float, int, int, float]]:
    """Per value name: the largest |difference| of a per-instance value of `a` against `b`, how many differ by more
    than `beyond`, how many were compared, and the largest difference of a table value (a run's mean)."""
    out: dict[str, list] = {}
    means: dict[tuple[str, str], list[list[float]]] = {}
    for key, values in a.items():
        for name, x in values.items():
            if name in ("explanations", "idx"):
                continue
            y = b[key].get(name)
            xs, ys = np.atleast_1d(np.asarray(x, dtype=float)), np.atleast_1d(np.asarray(y, dtype=float))
            if np.any(np.isnan(xs) != np.isnan(ys)):
                raise AssertionError(f"{key} {name}: {x} against {y}")
            both = ~np.isnan(xs)
            if not both.any():
                continue
            diff = np.abs(xs[both] - ys[both])
            entry = out.setdefault(name, [0.0, 0, 0, 0.0])
            entry[0] = max(entry[0], float(diff.max()))
            entry[1] += int((diff > beyond).sum())
            entry[2] += int(both.sum())
            if np.ndim(x) == 0:
                pair = means.setdefault((key[0], name), [[], []])
                pair[0].append(float(x))
                pair[1].append(float(y))
    for (_, name), (xs, ys) in means.items():
        out[name][3] = max(out[name][3], abs(float(np.mean(xs)) - float(np.mean(ys))))
    return {name: tuple(entry) for name, entry in out.items()}


def ferret_agreement(
    ferret_values: dict, ferret_inputs: dict, ours: dict, instances: dict, metrics: list, scorer: ModelScorer
) -> dict[str, Any]:
    """ferret's values against attexp's where ferret ran the inputs attexp perturbs (per metric: the largest
    difference and how many differ by more than 1e-6); counts of the rest."""
    names = {"comp": "ferret_comprehensiveness", "suff": "ferret_sufficiency", "tau": "tau_loo"}
    same, other, skipped, other_diffs = 0, 0, 0, []
    largest = dict.fromkeys(names, 0.0)
    beyond = dict.fromkeys(names, 0)
    for key, theirs in ferret_values.items():
        mine = ours.get(key, {})
        if any(mine.get(ours_name) is None for ours_name in names.values()):
            skipped += 1  # attexp skips (no positive score, a constant vector) where ferret returns a default
            continue
        diffs = {m: abs(theirs[m] - mine[names[m]]) for m in names}
        if ferret_inputs[key] == attexp_inputs(instances[key], metrics, scorer):
            same += 1
            for m, d in diffs.items():
                largest[m] = max(largest[m], d)
                beyond[m] += int(d > 1e-6)
        else:
            other += 1
            other_diffs.append(max(diffs.values()))
    return {
        "same_inputs": same,
        "largest": largest,
        "beyond": beyond,
        "other_inputs": other,
        "other_median_difference": float(np.median(other_diffs)) if other_diffs else 0.0,
        "skipped_by_attexp": skipped,
    }


# ----------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a models/<job>/model folder from the train stage")
    parser.add_argument(
        "--explanations", type=Path, nargs="+", required=True, help="explain job folders (or records.jsonl files)"
    )
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--metrics", nargs="+", default=list(MODEL_METRICS), help="model-reading metrics of (a), (b)")
    parser.add_argument("--ferret", type=Path, help="ferret's package folder when ferret is not installed")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward of attexp's scorer")
    parser.add_argument("--chunk", type=int, default=50, help="instances per interleaved chunk")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--skip", nargs="*", default=[], choices=VARIANTS, help="variants to leave out")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tokenizer = load_classifier(args.model, device="cpu")
    counter = Counter(model)
    ferret = load_ferret(args.ferret)
    variants = [v for v in VARIANTS if v not in args.skip and (ferret is not None or "ferret" not in v)]
    metrics = [metric(name) for name in args.metrics]
    ferret_metrics = [metric(name) for name in FERRET_METRICS]
    runs = with_floor(load_runs(args.explanations, args.instances), metrics, tokenizer)
    n = len(runs[0][2])
    chunks = [
        [(name, explainer, records[i : i + args.chunk]) for name, explainer, records in runs]
        for i in range(0, n, args.chunk)
    ]
    scorer = ModelScorer(model, tokenizer, "cpu")
    instances = {(name, inst.idx): inst for name, _, records in runs for inst in prepare(records, scorer)}

    def variant(name: str, chunk: list[Run]) -> tuple[dict, dict | None]:
        if name == "loop":
            return run_loop(metrics, chunk, model, tokenizer), None
        if name == "attexp":
            return run_attexp(metrics, chunk, model, tokenizer, args.batch_size), None
        if name == "ferret":
            return run_ferret(ferret, chunk, model, tokenizer)
        return run_attexp(ferret_metrics, chunk, model, tokenizer, args.batch_size), None

    totals: dict[str, list[tuple[int, int, int, int, float]]] = {v: [] for v in variants}
    values: dict[str, dict] = {v: {} for v in variants}
    ferret_inputs: dict = {}
    for repeat in range(args.repeats):
        sums = {v: np.zeros(5) for v in variants}
        for c, chunk in enumerate(chunks):
            shift = (c + repeat) % len(variants)
            for name in variants[shift:] + variants[:shift]:
                before = counter.snapshot()
                began = time.perf_counter()
                result, inputs = variant(name, chunk)
                seconds = time.perf_counter() - began
                sums[name] += [*(a - b for a, b in zip(counter.snapshot(), before, strict=True)), seconds]
                if repeat == 0:
                    values[name].update(result)
                    ferret_inputs.update(inputs or {})
            print(f"repeat {repeat + 1}, chunk {c + 1}/{len(chunks)} done", file=sys.stderr, flush=True)
        for name in variants:
            totals[name].append(tuple(sums[name]))

    lengths = [len(r["input_ids"]) for r in runs[0][2]]
    explained = n * len(runs)
    print(
        f"\n{n} instances (tokens: mean {np.mean(lengths):.1f}, max {max(lengths)}) x {len(runs)} runs "
        f"({len(runs) - 1} explanations files + the random floor) = {explained} explanations; model {args.model}; "
        f"torch threads {torch.get_num_threads()}; batch size {args.batch_size}; chunks of {args.chunk}; repeats "
        f"{args.repeats}\n(a), (b): {', '.join(args.metrics)}"
        + ("; (c), (d): AOPC comprehensiveness + sufficiency (ferret's thresholds) and tau-LOO" if ferret else "")
        + "\n"
    )
    seconds = {name: statistics.median(t[4] for t in totals[name]) for name in variants}
    base = {"loop": "attexp", "attexp": "attexp", "ferret": "attexp_ferret", "attexp_ferret": "attexp_ferret"}
    columns = ("variant", "forward passes", "inputs run", "tokens run", "padding", "seconds", "explanations/s")
    print("| " + " | ".join(columns) + " | time / attexp's |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in variants:
        passes, rows, tokens, real, _ = totals[name][0]
        ratio = seconds[name] / seconds[base[name]] if base[name] in seconds else float("nan")
        print(
            f"| {LABELS[name]} | {int(passes):,} | {int(rows):,} | {int(tokens):,} | {1 - real / tokens:.0%} | "
            f"{seconds[name]:.1f} | "
            f"{explained / seconds[name]:.1f} | {ratio:.2f}x |"
        )
    print()
    if "loop" in values and "attexp" in values:
        print("(b) against (a), per value: largest difference per instance (values beyond 1e-6 of those compared);")
        print("largest difference of a table value (a run's mean)")
        print()
        print("| value | per instance | beyond 1e-6 | table |")
        print("|---|---:|---:|---:|")
        for name, (largest, beyond, compared, table) in sorted(differences(values["attexp"], values["loop"]).items()):
            print(f"| {name} | {largest:.1e} | {beyond:,} of {compared:,} | {table:.1e} |")
        print()
    if "ferret" in values and "attexp_ferret" in values:
        agreement = ferret_agreement(
            values["ferret"], ferret_inputs, values["attexp_ferret"], instances, ferret_metrics, scorer
        )
        print(
            f"(d) against (c): {agreement['same_inputs']:,} explanations where ferret ran the inputs attexp perturbs: "
            + ", ".join(
                f"{m} largest difference {agreement['largest'][m]:.1e} ({agreement['beyond'][m]} beyond 1e-6)"
                for m in agreement["largest"]
            )
            + f"; {agreement['other_inputs']:,} where its decode and re-tokenise changed an input (median largest "
            f"difference {agreement['other_median_difference']:.3f}); {agreement['skipped_by_attexp']:,} that attexp "
            f"skips (no positive score or a constant vector) and ferret scores with a default"
        )


if __name__ == "__main__":
    main()
