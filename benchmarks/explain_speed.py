"""How fast attexp explains, side by side with the ways it replaces, in one run on the same model and data.

Layer Integrated Gradients, 20 steps (word embeddings, [PAD] baseline with specials kept, Gauss-Legendre, target
= the predicted class), on the first N sentences of a data file:

  (a) attexp: `explain_rows` with the `lig` explainer (length-bucketed batches of --batch-size, all steps of a
      batch in one Captum call), records built as the explain job writes them;
  (b) the emp-exp way: Captum's LayerIntegratedGradients per instance, batch 1, internal batch 1, every input
      padded to --max-length, after a batch-1 prediction forward;
  (c) the floor: a plain torch loop on the same length-bucketed batches that runs exactly the passes LIG-20
      needs (one prediction forward, then one forward and one backward over the B x 20 path points built from
      the embeddings looked up once) and nothing else: no Captum, no tokenising, no records.

Shapley Value Sampling, --svs-samples orders, feature mask over real tokens, on the first --svs-instances:

  (a) attexp: `explain_rows` with `shapley_sampling` (batched, perturbations of a batch in one forward,
      repeated coalitions run once);
  (b) Captum per instance: ShapleyValueSampling with the same feature mask, batch 1, one perturbation per
      forward, padded to --max-length;
  and the forward passes per instance of each, next to Thermostat's mask-free setting (25 orders over all 512
  positions of an input padded to 512: 1 + 25 x 512 passes), whose time is estimated from a measured batch-1
  forward at width 512.

Every variant runs on the same batches, interleaved batch by batch (the order rotating), so that load from
other processes hits all alike; each batch is run --repeats times and its fastest run counts (the slow
per-instance references run once: their noise cannot change a verdict). Figures are examples per second.

--memory: peak memory of an explain job streaming its records, over --small and --large instances (200 and
2,000), each in a fresh subprocess (max RSS from resource.getrusage), with a tiny BERT using the --model's
tokenizer (data rows are cycled, with fresh idx, when the file is shorter).

    python benchmarks/explain_speed.py --model /tmp/demo/models/rt.train.minilm/model \
        --data /tmp/demo/data/rt.download/test.jsonl [--instances 200] [--svs-instances 32]
    python benchmarks/explain_speed.py --memory --model DIR --data FILE
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import transformers
from captum.attr import LayerIntegratedGradients, ShapleyValueSampling

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.explain.batching import explain_rows  # noqa: E402
from attexp.explain.gradient import LayerIntegratedGradientsExplainer, LIGConfig  # noqa: E402
from attexp.explain.perturbation import ShapleySamplingConfig, ShapleySamplingExplainer  # noqa: E402
from attexp.io.files import ResumableJsonlWriter, read_jsonl  # noqa: E402
from attexp.models.inputs import pad_features, pad_id, structural_positions, tokenize_rows  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402

transformers.logging.set_verbosity_error()
THERMOSTAT_SAMPLES, THERMOSTAT_WIDTH = 25, 512


def read_rows(path: Path, n: int) -> list[dict]:
    """The first n rows of a JSON-lines data file; cycled with fresh idx when it is shorter."""
    rows = read_jsonl(path, required=("idx", "text"))
    out = []
    while len(out) < n:
        for row in rows[: n - len(out)]:
            out.append({**row, "idx": len(out)})
    return out


def buckets(tokenizer, rows: list[dict], batch_size: int, max_length: int) -> list[list[int]]:
    """The length-bucketed batches explain_rows makes (longest first, ties in data order), as row indices."""
    features = tokenize_rows(tokenizer, rows, max_length)
    order = sorted(range(len(rows)), key=lambda i: -len(features[i]["input_ids"]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def baseline_ids(ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> torch.Tensor:
    keep = structural_positions(ids, mask, tokenizer)
    return torch.where(keep, ids, torch.full_like(ids, tokenizer.pad_token_id))


def model_kwargs(mask: torch.Tensor, types: torch.Tensor | None) -> dict:
    return {"attention_mask": mask} | ({} if types is None else {"token_type_ids": types})


# ---------------------------------------------------------------- the LIG variants


def lig_attexp(model, tokenizer, rows: list[dict], steps: int, max_length: int) -> dict[int, list[float]]:
    explainer = LayerIntegratedGradientsExplainer(LIGConfig(n_steps=steps), model, tokenizer, {})
    out = {}
    for records in explain_rows(
        explainer, model, tokenizer, rows, batch_size=len(rows), max_length=max_length,
        target="predicted", device="cpu", progress=False,
    ):  # fmt: skip
        out.update({r["idx"]: r["attributions"] for r in records})
    return out


def lig_per_instance(model, tokenizer, rows: list[dict], steps: int, max_length: int) -> dict[int, list[float]]:
    """The emp-exp way: one instance at a time, padded to max_length, Captum's internal batch 1."""

    def forward(ids, mask, types):
        return model(input_ids=ids, **model_kwargs(mask, types)).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    out = {}
    for row in rows:
        enc = tokenizer(row["text"], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        ids, mask, types = enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")
        with torch.no_grad():
            target = int(model(input_ids=ids, **model_kwargs(mask, types)).logits.argmax(-1))
        attributions = lig.attribute(
            ids, baselines=baseline_ids(ids, mask, tokenizer), target=target, additional_forward_args=(mask, types),
            n_steps=steps, method="gausslegendre", internal_batch_size=1,
        )  # fmt: skip
        n = int(mask.sum())
        out[row["idx"]] = attributions.sum(-1)[0, :n].tolist()
    return out


def lig_floor(model, tokenizer, batch: tuple, steps: int, rows: list[dict]) -> dict[int, list[float]]:
    """Exactly the passes LIG needs on a padded batch: predict, then B x steps path points forward and backward."""
    ids, mask, types = batch
    size = ids.shape[0]
    points, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1] -> alphas on [0, 1]
    alphas = torch.tensor((points + 1) / 2, dtype=torch.float32)  # [S]
    weights = torch.tensor(weights / 2, dtype=torch.float32)  # [S]
    with torch.inference_mode():
        targets = model(input_ids=ids, **model_kwargs(mask, types)).logits.argmax(-1)  # [B]
    targets = targets.clone()  # a normal tensor: gather saves it for backward
    embed = model.get_input_embeddings()
    with torch.no_grad():
        x, b = embed(ids), embed(baseline_ids(ids, mask, tokenizer))  # [B, T, H]
    path = (b.unsqueeze(0) + alphas.view(-1, 1, 1, 1) * (x - b).unsqueeze(0)).flatten(0, 1)  # [S*B, T, H]
    path.requires_grad_()
    rep = lambda t: None if t is None else t.repeat(steps, 1)  # noqa: E731 - [S*B, T], step-major like path
    logits = model(inputs_embeds=path, **model_kwargs(rep(mask), rep(types))).logits  # [S*B, C]
    (grads,) = torch.autograd.grad(logits.gather(1, targets.repeat(steps)[:, None]).sum(), path)
    integral = (grads.view(steps, size, *x.shape[1:]) * weights.view(-1, 1, 1, 1)).sum(0)  # [B, T, H]
    scores = ((x - b) * integral).sum(-1)  # [B, T]
    lengths = mask.sum(-1).tolist()
    return {row["idx"]: scores[i, : int(lengths[i])].tolist() for i, row in enumerate(rows)}


