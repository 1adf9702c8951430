"""How far the gradient explainers move when they run under bf16 (or fp16) autocast instead of float32.

Every gradient explainer takes `mixed_precision: true` to run under the explain job's `precision`; by default they
stay float32. This script explains the first N sentences of a data file with each gradient explainer twice, in
float32 and under autocast, through `explain_rows` as the explain job does (same batches), and reports per
explainer: the mean per-instance Spearman correlation of the two, the mean |difference| relative to the float32
scores' mean |score|, and how often the top token changes. The figures are written into the explainers'
docstrings (attexp/explain/gradient/).

    python benchmarks/gradient_precision.py --model /tmp/inv/models/alti.train.minilm/model \
        --data /tmp/inv/data/alti.download/test.jsonl [--instances 64] [--precision bf16] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.explain.batching import explain_rows  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402
from attexp.registry import EXPLAINERS  # noqa: E402

EXPLAINERS_MEASURED = {
    "lig": {"n_steps": 20},
    "ig": {"n_steps": 20},
    "saliency": {},
    "input_x_gradient": {},
    "deeplift": {},
    "gradient_shap": {"n_samples": 10},
}


def run(name: str, options: dict, mixed: bool, model, tokenizer, rows, args) -> dict[int, np.ndarray]:
    entry = EXPLAINERS.get(name)
    config = entry.config_type(type=name, mixed_precision=mixed, **options)
    explainer = entry.cls(config, model, tokenizer, {})
    out = {}
    for batch in explain_rows(
        explainer,
        model,
        tokenizer,
        rows,
        batch_size=args.batch_size,
        max_length=128,
        target="predicted",
        device=args.device,
        progress=False,
        precision=args.precision,
    ):
        for record in batch:
            out[record["idx"]] = np.asarray(record["attributions"], dtype=np.float64)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--instances", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precision", choices=["bf16", "fp16"], default="bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--explainers", nargs="*", default=list(EXPLAINERS_MEASURED), choices=list(EXPLAINERS_MEASURED))
    args = parser.parse_args()
    model, tokenizer = load_classifier(args.model, False, args.device)
    rows = read_jsonl(args.data)[: args.instances]
    print(f"{len(rows)} instances of {args.data}, {args.precision} autocast on {args.device} against float32\n")
    print("| explainer | Spearman (mean) | mean abs diff / mean abs score | top token changed |")
    print("|---|---|---|---|")
    for name in args.explainers:
        options = EXPLAINERS_MEASURED[name]
        exact = run(name, options, False, model, tokenizer, rows, args)
        mixed = run(name, options, True, model, tokenizer, rows, args)
        rho, rel, top = [], [], []
        for idx, a in exact.items():
            b = mixed[idx]
            if len(a) > 2 and np.ptp(a) > 0 and np.ptp(b) > 0:
                rho.append(spearmanr(a, b).correlation)
            rel.append(np.abs(a - b).mean() / max(np.abs(a).mean(), 1e-12))
            top.append(int(np.argmax(a) != np.argmax(b)))
        print(f"| {name} {options or ''} | {np.mean(rho):.4f} | {np.mean(rel):.4f} | {np.mean(top):.3f} |")


if __name__ == "__main__":
    main()
