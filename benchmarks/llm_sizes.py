"""What real-size classifiers cost to explain: peak memory, seconds and passes per instance, and the memory model.

No decoder weights ship on PyPI, so each model is built with random weights from its real published configuration
(sizes, heads, vocabulary, attention layout) as a 2-class sequence classifier, in float32 and in bfloat16:

  qwen2.5-0.5b      Qwen2.5-0.5B: 24 layers, hidden 896, 14 query / 2 key-value heads, vocab 151,936 (494M params)
  llama-3.2-1b      Llama-3.2-1B: 16 layers, hidden 2,048, 32 / 8 heads, vocab 128,256 (1.24B params)
  modernbert-large  ModernBERT-large: 28 layers, hidden 1,024, 16 heads, local/global attention (396M params)

Each (model, dtype, explainer, tokens) runs in its own process (so its peak RSS is its own): build the model, explain
one text of `tokens` tokens with `attexp.explain`, report seconds, forward and backward passes, the RSS once the
model is built and the peak RSS. Explainers: LIG-20, occlusion (the perturbation family), ALTI, AttAttr-20 (the
costliest inside method), and `shared`: a shared empirical explainer (a 1-layer branch over the classifier's hidden
states; its cost is that of a distilled one, measured with a random branch), whose scores come with the prediction
forward (passes: that forward, the one every explainer's record also counts). A run whose time, predicted from the
same run at 64 tokens and the number of positions, would pass `--max-seconds` is skipped and says so.

From the runs it fits the memory model: bytes per parameter (RSS after build / parameters, with the process's base
RSS taken off), and for each explainer the activation bytes per (token x layer x hidden unit) of one pass row
((peak - built) / (rows per pass x tokens x layers x hidden)). With those it predicts what an 8B decoder
(Llama-3.1-8B's config) needs in bf16 on a GPU of 24 and of 80 GiB: the weights, and how many tokens one LIG pass
may hold (`gradient_max_tokens`).

    python benchmarks/llm_sizes.py [--models qwen2.5-0.5b,llama-3.2-1b,modernbert-large] [--tokens 64,512]
        [--dtypes float32,bfloat16] [--explainers lig,occlusion,alti,attattr,shared] [--max-seconds 600] [--threads 2]

CPU figures are what this 2-core machine gives: run it on an otherwise idle machine; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {
    "qwen2.5-0.5b": {
        "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "max_position_embeddings": 32768,
        "rope_theta": 1000000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, 
    },
    "llama-3.2-1b": {
        "model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "head_dim": 64, "intermediate_size": 8192, "vocab_size": 128256,
        "max_position_embeddings": 131072, "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    },
    "modernbert-large": {
        "model_type": "modernbert", "hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
        "intermediate_size": 2624, "vocab_size": 50368, "max_position_embeddings": 8192,
        "global_attn_every_n_layers": 3, "local_attention": 128,
        "bos_token_id": 50281, "eos_token_id": 50282, "cls_token_id": 50281, "sep_token_id": 50282,
    },
}  # fmt: skip
EIGHT_B = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256, "parameters": 8.03e9}
"""Llama-3.1-8B's sizes, for the prediction."""
SETTINGS = {"lig": {"n_steps": 20}, "occlusion": {}, "alti": {}, "attattr": {"steps": 20}, "shared": {}}
ROWS_PER_PASS = {"lig": 21, "occlusion": 1, "alti": 1, "attattr": 20, "shared": 1}
"""Rows one pass holds for a single instance (LIG: 20 steps and the input in one pass at these lengths; AttAttr:
its steps; occlusion: one forward per window, batched by the engine; ALTI: one traced forward; shared: the
prediction forward, which also gives the explanation)."""