# ---------------------------------------------------------------- the Shapley variants


def svs_attexp(model, tokenizer, rows, samples: int, max_length: int) -> tuple[dict, dict]:
    explainer = ShapleySamplingExplainer(ShapleySamplingConfig(n_samples=samples), model, tokenizer, {})
    scores, passes = {}, {}
    for records in explain_rows(
        explainer, model, tokenizer, rows, batch_size=len(rows), max_length=max_length,
        target="predicted", device="cpu", progress=False,
    ):  # fmt: skip
        for r in records:
            scores[r["idx"]], passes[r["idx"]] = r["attributions"], r["forward_passes"]
    return scores, passes


def svs_per_instance(model, tokenizer, rows, samples: int, max_length: int) -> tuple[dict, dict]:
    """Captum per instance: the same feature mask over real tokens, batch 1, padded, one perturbation a forward."""
    calls = [0]

    def forward(ids, mask, types):
        calls[0] += ids.shape[0]
        return model(input_ids=ids, **model_kwargs(mask, types)).logits

    svs = ShapleyValueSampling(forward)
    scores, passes = {}, {}
    for row in rows:
        enc = tokenizer(row["text"], padding="max_length", truncation=True, max_length=max_length, return_tensors="pt")
        ids, mask, types = enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")
        calls[0] = 0
        with torch.no_grad():
            target = int(forward(ids, mask, types).argmax(-1))
            real = ~structural_positions(ids, mask, tokenizer)
            features = (real.long().cumsum(1) - 1).clamp(min=0)
            attributions = svs.attribute(
                ids, baselines=baseline_ids(ids, mask, tokenizer), target=target,
                additional_forward_args=(mask, types), feature_mask=features, n_samples=samples,
            )  # fmt: skip
        n = int(mask.sum())
        scores[row["idx"]] = torch.where(real, attributions, 0.0)[0, :n].tolist()
        passes[row["idx"]] = calls[0]
    return scores, passes


