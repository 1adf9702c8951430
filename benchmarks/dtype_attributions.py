"""What bf16 (or fp16) weights change in the attributions of every explainer, against float32 weights.

The same classifier, its weights cast to float32 and to `--dtype`, explains the same texts with every explainer
that runs on it (`attexp.explain`, the same seed); per instance we compare the two attribution vectors over the
real tokens: Spearman's rank correlation and the largest absolute difference relative to the float32 vector's
largest magnitude. Printed per explainer: the median and the minimum Spearman over instances, and the largest
relative difference. Two classifiers: a tiny random Llama-style decoder (the `llama` layout, grouped-query
attention) and all-MiniLM-L6-v2 (the packaged 6-layer BERT from PyPI, a fresh 2-class head), both random in their
heads, so the predictions are near-uniform: a hard case for attributions, whose scale is small.

    python benchmarks/dtype_attributions.py [--texts 16] [--dtype bfloat16] [--models decoder,minilm]

The tolerances the tests hold (tests/test_precision.py) are set from this table; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import attexp  # noqa: E402
from attexp.io.files import read_jsonl  # noqa: E402

transformers.logging.set_verbosity_error()

EXPLAINERS = {
    "lig": {"n_steps": 20},
    "ig": {"n_steps": 20},
    "saliency": {},
    "input_x_gradient": {},
    "deeplift": {},
    "gradient_shap": {"n_samples": 10},
    "occlusion": {},
    "feature_ablation": {},
    "lime": {"n_samples": 50},
    "kernel_shap": {"n_samples": 50},
    "shapley_sampling": {"n_samples": 5},
    "raw_attention": {},
    "rollout": {},
    "alti": {},
    "attattr": {"steps": 10},
    "iba": {"steps": 5},
}
TEXTS = [
    "the film is a charming and often affecting journey",
    "an unflinching , harrowing and ultimately rather dull piece of work",
    "it is not a bad movie , just a very forgettable one",
    "a gorgeous , witty , seductive movie",
    "the plot is nothing but a series of clichés and the acting is wooden",
    "one of the year's best films",
    "too long , too slow and too pleased with itself",
    "funny , touching and smartly written",
]


def texts(n: int) -> list[str]:
    """`n` Rotten Tomatoes sentences from a downloaded corpus when one is named by $ATTEXP_RT_JSONL, else a
    fixed handful repeated."""
    path = os.environ.get("ATTEXP_RT_JSONL")
    if path:
        return [r["text"] for r in read_jsonl(Path(path))[:n]]
    return [TEXTS[i % len(TEXTS)] for i in range(n)]


def decoder():
    from tiny import word_tokenizer

    words = sorted({w for t in TEXTS for w in t.split()})
    tokenizer = word_tokenizer(words, segments=False)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer.vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128, num_labels=2,
        pad_token_id=0, bos_token_id=2, eos_token_id=3, tie_word_embeddings=False, initializer_range=0.2,
    )  # fmt: skip
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    return transformers.AutoModelForSequenceClassification.from_config(config).eval(), tokenizer


def minilm():
    from attexp.models.sources import PackagedModel, PackagedModelConfig

    cache = Path(os.environ.get("ATTEXP_CACHE_DIR", "/tmp/attexp-cache"))
    folder, _ = PackagedModel(PackagedModelConfig()).pretrained(cache)
    torch.manual_seed(0)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        folder, num_labels=2, attn_implementation="eager"
    )
    return model.eval(), transformers.AutoTokenizer.from_pretrained(folder)


def compare(model, tokenizer, sentences: list[str], dtype: torch.dtype) -> list[dict]:
    rows = []
    low = model.to(dtype)
    for name, options in EXPLAINERS.items():
        started = time.perf_counter()
        runs = {}
        for label, weights in (("float32", torch.float32), (str(dtype).removeprefix("torch."), dtype)):
            low.to(weights)
            out = attexp.explain(low, tokenizer, sentences, name, device="cpu", batch_size=8, seed=7, **options)
            runs[label] = [np.asarray(r["attributions"], dtype=np.float64) for r in out.records]
        reference, other = runs["float32"], runs[str(dtype).removeprefix("torch.")]
        spearman, relative = [], []
        for a, b in zip(reference, other, strict=True):
            scale = max(np.abs(a).max(), 1e-12)
            relative.append(float(np.abs(a - b).max() / scale))
            rho = stats.spearmanr(a, b).statistic if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
            spearman.append(float(rho))
        rows.append(
            {
                "explainer": name,
                "median_spearman": float(np.nanmedian(spearman)),
                "min_spearman": float(np.nanmin(spearman)),
                "max_rel_diff": float(max(relative)),
                "seconds": time.perf_counter() - started,
            }
        )
    model.to(torch.float32)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16")
    parser.add_argument("--models", default="decoder,minilm")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sentences = texts(args.texts)
    dtype = getattr(torch, args.dtype)
    builders = {"decoder": decoder, "minilm": minilm}
    print(f"{args.texts} texts; float32 weights vs {args.dtype} weights; torch {torch.__version__}")
    print("| model | explainer | median Spearman | min Spearman | max rel. diff | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.models.split(","):
        model, tokenizer = builders[name]()
        for row in compare(model, tokenizer, sentences, dtype):
            print(
                f"| {name} | {row['explainer']} | {row['median_spearman']:.4f} | {row['min_spearman']:.4f} | "
                f"{row['max_rel_diff']:.3g} | {row['seconds']:.1f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
