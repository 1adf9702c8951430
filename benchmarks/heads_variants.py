"""Which terms for the `heads` empirical explainer? Variants trained side by side on cached features.

The heads explainer's classifier is frozen, so what it reads (the read row's attention, the value vectors, the last
hidden states: `HeadsExplainerModel.read`) is the same every epoch. This script reads it once for the teacher's
training sentences (the first --sentences), its validation sentences and the reference's test sentences, then
trains each variant on the cache with the distill stage's loss (MSE over real tokens + (1 - Pearson) per
instance, correlation weight 1), AdamW and a linear decay, one length-sorted batch of 32 at a time in a seeded
order, and reports validation MSE against the teacher and test Spearman against the reference (mean per-instance
Spearman over real tokens) after 5 and 10 epochs.

Variants: each term of the map alone and together (`heads.FEATURES`), and `mlp`: a per-token two-layer network
(width 128) over every head's attention, k = 4 learned value projections per head weighted by the attention, and
the last hidden state: whether a nonlinear map over the same features does better than the linear one.

    python benchmarks/heads_variants.py --base-dir /tmp/t33 --model rt.train.minilm \\
        --train rt.explain.lig3.minilm.train --validation rt.explain.lig3.minilm.validation \\
        --test rt.explain.lig.minilm.test --sentences 3000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attexp.distill.empirical.heads import FEATURES, HeadsExplainerModel  # noqa: E402
from attexp.distill.empirical.training import masked_mse, masked_pearson  # noqa: E402
from attexp.evaluate.agreement import Spearman, SpearmanConfig  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402
from attexp.models.loading import load_classifier  # noqa: E402

Cached = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]  # attention, values, hidden, mask, targets, scores


def cache(reader: HeadsExplainerModel, records: list[dict], batch_size: int = 32) -> list[Cached]:
    """The frozen classifier's features for `records`, in length-sorted batches, with the records' scores."""
    order = sorted(range(len(records)), key=lambda i: len(records[i]["input_ids"]))
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [records[i] for i in order[start : start + batch_size]]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask, scores = torch.zeros_like(ids), torch.zeros(len(chunk), width)
        for row, record in enumerate(chunk):
            n = len(record["input_ids"])
            ids[row, :n], mask[row, :n] = torch.tensor(record["input_ids"]), 1
            scores[row, :n] = torch.tensor(record["attributions"])
        _, attention, values, hidden = reader.read(ids, mask)
        batches.append((attention, values, hidden, mask, torch.tensor([r["target"] for r in chunk]), scores))
    return batches


class MLPHeads(nn.Module):
    """A per-token MLP over [attention of every head, k attention-weighted value projections per head, hidden]."""

    def __init__(self, reader: HeadsExplainerModel, k: int = 4, width: int = 128) -> None:
        super().__init__()
        layers, heads, size = reader.encoder.num_layers, reader.encoder.num_heads, reader.encoder.head_size
        self.projections = nn.Parameter(torch.randn(layers, heads, size, k) * size**-0.5)
        hidden = reader.classifier.config.hidden_size
        classes = reader.classifier.config.num_labels
        self.net = nn.Sequential(
            nn.Linear(layers * heads * (1 + k) + hidden, width), nn.GELU(), nn.Linear(width, classes)
        )

    def scores_from(self, attention, values, hidden, mask, targets) -> Tensor:
        per_token = attention.permute(0, 3, 1, 2)  # [B, T, L, h]
        projected = torch.einsum("blhtd,lhdk->btlhk", values, self.projections) * per_token[..., None]
        out = self.net(torch.cat([per_token.flatten(2), projected.flatten(2), hidden], dim=-1))  # [B, T, C]
        return out.gather(2, targets.view(-1, 1, 1).expand(-1, out.shape[1], 1)).squeeze(-1) * mask


def evaluate(model, batches: list[Cached]) -> tuple[float, float]:
    """(MSE over real tokens, mean per-instance Spearman by the evaluate stage's `spearman` metric) against the
    cached scores."""
    squared, tokens, mine, theirs = 0.0, 0, [], []
    with torch.no_grad():
        for attention, values, hidden, mask, targets, scores in batches:
            predicted = model.scores_from(attention, values, hidden, mask, targets)
            squared += float(((predicted - scores) ** 2 * mask).sum())
            tokens += int(mask.sum())
            for row in range(len(targets)):
                n, idx = int(mask[row].sum()), len(mine)
                ids = list(range(n))  # the records pair by idx; the metric needs input ids of the same length
                mine.append({"idx": idx, "input_ids": ids, "attributions": predicted[row, :n].tolist()})
                theirs.append({"idx": idx, "input_ids": ids, "attributions": scores[row, :n].tolist()})
    return squared / tokens, Spearman(SpearmanConfig()).compute(mine, theirs).summary["spearman"]


def train(model, batches: list[Cached], lr: float, epochs: int, report, seed: int = 0) -> None:
    params = model.learned_parameters() if isinstance(model, HeadsExplainerModel) else list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = epochs * len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        for index in rng.permutation(len(batches)):
            attention, values, hidden, mask, targets, scores = batches[index]
            predicted = model.scores_from(attention, values, hidden, mask, targets)
            loss = masked_mse(predicted, scores, mask) + (1 - masked_pearson(predicted, scores, mask)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        if epoch in (5, 10):
            report(epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-dir", type=Path, required=True)
    parser.add_argument("--model", required=True, help="the train job of the explained classifier")
    parser.add_argument("--train", required=True, help="the teacher's explain job on training sentences")
    parser.add_argument("--validation", required=True, help="the teacher's explain job on validation sentences")
    parser.add_argument("--test", required=True, help="the reference explain job on test sentences")
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, _ = load_classifier(args.base_dir / "models" / args.model / "model", False, "cpu")

    def records(job: str) -> list[dict]:
        return read_jsonl(args.base_dir / "explanations" / job / "records.jsonl")

    reader = HeadsExplainerModel(model, head="class")
    start = time.perf_counter()
    train_set = cache(reader, records(args.train)[: args.sentences])
    validation, test = cache(reader, records(args.validation)), cache(reader, records(args.test))
    print(f"features of {args.sentences} + validation + test sentences: {time.perf_counter() - start:.1f} s")
    variants = {
        "+".join(f): (HeadsExplainerModel(model, head="class", features=f), args.lr)
        for f in (("attention",), ("values",), ("hidden",), ("attention", "values"), FEATURES)
    }
    variants["mlp"] = (MLPHeads(reader), 1e-3)
    print("| variant | epoch | validation MSE (teacher) | test Spearman (reference) |\n|---|---:|---:|---:|")
    for name, (variant, lr) in variants.items():

        def report(epoch: int, name: str = name, variant=variant) -> None:
            mse, rho = evaluate(variant, validation)[0], evaluate(variant, test)[1]
            print(f"| {name} | {epoch} | {mse:.4f} | {rho:.3f} |", flush=True)

        train(variant, train_set, lr, 10, report)
    print(json.dumps({"sentences": args.sentences, "lr": args.lr}))


if __name__ == "__main__":
    main()