# ---------------------------------------------------------------- running and reporting


def spread(group: list, k: int) -> list:
    """k rows spread evenly over the group (all of it when k is 0 or not smaller)."""
    if k <= 0 or k >= len(group):
        return group
    return [group[round(i * (len(group) - 1) / (k - 1))] for i in range(k)] if k > 1 else group[:1]


def interleaved(
    variants: dict, groups: list, repeats: int, sampled: dict[str, int] | None = None, once: frozenset = frozenset()
) -> tuple[dict[str, float], dict[str, dict]]:
    """Run every variant on every group, the order rotating; per variant the sum over groups of the fastest of
    its `repeats` runs there (the run least disturbed by other processes), and its outputs.

    `sampled[name] = k` runs that variant on k rows spread over each group and scales its time to the whole
    group: only for variants whose cost is the same for every row (everything padded to one length). Variants
    in `once` run in the first repeat only (the slow reference, whose noise cannot change a verdict).
    """
    sampled = sampled or {}
    times: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    outputs: dict[str, dict] = defaultdict(dict)
    names = list(variants)
    for name in names:  # warm up (first-call allocations, thread pools) on the shortest batch, untimed
        variants[name](groups[-1][:2])
    for repeat in range(repeats):
        for g, group in enumerate(groups):
            shift = (g + repeat) % len(names)
            for name in names[shift:] + names[:shift]:
                if repeat and name in once:
                    continue
                rows = spread(group, sampled.get(name, 0))
                began = time.perf_counter()
                result = variants[name](rows)
                times[name][g].append((time.perf_counter() - began) * len(group) / len(rows))
                outputs[name].update(result if isinstance(result, dict) else result[0])
                if not isinstance(result, dict):
                    outputs[name + ":passes"].update(result[1])
            print(f"  repeat {repeat + 1}/{repeats}, batch {g + 1}/{len(groups)} done", file=sys.stderr, flush=True)
    return {name: sum(min(runs) for runs in times[name].values()) for name in names}, outputs


def max_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(np.array(a[k]) - np.array(b[k])).max()) for k in a.keys() & b.keys())


