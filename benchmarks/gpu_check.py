"""One command for a GPU: does every explainer run there, and how fast are LIG and training, in fp32/tf32 and bf16?

    python benchmarks/gpu_check.py                 # on the GPU (about 5 minutes on one H100-class card)
    python benchmarks/gpu_check.py --device cpu    # small sizes on a CPU (a test runs this)

(a) Every registered explainer (but `empirical` and `attexplainer`, which need a distill / train_agent artifact)
    explains the same sentences with the same tiny BERT on the device and on the CPU; the largest absolute
    difference of their attributions is reported (stochastic explainers are seeded alike, so they differ only by
    float noise too; a large number there is a bug).
(b) LIG with 20 steps on a BERT-base-size model (`BertConfig()`, random weights: speed does not depend on them) at
    128 and 512 tokens: attexp's batching engine (`explain_rows`), Captum per instance (batch 1, padded, internal
    batch 1: the emp-exp way) and a plain-torch floor running exactly LIG's passes (one prediction forward, one
    forward and backward over the B x 20 path points), each in fp32 (tf32 matmuls on a GPU) and under bf16
    autocast. Instances per second, the fastest of --repeats runs, variants interleaved.
(c) A training step (AdamW, batch 16 x 128 tokens) in fp32 and bf16.
(d) Peak GPU memory of each timed variant (torch.cuda.max_memory_allocated), or the process's max RSS on a CPU.

It prints one Markdown table. Under --device cpu the model is small (2 layers, hidden 128), the lengths 16 and 32
and 4 instances, so the run takes well under a minute: the numbers then only show that every path runs.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attexp import registry  # noqa: E402
from attexp.explain.batching import explain_rows  # noqa: E402
from attexp.models.inputs import pad_features, pad_id, structural_positions, tokenize_rows  # noqa: E402
from attexp.models.precision import autocast  # noqa: E402

SKIP = {"empirical", "attexplainer"}  # need an upstream artifact
WORDS = "the a movie film was is good bad great dull plot actors wonderful boring funny moving mess".split()


def tokenizer_for(words: list[str]) -> BertTokenizerFast:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})


def sentences(n: int, length: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"idx": i, "text": " ".join(rng.choice(WORDS, size=length)), "label": int(i % 2)} for i in range(n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (RSS)"


# ------------------------------------------------------------------------------------------------ (a)


def explainers_agree(device: torch.device) -> list[tuple[str, str]]:
    """Per explainer: the largest |device - cpu| difference of the attributions on a tiny model."""
    registry.load_all()
    tokenizer = tokenizer_for(WORDS)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, max_position_embeddings=64)  # fmt: skip
    rows = sentences(6, 8)
    results = []
    for name in registry.EXPLAINERS.names():
        if name in SKIP:
            continue
        entry = registry.EXPLAINERS.get(name)
        scores = []
        for where in (torch.device("cpu"), device):
            model = BertForSequenceClassification(config).eval()
            model.load_state_dict(reference_state(config))
            model.to(where)
            torch.manual_seed(0)
            explainer = entry.cls(entry.config_type.model_validate({"type": name}), model, tokenizer, {})
            batches = explain_rows(explainer, model, tokenizer, rows, batch_size=3, max_length=16,
                                   target="label", device=where, progress=False)  # fmt: skip
            scores.append({r["idx"]: np.asarray(r["attributions"]) for batch in batches for r in batch})
        difference = max(float(np.abs(scores[0][i] - scores[1][i]).max()) for i in scores[0])
        results.append((name, f"{difference:.2g}"))
    return results


_STATE: dict = {}


def reference_state(config: BertConfig) -> dict:
    """One set of random weights for every copy of the tiny model."""
    if "state" not in _STATE:
        torch.manual_seed(0)
        _STATE["state"] = BertForSequenceClassification(config).state_dict()
    return _STATE["state"]


# ------------------------------------------------------------------------------------------------ (b)


def lig_attexp(model, tokenizer, rows, device, batch_size, max_length) -> None:
    entry = registry.EXPLAINERS.get("lig")
    explainer = entry.cls(entry.config_type.model_validate({"type": "lig", "n_steps": 20}), model, tokenizer, {})
    for _ in explain_rows(explainer, model, tokenizer, rows, batch_size=batch_size, max_length=max_length,
                          target="predicted", device=device, progress=False):  # fmt: skip
        pass


def lig_captum_per_instance(model, tokenizer, rows, device, batch_size, max_length) -> None:
    def forward(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
    for row in rows:
        enc = tokenizer(row["text"], padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)  # fmt: skip
        ids, mask = enc["input_ids"], enc["attention_mask"]
        with torch.no_grad():
            target = int(model(input_ids=ids, attention_mask=mask).logits.argmax(-1))
        keep = structural_positions(ids, mask, tokenizer)
        baseline = torch.where(keep, ids, torch.full_like(ids, tokenizer.pad_token_id))
        lig.attribute(ids, baselines=baseline, target=target, additional_forward_args=(mask,), n_steps=20,
                      method="gausslegendre", internal_batch_size=1)  # fmt: skip


def lig_floor(model, tokenizer, rows, device, batch_size, max_length) -> None:
    features = tokenize_rows(tokenizer, rows, max_length)
    points, weights = np.polynomial.legendre.leggauss(20)
    alphas = torch.tensor((points + 1) / 2, dtype=torch.float32, device=device)
    weights_t = torch.tensor(weights / 2, dtype=torch.float32, device=device)
    embed = model.get_input_embeddings()
    for start in range(0, len(rows), batch_size):
        ids, mask, _ = pad_features(features[start : start + batch_size], pad_id(tokenizer))
        ids, mask = ids.to(device), mask.to(device)
        with torch.inference_mode():
            targets = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
        targets = targets.clone()
        keep = structural_positions(ids, mask, tokenizer)
        with torch.no_grad():
            x, b = embed(ids), embed(torch.where(keep, ids, torch.full_like(ids, tokenizer.pad_token_id)))
        path = (b.unsqueeze(0) + alphas.view(-1, 1, 1, 1) * (x - b).unsqueeze(0)).flatten(0, 1).requires_grad_()
        logits = model(inputs_embeds=path, attention_mask=mask.repeat(20, 1)).logits
        (grads,) = torch.autograd.grad(logits.gather(1, targets.repeat(20)[:, None]).sum(), path)
        ((x - b) * (grads.view(20, *x.shape) * weights_t.view(-1, 1, 1, 1)).sum(0)).sum(-1)


VARIANTS = {"attexp": lig_attexp, "captum per instance": lig_captum_per_instance, "torch floor": lig_floor}


def time_lig(model, tokenizer, device, lengths, instances, batch_size, repeats) -> list[list[str]]:
    rows_out = []
    for precision in ("fp32", "bf16"):  # warm-up (kernels, allocator, autocast caches): not timed
        with autocast(device, precision):
            for fn in VARIANTS.values():
                fn(model, tokenizer, sentences(2, lengths[0] - 2), device, batch_size, lengths[0])
    for length in lengths:
        rows = sentences(instances, length - 2, seed=length)
        for precision in ("fp32", "bf16"):
            best = {name: float("inf") for name in VARIANTS}
            peaks = {}
            for _ in range(repeats):
                for name, fn in VARIANTS.items():  # interleaved: load from elsewhere hits every variant alike
                    peak_reset(device)
                    sync(device)
                    began = time.perf_counter()
                    with autocast(device, precision):
                        fn(model, tokenizer, rows, device, batch_size, length)
                    sync(device)
                    best[name] = min(best[name], time.perf_counter() - began)
                    peaks[name] = peak(device)
            for name in VARIANTS:
                label = "tf32" if precision == "fp32" and device.type == "cuda" else precision
                rows_out.append([f"LIG-20, {length} tokens", name, label, f"{instances / best[name]:.2f}", peaks[name]])
    return rows_out


# ------------------------------------------------------------------------------------------------ (c)


def time_training(model, device, length, batch, steps) -> list[list[str]]:
    out = []
    ids = torch.randint(5, model.config.vocab_size, (batch, length), device=device)
    labels = torch.randint(0, 2, (batch,), device=device)
    for precision in ("fp32", "bf16"):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()
        peak_reset(device)
        times = []
        for _ in range(steps + 1):  # the first step warms up
            sync(device)
            began = time.perf_counter()
            with autocast(device, precision):
                loss = model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sync(device)
            times.append(time.perf_counter() - began)
        model.eval()
        label = "tf32" if precision == "fp32" and device.type == "cuda" else precision
        rate = batch / min(times[1:])
        out.append([f"train step, batch {batch} x {length}", "AdamW step", label, f"{rate:.2f}", peak(device)])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print("no CUDA GPU here; run with --device cpu for the small CPU check", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name(device)
        config = BertConfig()  # BERT-base size
        lengths, instances, batch_size, repeats = (128, 512), 64, 16, args.repeats or 3
        train_length, train_batch, train_steps = 128, 16, 10
    else:
        name = "CPU"
        config = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256)
        lengths, instances, batch_size, repeats = (16, 32), 4, 4, args.repeats or 1
        train_length, train_batch, train_steps = 16, 4, 2
    print(f"device: {name}; torch {torch.__version__}", flush=True)

    rows = [["explainer on the device vs on the CPU", explainer, "fp32", difference, ""]
            for explainer, difference in explainers_agree(device)]  # fmt: skip
    torch.manual_seed(0)
    tokenizer = tokenizer_for(WORDS)
    model = BertForSequenceClassification(config).to(device).eval()
    with contextlib.suppress(AttributeError):
        model.config._attn_implementation = "sdpa"
    rows += time_lig(model, tokenizer, device, lengths, instances, batch_size, repeats)
    rows += time_training(model, device, train_length, train_batch, train_steps)

    header = ["check", "variant", "precision", "max |diff| or instances/s", "peak memory"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    print(line(header))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print(line(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
