"""Which branch for the `shared` empirical explainer? Variants trained side by side on cached hidden states.

The shared explainer's classifier is frozen, so its hidden states are the same every epoch: this script runs the
classifier once over the teacher's training, validation and test sentences, keeps the hidden states, and trains
each branch variant on them (the same `SharedExplainerModel.explain_hidden_states` code the distill stage runs,
the same optimizer, schedule, loss and batches: `create_optimizer`, `distill_loss`'s terms, `make_loader`'s
length buckets). On MiniLM / RT (2 cores) an epoch takes 46 s against the distill job's 100-110 s, and the numbers
agree within seed noise (the base variant: test Spearman 0.741 at the epoch the distill job kept, 0.744 there; the
dropout draws differ).

Every epoch it scores the validation and test sentences (mean per-instance Spearman with the teacher over real
tokens, as the `spearman` metric computes it; MSE over real tokens), and reports each variant at the epoch the
distill stage would keep (best validation MSE) and at the best validation Spearman. Choose on validation; the
test column is for the record.

    python benchmarks/shared_branch_variants.py --base-dir /tmp/inv --model alti.train.minilm \\
        --train rt.explain.lig.minilm.train_all --validation rt.explain.lig.minilm.validation \\
        --test rt.explain.lig.minilm.test --variants base top_init per_class
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attexp.distill.empirical.model import SharedExplainerModel  # noqa: E402
from attexp.distill.empirical.training import encode_records, masked_mse, masked_pearson  # noqa: E402
from attexp.evaluate.agreement import Spearman, SpearmanConfig  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.inputs import pad_id  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402
from attexp.train.batches import make_loader, pad_collate  # noqa: E402
from attexp.train.engines import create_optimizer  # noqa: E402
from attexp.train.settings import DistillSettings  # noqa: E402

VARIANTS = {
    "base": "a fresh branch layer (branch_init 'random'), ScalarMix, MSE + correlation term",
    "top_init": "the branch layer starts as a copy of the classifier's top layer (branch_init 'top_layers')",
    "top_init2": "two branch layers, copies of the classifier's top two (branch_layers 2, branch_init 'top_layers')",
    "per_class": "top_init with one output per class, the explained target's read out (head 'class')",
}


def build(variant: str, classifier: nn.Module) -> SharedExplainerModel:
    init = "top_layers" if variant.startswith("top_init") or variant == "per_class" else "random"
    model = SharedExplainerModel(
        classifier,
        branch_layers=2 if variant == "top_init2" else 1,
        branch_init=init,
        head="class" if variant == "per_class" else "token",
    )
    return model


def cache_hidden_states(classifier: nn.Module, features: list[dict], pad: int) -> list[Tensor]:
    """Per feature, its hidden states [layers + 1, T, H] over its own tokens (no padding)."""
    out: list[Tensor | None] = [None] * len(features)
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    with torch.inference_mode():
        for start in range(0, len(order), 64):
            chunk = order[start : start + 64]
            width = max(len(features[i]["input_ids"]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, i in enumerate(chunk):
                n = len(features[i]["input_ids"])
                ids[row, :n] = torch.tensor(features[i]["input_ids"])
                mask[row, :n] = 1
            out_states = classifier(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            hidden = torch.stack(out_states, 1)  # [B, layers + 1, T, H]
            for row, i in enumerate(chunk):
                out[i] = hidden[row, :, : len(features[i]["input_ids"])].clone()
    return out  # type: ignore[return-value]


def batch_hidden(cache: list[Tensor], idxs: Sequence[int], width: int) -> list[Tensor]:
    layers, _, hidden = cache[idxs[0]].shape
    stacked = torch.zeros(len(idxs), layers, width, hidden)
    for row, i in enumerate(idxs):
        stacked[row, :, : cache[i].shape[1]] = cache[i]
    return list(stacked.unbind(1))


def score(model: SharedExplainerModel, cache: list[Tensor], features: list[dict]) -> tuple[float, float]:
    """(mean per-instance Spearman with the targets over real tokens, by the evaluate stage's `spearman`
    metric; MSE over real tokens)."""
    model.eval()
    mine, sq, count = [], 0.0, 0
    with torch.no_grad():
        for start in range(0, len(features), 64):
            idxs = list(range(start, min(start + 64, len(features))))
            width = max(len(features[i]["input_ids"]) for i in idxs)
            mask = torch.zeros(len(idxs), width, dtype=torch.long)
            for row, i in enumerate(idxs):
                mask[row, : len(features[i]["input_ids"])] = 1
            targets = torch.tensor([features[i]["target"] for i in idxs])
            scores = model.explain_hidden_states(batch_hidden(cache, idxs, width), mask, targets)
            for row, i in enumerate(idxs):
                n = len(features[i]["input_ids"])
                a, b = scores[row, :n].numpy(), np.asarray(features[i]["attributions"])
                sq += float(((a - b) ** 2).sum())
                count += n
                mine.append({"idx": i, "input_ids": features[i]["input_ids"], "attributions": a.tolist()})
    teacher = [dict(f, idx=i) for i, f in enumerate(features)]  # input_ids and the teacher's attributions
    return Spearman(SpearmanConfig()).compute(mine, teacher).summary["spearman"], sq / count


def train_variant(
    variant: str,
    classifier: nn.Module,
    settings: DistillSettings,
    caches: dict[str, list[Tensor]],
    features: dict[str, list[dict]],
    pad: int,
    log: Callable[[str], None],
) -> list[dict]:
    torch.manual_seed(settings.seed)
    model = build(variant, classifier)
    loader = make_loader(features["train"], settings.batch_size, pad, shuffle=True, seed=settings.seed)
    sampler = loader.batch_sampler
    optimizer, scheduler = create_optimizer(model, settings, len(loader) * settings.epochs)
    history = []
    for epoch in range(1, settings.epochs + 1):
        sampler.set_epoch(epoch)  # as `fit` does (ignite epochs count from 1)
        model.train()
        started, total, steps = time.perf_counter(), 0.0, 0
        for idxs in sampler:
            batch = pad_collate([features["train"][i] for i in idxs], pad)
            mask, targets = batch["attention_mask"], batch["attributions"]
            classes = torch.tensor([features["train"][i]["target"] for i in idxs])
            scores = model.explain_hidden_states(batch_hidden(caches["train"], idxs, mask.shape[1]), mask, classes)
            loss = (
                masked_mse(scores, targets, mask)
                + settings.correlation_weight * (1.0 - masked_pearson(scores, targets, mask)).mean()
            )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.learned_parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            total, steps = total + loss.item(), steps + 1
        val_rho, val_mse = score(model, caches["validation"], features["validation"])
        test_rho, test_mse = score(model, caches["test"], features["test"])
        row = {
            "variant": variant,
            "epoch": epoch,
            "train_loss": total / steps,
            "val_spearman": val_rho,
            "val_mse": val_mse,
            "test_spearman": test_rho,
            "test_mse": test_mse,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        log(json.dumps(row))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-dir", type=Path, required=True)
    parser.add_argument("--model", required=True, help="the fine-tune job whose classifier is explained")
    parser.add_argument("--train", required=True, help="explain job with the teacher's training records")
    parser.add_argument("--validation", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--correlation-weight", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="JSON lines of every epoch of every variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    classifier, _ = load_classifier(args.base_dir / "models" / args.model / "model")
    classifier.eval()
    pad = pad_id(classifier.config)
    settings = DistillSettings(
        mode="shared", lr=args.lr, epochs=args.epochs, correlation_weight=args.correlation_weight, batch_size=32
    )
    features, caches = {}, {}
    for split, job in (("train", args.train), ("validation", args.validation), ("test", args.test)):
        records = list(read_jsonl(args.base_dir / "explanations" / job / "records.jsonl"))
        features[split] = [
            dict(feature, target=int(record["target"]))
            for feature, record in zip(encode_records(records, settings.max_length), records, strict=True)
        ]
        started = time.perf_counter()
        caches[split] = cache_hidden_states(classifier, features[split], pad)
        print(f"{split}: {len(records)} records, hidden states in {time.perf_counter() - started:.0f} s", flush=True)

    out = args.out.open("a") if args.out else None

    def log(line: str) -> None:
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    summary = []
    for variant in args.variants:
        history = train_variant(variant, classifier, settings, caches, features, pad, log)
        by_mse = min(history, key=lambda r: r["val_mse"])
        by_rho = max(history, key=lambda r: r["val_spearman"])
        summary.append((variant, by_mse, by_rho))
    print(
        "\n| variant | epoch (best val MSE) | val Spearman | test Spearman | test MSE | epoch (best val Spearman) "
        "| val Spearman | test Spearman |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant, m, r in summary:
        print(
            f"| {variant} | {m['epoch']} | {m['val_spearman']:.3f} | {m['test_spearman']:.3f} | {m['test_mse']:.4f} "
            f"| {r['epoch']} | {r['val_spearman']:.3f} | {r['test_spearman']:.3f} |"
        )


if __name__ == "__main__":
    main()