def run_lig(args, model, tokenizer) -> None:
    rows = read_rows(args.data, args.instances)
    groups = [[rows[i] for i in g] for g in buckets(tokenizer, rows, args.batch_size, args.max_length)]
    # the floor gets its batches tokenised and padded beforehand: it times the passes alone
    padded = {id(g): pad_features(tokenize_rows(tokenizer, g, args.max_length), pad_id(tokenizer)) for g in groups}

    def floor(group):
        batch = padded.get(id(group)) or pad_features(
            tokenize_rows(tokenizer, group, args.max_length), pad_id(tokenizer)
        )
        return lig_floor(model, tokenizer, batch, args.steps, group)

    variants = {
        "(a) attexp explain_rows, lig": lambda g: lig_attexp(model, tokenizer, g, args.steps, args.max_length),
        "(b) captum per instance (emp-exp)": lambda g: lig_per_instance(
            model, tokenizer, g, args.steps, args.max_length
        ),
        "(c) floor: plain torch loop": floor,
    }
    print(f"LIG-{args.steps}: {len(rows)} instances, batches of {args.batch_size}, max_length {args.max_length}")
    names = list(variants)
    if args.per_instance_sample:
        print(
            f"(b) pads every input to {args.max_length} tokens, so every instance costs the same: it is timed on "
            f"{args.per_instance_sample} instances spread over each batch and its time scaled to the batch"
        )
    seconds, outputs = interleaved(
        variants, groups, args.repeats, {names[1]: args.per_instance_sample}, once=frozenset(names[1:2])
    )
    print(f"times: per batch the fastest of {args.repeats} runs ((b): 1 run), summed over the batches")
    a, b, c = (seconds[name] for name in variants)
    print("\n| variant | seconds | examples/s | vs (a) |\n|---|---:|---:|---:|")
    for name in variants:
        t = seconds[name]
        print(f"| {name} | {t:.1f} | {len(rows) / t:.2f} | {t / a:.2f}x |")
    print(f"\n(a)/(b) speed-up: {b / a:.2f}x (target >= 5x)   (a) vs floor (c): {a / c:.3f}x (target <= 1.25x)")
    print(
        f"max |score difference| (a)-(b): {max_difference(outputs[names[0]], outputs[names[1]]):.2e}, "
        f"(a)-(c): {max_difference(outputs[names[0]], outputs[names[2]]):.2e}"
    )


def run_svs(args, model, tokenizer) -> None:
    rows = read_rows(args.data, args.svs_instances)
    groups = [[rows[i] for i in g] for g in buckets(tokenizer, rows, args.batch_size, args.max_length)]
    variants = {
        "(a) attexp explain_rows, shapley_sampling": lambda g: svs_attexp(
            model, tokenizer, g, args.svs_samples, args.max_length
        ),
        "(b) captum per instance, padded": lambda g: svs_per_instance(
            model, tokenizer, g, args.svs_samples, args.max_length
        ),
    }
    print(f"\nShapley Value Sampling, {args.svs_samples} samples: {len(rows)} instances, batches of {args.batch_size}")
    names = list(variants)
    seconds, outputs = interleaved(variants, groups, args.repeats, once=frozenset(names[1:2]))
    # one batch-1 forward at width 512, for Thermostat's estimate
    ids = torch.full((1, THERMOSTAT_WIDTH), tokenizer.pad_token_id)
    ids[0, 0] = tokenizer.cls_token_id
    with torch.inference_mode():
        model(input_ids=ids)
        began = time.perf_counter()
        for _ in range(5):
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        per_forward = (time.perf_counter() - began) / 5
    thermostat_passes = 1 + THERMOSTAT_SAMPLES * THERMOSTAT_WIDTH
    real = [len(tokenizer(r["text"], truncation=True, max_length=args.max_length)["input_ids"]) - 2 for r in rows]
    print("\n| variant | forward passes / instance (incl. prediction) | seconds | examples/s |\n|---|---:|---:|---:|")
    for name in names:
        passes = outputs[name + ":passes"]
        mean = sum(passes.values()) / len(passes)
        print(f"| {name} | {mean:.0f} | {seconds[name]:.1f} | {len(rows) / seconds[name]:.3f} |")
    thermostat_seconds = thermostat_passes * per_forward  # per instance
    print(
        f"| Thermostat mask-free (25 x 512), estimated | {thermostat_passes} | "
        f"{thermostat_seconds * len(rows):.0f} (est.) | {1 / thermostat_seconds:.5f} (est.) |"
    )
    ours = sum(outputs[names[0] + ":passes"].values()) / len(rows)
    print(
        f"\nmean real tokens per instance: {np.mean(real):.1f}; "
        f"(a)/(b) speed-up: {seconds[names[1]] / seconds[names[0]]:.2f}x; "
        f"forward passes vs Thermostat: {thermostat_passes / ours:.0f}x fewer; "
        f"batch-1 forward at width 512: {per_forward * 1000:.1f} ms"
    )


