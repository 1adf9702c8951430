"""How fast the evaluate stage measures faithfulness, side by side with per-instance loops, in one run.

ERASER comprehensiveness and sufficiency (`eraser` metric: bins 1, 5, 10, 20, 50% plus the unperturbed input,
tokens deleted) on N instances, the same records and model for every variant:

  (a) loop: one forward pass per perturbed input (as ALTI's aupc.py runs them);
  (b) per instance: each instance's perturbations in one forward pass (as ferret batches the thresholds of one
      explanation);
  (c) attexp, no de-duplication: every perturbed input of a chunk of instances, sorted by length, --batch-size
      rows per forward;
  (d) attexp: as (c), and identical perturbed inputs run once (the evaluate stage's setting).

Instances are processed in chunks of --chunk; every variant runs each chunk before the next chunk starts, the
order rotating, so that load from other processes hits all alike; --repeats repeats the whole comparison.
Reported: forward passes, inputs run and seconds (summed over chunks, median over repeats), the ratio to (a),
and the largest difference of a per-instance value from (a) (they compute the same numbers).

Records: --explanations (an explain job's records.jsonl) or, by default, the first N rows of --data tokenised
with the model's tokenizer, explained by seeded random scores (the cost does not depend on the scores) for the
model's predicted class.

    python benchmarks/evaluate_speed.py --model /tmp/demo/models/rt.train.minilm/model \
        --data /tmp/demo/data/rt.download/test.jsonl [--instances 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.evaluate.faithfulness import Eraser, EraserConfig  # noqa: E402
from attexp.evaluate.model_scorer import ModelScorer  # noqa: E402
from attexp.explain.baseline import random_scores  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.inputs import structural_positions  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402

transformers.logging.set_verbosity_error()
VARIANTS = ("loop", "per_instance", "batched_no_dedup", "batched")


def make_records(model, tokenizer, data: Path, n: int, max_length: int) -> list[dict]:
    """Explanation records for the first n rows of a data file: random scores for the predicted class."""
    rows = read_jsonl(data, required=("idx", "text"))[:n]
    encoded = tokenizer([row["text"] for row in rows], truncation=True, max_length=max_length)["input_ids"]
    scorer = ModelScorer(model, tokenizer, "cpu", batch_size=64)
    probabilities = scorer.probabilities([(np.array(ids), scorer.segments_of(np.array(ids))) for ids in encoded])
    records = []
    for row, ids, p in zip(rows, encoded, probabilities, strict=True):
        ids_t = torch.tensor(ids)[None]
        structural = structural_positions(ids_t, torch.ones_like(ids_t), tokenizer)[0].numpy()
        records.append(
            {
                "idx": row["idx"],
                "input_ids": ids,
                "label": row.get("label"),
                "predictions": p.tolist(),
                "target": int(np.argmax(p)),
                "attributions": random_scores(np.array(ids), structural, 0).tolist(),
            }
        )
    return records


def run_variant(name: str, metric: Eraser, model, tokenizer, records: list[dict], batch_size: int):
    """(per-instance values, forward passes, inputs run, seconds) of one variant on one chunk."""
    if name == "loop":
        scorer = ModelScorer(model, tokenizer, "cpu", batch_size=1, cache=False)
    elif name == "per_instance":
        scorer = ModelScorer(model, tokenizer, "cpu", batch_size=10_000, cache=False)
    else:
        scorer = ModelScorer(model, tokenizer, "cpu", batch_size=batch_size, cache=name == "batched")
    began = time.perf_counter()
    values: dict[int, dict] = {}
    if name in ("loop", "per_instance"):
        for record in records:
            values.update(metric.compute([record], scorer=scorer).per_instance)
    else:
        values = metric.compute(records, scorer=scorer).per_instance
    return values, scorer.forward_passes, scorer.rows, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a models/<job>/model folder from the train stage")
    parser.add_argument("--data", type=Path, help="a data JSON-lines file, e.g. data/<job>/test.jsonl")
    parser.add_argument("--explanations", type=Path, help="an explain job's records.jsonl (instead of --data)")
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward of the batched variants")
    parser.add_argument("--chunk", type=int, default=100, help="instances per interleaved chunk")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    if (args.data is None) == (args.explanations is None):
        parser.error("give exactly one of --data and --explanations")

    torch.set_num_threads(args.threads)
    model, tokenizer = load_classifier(args.model, device="cpu")
    if args.explanations:
        records = read_jsonl(args.explanations, required=("idx", "input_ids", "target", "attributions"))
        records = records[: args.instances]
    else:
        records = make_records(model, tokenizer, args.data, args.instances, args.max_length)
    metric = Eraser(EraserConfig())
    chunks = [records[i : i + args.chunk] for i in range(0, len(records), args.chunk)]

    totals: dict[str, list[tuple[int, int, float]]] = {v: [] for v in VARIANTS}
    differences = dict.fromkeys(VARIANTS, 0.0)
    for repeat in range(args.repeats):
        passes, rows, seconds = dict.fromkeys(VARIANTS, 0), dict.fromkeys(VARIANTS, 0), dict.fromkeys(VARIANTS, 0.0)
        for c, chunk in enumerate(chunks):
            order = VARIANTS[(c + repeat) % len(VARIANTS) :] + VARIANTS[: (c + repeat) % len(VARIANTS)]
            results = {}
            for name in order:
                values, p, r, s = run_variant(name, metric, model, tokenizer, chunk, args.batch_size)
                results[name] = values
                passes[name] += p
                rows[name] += r
                seconds[name] += s
            for name in VARIANTS:
                for idx, value in results["loop"].items():
                    for key in ("comprehensiveness", "sufficiency"):
                        diff = abs(results[name][idx][key] - value[key])
                        differences[name] = max(differences[name], diff)
            print(f"repeat {repeat + 1}, chunk {c + 1}/{len(chunks)} done", file=sys.stderr, flush=True)
        for name in VARIANTS:
            totals[name].append((passes[name], rows[name], seconds[name]))

    lengths = [len(r["input_ids"]) for r in records]
    print(
        f"\n{len(records)} instances (tokens: mean {np.mean(lengths):.1f}, max {max(lengths)}), eraser "
        f"comprehensiveness + sufficiency at 5 bins + the full input; model {args.model}; torch threads "
        f"{torch.get_num_threads()}; batch size {args.batch_size}; chunks of {args.chunk}; repeats {args.repeats}\n"
    )
    base = statistics.median(s for _, _, s in totals["loop"])
    print(f"| {'variant':<17} | forward passes | inputs run | seconds | speed-up vs loop | max abs diff |")
    print(f"| {'-' * 17} | -------------: | ---------: | ------: | ---------------: | -----------: |")
    for name in VARIANTS:
        p, r, _ = totals[name][0]
        s = statistics.median(x for _, _, x in totals[name])
        print(f"| {name:<17} | {p:>14} | {r:>10} | {s:>7.1f} | {base / s:>15.1f}x | {differences[name]:>12.2e} |")


if __name__ == "__main__":
    main()