def shared_empirical(model, tokenizer, text: str, max_length: int) -> dict:
    """The `shared` empirical explainer's cost: its branch (1 layer of the classifier's width, random: the cost does
    not depend on the weights a distill job would train) over the classifier's hidden states, one
    `predict_and_explain` (the prediction forward, which also gives the scores), as the explain engine runs it."""
    import torch

    from attexp.distill.empirical.model import SharedExplainerModel

    explainer = SharedExplainerModel(model, branch_layers=1, branch_init="random").eval()
    explainer.to(next(model.parameters()).dtype)
    encoded = tokenizer([text], truncation=True, max_length=max_length, return_tensors="pt")
    started = time.perf_counter()  # the explanation, not building the branch (a distilled one is loaded once)
    with torch.inference_mode():
        _, scores = explainer.predict_and_explain(encoded["input_ids"], encoded["attention_mask"])
    seconds = time.perf_counter() - started
    ids = encoded["input_ids"][0].tolist()
    scores = scores[0].float().tolist()
    return {"input_ids": ids, "attributions": scores, "forward_passes": 1, "backward_passes": 0, "seconds": seconds}


def child(args: argparse.Namespace) -> None:
    """One measurement, in this process: print a JSON line."""
    import resource

    import torch
    import transformers

    sys.path.insert(0, str(ROOT))
    import attexp

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    def rss() -> float:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024.0

    base_rss = rss()
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import word_tokenizer

    # a WordPiece vocabulary of 2,000 words whose ids fall in every model's vocabulary; the cost of an explanation
    # depends on the length, not on which ids
    words = [f"w{i}" for i in range(2000)]
    tokenizer = word_tokenizer(words, segments=False)
    generator = torch.Generator().manual_seed(0)
    text = " ".join(words[i] for i in torch.randint(0, len(words), (args.tokens - 2,), generator=generator).tolist())
    fields = dict(CONFIGS[args.model])
    model_type = fields.pop("model_type")
    fields["pad_token_id"] = tokenizer.pad_token_id
    config = transformers.AutoConfig.for_model(model_type, num_labels=2, **fields)
    config._attn_implementation = "eager"
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.device("cpu"):
        model = transformers.AutoModelForSequenceClassification.from_config(config, dtype=dtype).eval()
    build_seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters())
    built_rss = rss()
    started = time.perf_counter()
    if args.explainer == "shared":
        record = shared_empirical(model, tokenizer, text, args.tokens + 2)
        seconds = record["seconds"]
    else:
        out = attexp.explain(model, tokenizer, [text], args.explainer, device="cpu", max_length=args.tokens + 2,
                             batch_size=1, **SETTINGS[args.explainer])  # fmt: skip
        record = out.records[0]
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    print(json.dumps({
        "model": args.model, "dtype": args.dtype, "explainer": args.explainer, "tokens": len(record["input_ids"]),
        "parameters": params, "base_rss": base_rss, "built_rss": built_rss, "peak_rss": peak, "seconds": seconds,
        "build_seconds": build_seconds, "forward_passes": record["forward_passes"],
        "backward_passes": record["backward_passes"], "hidden": config.hidden_size,
        "layers": config.num_hidden_layers, "finite": bool(all(map(lambda v: v == v, record["attributions"]))),
    }), flush=True)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(CONFIGS))
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--explainers", default=",".join(SETTINGS))
    parser.add_argument("--tokens", default="64,512")
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks" / "llm_sizes.last.jsonl",
        help="JSON lines of the runs: those already there are reused (not rerun), new ones appended",
    )  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--explainer", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, dest="tokens_one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.tokens = args.tokens_one
        child(args)
        return 0
    lengths = [int(t) for t in args.tokens.split(",")]
    done = [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    rows = []
    print("| model | dtype | explainer | tokens | params | peak RSS GiB | model RSS GiB | s/instance | passes (f/b) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for model in args.models.split(","):
        for dtype in args.dtypes.split(","):
            for explainer in args.explainers.split(","):
                short = None
                for tokens in sorted(lengths):
                    key = (model, dtype, explainer)
                    known = [
                        r for r in done if (r["model"], r["dtype"], r["explainer"]) == key and r["length"] == tokens
                    ]
                    if short is not None and not known:  # predicted from the short run
                        # occlusion runs a window per token over the whole text: quadratic; the others grow faster
                        # than the positions (attention), taken as the power 1.5
                        power = 2.0 if explainer == "occlusion" else 1.5
                        predicted = short["seconds"] * (tokens / short["length"]) ** power
                        if predicted > args.max_seconds:
                            print(f"| {model} | {dtype} | {explainer} | {tokens} | | skipped: predicted "
                                  f"{predicted:.0f} s > --max-seconds | | | |", flush=True)  # fmt: skip
                            continue
                    if known:
                        row = known[-1]
                        rows.append(row)
                        short = short or row
                        print_row(row)
                        continue
                    command = [sys.executable, __file__, "--child", "--model", model, "--dtype", dtype, "--explainer",
                               explainer, "--length", str(tokens), "--threads", str(args.threads)]  # fmt: skip
                    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
                    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
                    if proc.returncode != 0:
                        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                        print(f"| {model} | {dtype} | {explainer} | {tokens} | failed: {tail[0][:80]} |||||")
                        continue
                    row = {**json.loads(proc.stdout.strip().splitlines()[-1]), "length": tokens}
                    rows.append(row)
                    with args.results.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    short = short or row
                    print_row(row)
    report_memory_model(rows)
    return 0


def print_row(row: dict) -> None:
    gib = 1024.0**3
    print(
        f"| {row['model']} | {row['dtype']} | {row['explainer']} | {row['tokens']} | {row['parameters'] / 1e6:.0f}M | "
        f"{row['peak_rss'] / gib:.2f} | {(row['built_rss'] - row['base_rss']) / gib:.2f} | "
        f"{row['seconds']:.1f} | {row['forward_passes']}/{row['backward_passes']} |",
        flush=True,
    )


def report_memory_model(rows: list[dict]) -> None:
    """Fit bytes per parameter and activation bytes per (row x token x layer x hidden); predict an 8B decoder."""
    if not rows:
        return
    print("\nMemory model (fitted from the runs above):")
    per_param = {}
    for dtype in sorted({r["dtype"] for r in rows}):
        fits = [(r["built_rss"] - r["base_rss"]) / r["parameters"] for r in rows if r["dtype"] == dtype]
        per_param[dtype] = sorted(fits)[len(fits) // 2]
        print(f"- weights, {dtype}: {per_param[dtype]:.2f} bytes per parameter (median over {len(fits)} runs)")
    activation = {}
    for explainer, dtype in sorted({(r["explainer"], r["dtype"]) for r in rows}):
        fits = [
            (r["peak_rss"] - r["built_rss"]) / (ROWS_PER_PASS[explainer] * r["tokens"] * r["layers"] * r["hidden"])
            for r in rows
            if r["explainer"] == explainer and r["dtype"] == dtype and r["tokens"] >= 256
        ] or [
            (r["peak_rss"] - r["built_rss"]) / (ROWS_PER_PASS[explainer] * r["tokens"] * r["layers"] * r["hidden"])
            for r in rows
            if r["explainer"] == explainer and r["dtype"] == dtype
        ]
        activation[(explainer, dtype)] = max(fits)
        print(
            f"- {explainer}, {dtype}: {max(fits):.1f} bytes per (pass row x token x layer x hidden unit), the largest "
            f"of {len(fits)} runs"
        )
    print("\nPredicted for an 8B decoder (Llama-3.1-8B sizes), bf16 weights:")
    weights = EIGHT_B["parameters"] * per_param.get("bfloat16", 2.0)
    unit = EIGHT_B["num_hidden_layers"] * EIGHT_B["hidden_size"]
    for gib in (24, 80):
        free = gib * 1024.0**3 * 0.9 - weights  # 10% kept for the allocator, CUDA context and the logits
        print(
            f"- {gib} GiB GPU: weights {weights / 1024.0**3:.1f} GiB; free for activations {free / 1024.0**3:.1f} GiB"
        )
        for (explainer, dtype), per in sorted(activation.items()):
            if dtype != "bfloat16":
                continue
            positions = free / (per * unit) if free > 0 else 0
            rows_each = ROWS_PER_PASS[explainer]
            print(
                f"  - {explainer}: {positions:,.0f} positions per pass = {positions / rows_each:,.0f} tokens of one "
                f"instance with its {rows_each} rows in one pass"
            )


if __name__ == "__main__":
    raise SystemExit(main())
