"""AttExplainer against a random masking policy and Captum baselines: the masking-game table, compact.

The comparison itself runs as one pipeline (`configs/pipelines/rotten_tomatoes.attexplainer.jsonnet`: train an
explanation and an attack agent, explain the test split with both agents, `random`, Feature Ablation, Occlusion
and KernelSHAP, score all of them with the `masking_game` metric in one evaluate job). Its `table.md` has every
column; this script prints the few the comparison is about, side by side, from the evaluate job's metrics.json,
plus how long each agent trained:

- explain task, `positive` mode (the paper's way: mask every positively scored token; for the agents, their
  final masked set): success rate, success with at most 10/20/30% of the tokens masked, token and word
  modification rate, queries (model forwards per instance, the prediction forward included);
- explain task, `sequential` mode (mask by score one token at a time until success, at most max_steps; the
  `random` row is the random masking policy): the same columns;
- attack task: attack success rate over initially correct instances, token modification rate, queries.

    python benchmarks/attexplainer_compare.py --base-dir /tmp/demo [--evaluation rt.ax.evaluate.minilm]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

GROUPS = {
    "explain, mask all positive (paper's way)": [
        "success",
        "success@10%",
        "success@20%",
        "success@30%",
        "token_mod",
        "word_mod",
        "queries",
    ],
    "explain, sequential by score": [
        f"{k}_seq" for k in ("success", "success@10%", "success@20%", "success@30%", "token_mod", "queries")
    ],
    "attack, mask all positive": [
        "asr_attack",
        "success@10%_attack",
        "success@20%_attack",
        "success@30%_attack",
        "token_mod_attack",
        "queries_attack",
    ],
    "attack, sequential by score": [
        "asr_attack_seq",
        "success@10%_attack_seq",
        "success@20%_attack_seq",
        "success@30%_attack_seq",
        "token_mod_attack_seq",
        "queries_attack_seq",
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", type=Path, default=Path("."))
    parser.add_argument("--evaluation", default="rt.ax.evaluate.minilm")
    parser.add_argument(
        "--agents",
        nargs="*",
        default=["rt.agent.explain.minilm", "rt.agent.attack.minilm", "rt.agent.explain.difference.minilm"],
    )
    args = parser.parse_args()
    metrics = json.loads((args.base_dir / "logs" / args.evaluation / "metrics.json").read_text())
    results = metrics["results"]
    for agent in args.agents:
        path = args.base_dir / "models" / agent / "manifest.json"
        if path.exists():
            m = json.loads(path.read_text())
            final = ", ".join(f"{k} {v:.3f}" for k, v in (m.get("final") or {}).items())
            print(
                f"{agent}: {m.get('episodes')} game batches, {m.get('game_steps')} game steps, "
                f"{m.get('learn_steps')} learn steps, {m.get('training_seconds')} s wall, "
                f"{m.get('training_cpu_seconds', '?')} s CPU; last tenth: {final}"
            )
    for title, keys in GROUPS.items():
        print(f"\n{title}")
        rows = [(name, r) for name, r in results.items()]
        header = ["explanations"] + keys
        width = max(len(n) for n, _ in rows)
        print(" | ".join([header[0].ljust(width)] + [k.rjust(12) for k in keys]))
        for name, r in rows:
            cells = []
            for key in keys:
                value = next((v for k, v in r.items() if k.split(".", 1)[-1] == key), None)
                cells.append("" if value is None else f"{value:.3f}")
            print(" | ".join([name.ljust(width)] + [c.rjust(12) for c in cells]))


if __name__ == "__main__":
    main()