# ---------------------------------------------------------------- memory


def memory_child(args) -> None:
    """Explain args.rows rows with LIG on a tiny BERT, streaming records to disk; print max RSS (MiB) as JSON."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=512, num_labels=2,
    )  # fmt: skip
    model = BertForSequenceClassification(config).eval()
    explainer = LayerIntegratedGradientsExplainer(LIGConfig(n_steps=args.steps), model, tokenizer, {})
    rows = read_rows(args.data, args.rows)
    with tempfile.TemporaryDirectory() as folder:
        writer = ResumableJsonlWriter(Path(folder) / "records.jsonl")
        for records in explain_rows(
            explainer, model, tokenizer, rows, batch_size=args.batch_size, max_length=args.max_length,
            target="predicted", device="cpu", progress=False,
        ):  # fmt: skip
            writer.write(records)
        writer.close()
        written = len(writer.done)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB
    print(json.dumps({"rows": args.rows, "written": written, "max_rss_mib": round(peak, 1)}))


def run_memory(args) -> None:
    print(f"peak memory (max RSS) of explain_rows + streamed records, LIG-{args.steps}, tiny BERT, fresh processes")
    results = defaultdict(list)
    for _ in range(args.repeats):
        for n in (args.small, args.large):
            command = [
                sys.executable, __file__, "--memory-child", "--rows", str(n), "--model", str(args.model),
                "--data", str(args.data), "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                "--max-length", str(args.max_length),
            ]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            assert result["written"] == n, result
            results[n].append(result["max_rss_mib"])
    small, large = max(results[args.small]), max(results[args.large])
    print("\n| instances | max RSS (MiB), each run |\n|---:|---|")
    for n, values in results.items():
        print(f"| {n} | {', '.join(f'{v:.0f}' for v in values)} |")
    print(f"\n{args.large} vs {args.small}: {large / small:.3f}x (target: within 1.10x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a models/<job>/model folder from the train stage")
    parser.add_argument("--data", type=Path, required=True, help="a data JSON-lines file, e.g. data/<job>/test.jsonl")
    parser.add_argument("--instances", type=int, default=200, help="LIG instances (fewer for a quick run)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="LIG integration steps")
    parser.add_argument("--svs-instances", type=int, default=32, help="Shapley sampling instances (0 skips)")
    parser.add_argument("--svs-samples", type=int, default=20)
    parser.add_argument("--skip-lig", action="store_true")
    parser.add_argument(
        "--per-instance-sample",
        type=int,
        default=0,
        help="time LIG (b) on this many instances per batch and scale (its cost does not depend on the instance)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per batch (the fastest counts; LIG (b) runs once) and memory runs"
    )
    parser.add_argument("--memory", action="store_true", help="compare peak memory over --small and --large rows")
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.memory_child:
        return memory_child(args)
    if args.memory:
        return run_memory(args)
    model, tokenizer = load_classifier(args.model, device="cpu")
    print(f"model {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")  # fmt: skip
    if not args.skip_lig:
        run_lig(args, model, tokenizer)
    if args.svs_instances:
        run_svs(args, model, tokenizer)


if __name__ == "__main__":
    main()
