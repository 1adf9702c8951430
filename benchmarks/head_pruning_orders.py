"""Which head-importance definitions keep accuracy longest: orders derived from one finished head_pruning run.

Reads a finished `head_pruning` job's per-instance head scores (`head_scores.jsonl`: each importance instance's
AttAttr maxima and Taylor scores) and, optionally, a second run's (e.g. one with `taylor: 'official'`), builds
pruning orders from them, and measures every order on the same evaluation rows as the run (its eval_split and
eval_limit), with the run's classifier:

  attattr              the paper's: the sum over instances of each head's largest attribution (not normalised)
  attattr_layer_norm   the same, L2-normalised within each layer (as the Taylor criterion is): does the missing
                       normalisation explain why the attribution order prunes whole layers early?
  attattr_mean_max     the mean over instances of the maxima divided by each instance's largest maximum (each
                       instance weighs the same, whatever its confidence)
  taylor               the run's Taylor criterion (L2-normalised within each layer)
  <name>.taylor        the second run's Taylor criterion (`--other`)

It prints one Markdown table: accuracy per pruning rate and the area under each curve (mean over the rates,
trapezoid), and how many heads of each layer every order has pruned at 40%.

    python benchmarks/head_pruning_orders.py --base-dir DIR --job rt.prune_heads.minilm.5seeds \
        [--other rt.prune_heads.minilm.taylor_official]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from attexp.analyze import heads as H  # noqa: E402
from attexp.io.artifacts import MANIFEST, read_manifest  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402


def scores(folder: Path, key: str) -> torch.Tensor:
    """[N, L, heads] per-instance scores `key` of a finished head_pruning job."""
    rows = read_jsonl(folder / "head_scores.jsonl", required=("idx", key))
    return torch.tensor([r[key] for r in rows], dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-dir", type=Path, required=True)
    parser.add_argument("--job", required=True, help="a finished head_pruning job (its head_scores.jsonl)")
    parser.add_argument("--other", help="a second finished head_pruning job whose Taylor scores to add")
    parser.add_argument("--at", type=float, default=40.0, help="the rate at which to count pruned heads per layer")
    args = parser.parse_args()
    folder = args.base_dir / "logs" / args.job
    config = json.loads((folder / "config.json").read_text())
    manifest = read_manifest(folder / MANIFEST)
    model_dir = Path(manifest.upstream[config["model"]].path) / "model"
    data_dir = Path(manifest.upstream[config["data"]].path)
    model, tokenizer = load_classifier(model_dir)
    model.eval()
    rows = read_jsonl(data_dir / f"{config['eval_split']}.jsonl")
    if config.get("eval_limit"):
        rows = rows[: config["eval_limit"]]
    batches = H.Batches(
        rows, model, tokenizer, config.get("eval_batch_size", 64), config["max_length"], torch.device("cpu")
    )

    maxima = scores(folder, "attattr")  # [N, L, heads]
    importance = {
        "attattr": maxima.sum(dim=0),
        "attattr_layer_norm": H.normalise_per_layer(maxima.sum(dim=0)),
        "attattr_mean_max": (maxima / maxima.flatten(1).amax(dim=1)[:, None, None]).mean(dim=0),
        "taylor": H.normalise_per_layer(scores(folder, "taylor").sum(dim=0)),
    }
    if args.other:
        other = args.base_dir / "logs" / args.other
        importance[f"{args.other}.taylor"] = H.normalise_per_layer(scores(other, "taylor").sum(dim=0))
    orders = {name: H.pruning_order(values) for name, values in importance.items()}
    rates = config.get("rates") or [float(r) for r in range(0, 101, 10)]
    curves = H.pruning_curves(model, batches, orders, rates)

    layers, heads = maxima.shape[1:]
    print(f"{args.job}: {len(rows)} evaluation rows, importance from {len(maxima)} instances\n")
    print("| rate | " + " | ".join(curves) + " |")
    print("|---:|" + "---:|" * len(curves))
    for k, rate in enumerate(rates):
        print(f"| {rate:g}% | " + " | ".join(f"{curves[name][k]:.3f}" for name in curves) + " |")
    span = max(rates) - min(rates)
    area = {name: float(np.trapezoid(values, rates) / span) for name, values in curves.items()}
    print("| area | " + " | ".join(f"{area[name]:.3f}" for name in curves) + " |")
    count = H.pruned_count(args.at, layers * heads)
    print(f"\nheads pruned per layer at {args.at:g}% ({count} of {layers * heads}), layers 0..{layers - 1}:\n")
    for name, order in orders.items():
        per_layer = np.bincount([layer for layer, _ in order[:count]], minlength=layers)
        print(f"- {name}: {per_layer.tolist()}")


if __name__ == "__main__":
    main()
