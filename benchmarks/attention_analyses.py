"""What the attention-attribution analyses cost, side by side in one run on the same model and sentences.

1. Per-head attribution maxima (the `head_pruning` importance and the `triggers` patterns both come from the
   full per-head Self-Attention Attribution maps, m = --steps, every layer) at each of --batch-sizes
   (length-sorted groups of the largest size, each cut into batches of every size; prefix caching, 64 rows per
   forward; batch 1 is how the official code YRdddream/attattr runs), checked to agree.
2. An accuracy pass over --eval-instances sentences with half of the heads masked by the forward pre-hook on
   the attention output projections (`attexp.analyze.heads.head_mask`) vs the plain model: the hooks' cost.

Variants are interleaved batch by batch (order rotating) so load from other processes hits both alike.

    python benchmarks/attention_analyses.py --model /tmp/demo/models/rt.train.minilm/model \\
        --data /tmp/demo/data/rt.download/validation.jsonl [--instances 32] [--batch-sizes 1,4,8] \\
        [--eval-instances 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.analyze import heads as H  # noqa: E402
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.encoder import Encoder  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--instances", type=int, default=32)
    parser.add_argument("--eval-instances", type=int, default=512)
    parser.add_argument("--batch-sizes", default="1,4,8", help="AttAttr batch sizes to compare")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model, tokenizer = load_classifier(Path(args.model), device=device)
    rows = read_jsonl(Path(args.data), required=("idx", "text", "label"))
    explainer = AttentionAttribution(AttAttrConfig(steps=args.steps, return_maps=True), model, tokenizer, {})

    sizes = sorted({int(x) for x in args.batch_sizes.split(",")}, reverse=True)
    groups = H.Batches(rows[: args.instances], model, tokenizer, sizes[0], 128, device)  # length-sorted groups
    seconds = {size: 0.0 for size in sizes}
    difference = 0.0
    for number, chunk in enumerate(groups.rows):
        results = {}
        order = sizes[number % len(sizes) :] + sizes[: number % len(sizes)]  # rotate who goes first
        for size in order:
            batches = H.Batches(chunk, model, tokenizer, size, 128, device)
            began = time.perf_counter()
            by_idx = {}
            for batch, batch_rows in zip(batches.batches, batches.rows, strict=True):
                maxima = H.attattr_head_maxima(explainer, batch)
                by_idx.update({row["idx"]: maxima[i] for i, row in enumerate(batch_rows)})
            seconds[size] += time.perf_counter() - began
            results[size] = torch.stack([by_idx[row["idx"]] for row in chunk])
        difference = max(difference, max(float((results[s] - results[sizes[0]]).abs().max()) for s in sizes))

    encoder = Encoder(model)
    layers, heads = encoder.num_layers, encoder.num_heads
    masked = H.mask_of(H.random_order(layers, heads, 0), layers * heads // 2, layers, heads)
    evaluation = H.Batches(rows[: args.eval_instances], model, tokenizer, 64, 128, device)
    timing = {"plain": 0.0, "head mask (50%)": 0.0}
    for number, batch in enumerate(evaluation.batches):
        for name in ["plain", "head mask (50%)"] if number % 2 == 0 else ["head mask (50%)", "plain"]:
            began = time.perf_counter()
            with torch.inference_mode():
                if name == "plain":
                    model(**batch.model_inputs())
                else:
                    with H.head_mask(encoder, masked):
                        model(**batch.model_inputs())
            timing[name] += time.perf_counter() - began

    n, m = len(groups), len(evaluation)
    print(f"| per-head AttAttr maxima, m = {args.steps}, {n} instances | s/instance | vs batch {sizes[0]} |")
    print("|---|---|---|")
    for size, value in seconds.items():
        print(f"| batch {size} | {value / n:.3f} | {value / seconds[sizes[0]]:.2f}x |")
    print(f"\nmax difference between batch sizes = {difference:.2e}\n")
    print(f"| accuracy pass, {m} instances | s/instance | ratio |")
    print("|---|---|---|")
    for name, value in timing.items():
        print(f"| {name} | {value / m:.5f} | {value / timing['plain']:.2f}x |")


if __name__ == "__main__":
    main()
