"""The empirical explainer's modes against LIG-20: agreement, faithfulness and cost, side by side in one run.

Reads a finished convergence run (configs/pipelines/rotten_tomatoes.convergence.jsonnet or one like it) in
--base-dir: the evaluate job's metrics.json gives each explanation job's agreement with the LIG reference
(Spearman, MSE, top-5 overlap) and its ERASER faithfulness on the classifier. Then it times, on the first
--instances sentences of the explained split and with the same batches (--batch-size, length-bucketed as the
explain stage does) and the same torch threads:

  predict   the engine's prediction forward alone (an explainer that returns zeros),
  lig20     the reference explainer (prediction + LIG with its n_steps),
  <mode>    each empirical explainer of the evaluation (prediction + explanation; a `shared` one gives both from
            the prediction forward),

each through `explain_rows` as the explain job runs it (tokenising and records included, for all alike),
interleaved batch by batch with the order rotating, each batch --repeats times and its fastest run counted.

The table: seconds per instance (prediction + explanation), the explanation's cost beyond the prediction, and
the two ratios of the issue's bars: LIG's extra cost / the mode's extra cost, and LIG's total / the mode's total.

    python benchmarks/empirical_modes.py --base-dir DIR [--evaluation rt.evaluate.convergence.minilm]
        [--instances 128] [--batch-size 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.distill.empirical.explainer import EmpiricalConfig, EmpiricalExplainer  # noqa: E402
from attexp.explain.base import Explainer, Explanation  # noqa: E402
from attexp.explain.batching import explain_rows, text_length  # noqa: E402
from attexp.explain.gradient import LayerIntegratedGradientsExplainer, LIGConfig  # noqa: E402
from attexp.io.artifacts import MANIFEST, read_manifest  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.io.manifests import Manifest  # noqa: E402
from attexp.models.inputs import length_sorted_batches  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402


class PredictOnly(Explainer):
    """Zeros: what the engine costs with no explanation (the prediction forward, tokenising, records)."""

    registered_name = "predict"

    def explain(self, batch) -> Explanation:
        size = len(batch)
        return Explanation(torch.zeros(batch.input_ids.shape), [0] * size, [0] * size)


def manifest(path: Path) -> Manifest:
    return read_manifest(path / MANIFEST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-dir", type=Path, required=True)
    parser.add_argument("--evaluation", default="rt.evaluate.convergence.minilm")
    parser.add_argument("--instances", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lig-steps", type=int, nargs="*", default=[1, 2], help="LIG-k points of the curve to time")
    args = parser.parse_args()
    base = args.base_dir

    metrics = json.loads((base / "logs" / args.evaluation / "metrics.json").read_text())
    reference = metrics["reference"]
    ref_manifest = manifest(base / "explanations" / reference)
    ref_config = json.loads((base / "explanations" / reference / "config.json").read_text())
    classifier_dir = base / "models" / ref_config["model"] / "model"
    model, tokenizer = load_classifier(classifier_dir, False, "cpu")
    data = base / "data" / ref_config["data"] / f"{ref_config['split']}.jsonl"
    rows = read_jsonl(data)[: args.instances]
    upstream = {p.name: p for p in (base / "models").iterdir()}

    variants: dict[str, Explainer] = {"predict": PredictOnly(None, model, tokenizer, {})}
    variants["lig"] = LayerIntegratedGradientsExplainer(LIGConfig(**ref_manifest.explainer), model, tokenizer, {})
    labels = {"predict": "prediction only", "lig": f"LIG-{ref_manifest.explainer['n_steps']} (reference)"}
    for k in args.lig_steps:  # the curve's cheap end, timed beside the empirical explainers
        lig_k = LIGConfig(**{**ref_manifest.explainer, "n_steps": k})
        variants[f"lig{k}"] = LayerIntegratedGradientsExplainer(lig_k, model, tokenizer, {})
        labels[f"lig{k}"] = f"LIG-{k}"
    for job in metrics["results"]:
        if not (base / "explanations" / job / "config.json").is_file():
            continue  # the random floor the evaluate stage adds
        config = json.loads((base / "explanations" / job / "config.json").read_text())
        if config["explainer"]["type"] != "empirical":
            continue
        distill = config["explainer"]["model"]
        variants[job] = EmpiricalExplainer(EmpiricalConfig(model=distill), model, tokenizer, upstream)
        settings = manifest(base / "models" / distill)
        labels[job] = f"empirical {getattr(settings, 'mode', None) or 'copy'} ({distill})"

    rows.sort(key=text_length)
    batches = length_sorted_batches([text_length(r) for r in rows], args.batch_size)
    best = {name: [float("inf")] * len(batches) for name in variants}
    names = list(variants)
    for number, chosen in enumerate(batches):
        batch_rows = [rows[i] for i in chosen]
        for repeat in range(args.repeats):
            shift = (number * args.repeats + repeat) % len(names)
            for name in names[shift:] + names[:shift]:
                began = time.perf_counter()
                for _ in explain_rows(
                    variants[name],
                    model,
                    tokenizer,
                    batch_rows,
                    batch_size=len(batch_rows),
                    max_length=ref_config.get("max_length", 128),
                    target="predicted",
                    device="cpu",
                    progress=False,
                ):
                    pass
                best[name][number] = min(best[name][number], time.perf_counter() - began)
    seconds = {name: sum(times) / len(rows) for name, times in best.items()}

    predict, lig = seconds["predict"], seconds["lig"]
    results = metrics["results"]
    print(
        f"{len(rows)} instances of {data}, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
        f"fastest of {args.repeats}; agreement and ERASER from {args.evaluation} "
        f"({(results.get(reference) or next(iter(results.values()))).get('instances')} instances)\n"
    )
    print(
        "| explainer | Spearman vs reference | MSE | top-5 overlap | comprehensiveness | sufficiency "
        "| s / instance | beyond prediction | LIG extra / extra | LIG total / total |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        extra = seconds[name] - predict
        job = next((j for j in results if j.startswith(f"{reference.split('.explain.')[0]}.explain.{name}.")), None)
        found = results.get(reference if name == "lig" else job if name.startswith("lig") else name, {}) or {}

        def value(key: str, found: dict = found) -> str:
            return f"{found[key]:.3f}" if key in found else "-"

        ratio_extra = f"{(lig - predict) / extra:.0f}x" if name not in ("predict", "lig") and extra > 0 else "-"
        ratio_total = f"{lig / seconds[name]:.1f}x" if name != "lig" else "-"
        print(
            f"| {labels[name]} | {value('spearman')} | {value('mse')} | {value('topk_overlap')} "
            f"| {value('eraser.comprehensiveness')} | {value('eraser.sufficiency')} | {seconds[name] * 1e3:.2f} ms "
            f"| {extra * 1e3:.2f} ms | {ratio_extra} | {ratio_total} |"
        )


if __name__ == "__main__":
    main()
