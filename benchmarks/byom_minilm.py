"""A classifier saved outside attexp, explained by a job and by the Python API: are the records the same?

The packaged all-MiniLM-L6-v2 with a fresh 2-class head (seed 0), `save_pretrained` into a folder of its own, is
explained with LIG-20 on the first --limit Rotten Tomatoes test sentences by an explain job with
`model: {type: 'local'}` and by `attexp.explain`; the script prints how many records are identical in every field
but the wall time (`seconds`). (Issue 12; the same check for every registered explainer on a tiny model is
tests/test_api.py.)

    python benchmarks/byom_minilm.py /tmp/byom-minilm [--limit 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import attexp  # noqa: E402
from attexp.io.artifacts import cache_dir_of  # noqa: E402
from attexp.models.sources import PackagedModel, PackagedModelConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("--limit", type=int, default=32)
    args = parser.parse_args()
    base = args.base.resolve()
    folder = base / "outside" / "minilm-2class"
    source = PackagedModel(PackagedModelConfig()).folder(cache_dir_of(base))
    torch.manual_seed(0)
    names = {0: "negative", 1: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=2, id2label=names, label2id={v: k for k, v in names.items()}
    )
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)

    config = {
        "jobs": [
            {"job": "download", "name": "rt.download", "source": {"type": "packaged", "corpus": "rt_sentences"}},
            {
                "job": "explain",
                "name": "rt.explain.lig.minilm-local",
                "model": {"type": "local", "path": "outside/minilm-2class"},
                "data": "rt.download",
                "explainer": {"type": "lig", "n_steps": 20},
                "limit": args.limit,
                "progress": False,
            },
        ]
    }
    (base / "byom.json").write_text(json.dumps(config))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, str(ROOT / "run_job.py"), str(base / "byom.json"), "--base-dir", str(base)],
                   check=True, env=env)  # fmt: skip
    job = [json.loads(line) for line in (base / "explanations/rt.explain.lig.minilm-local/records.jsonl").open()]
    rows = [json.loads(line) for line in (base / "data/rt.download/test.jsonl").open()][: args.limit]
    api = attexp.explain(folder, None, [r["text"] for r in rows], "lig", n_steps=20, labels=[r["label"] for r in rows])
    same = 0
    for row, mine, theirs in zip(rows, api.records, job, strict=True):
        mine, theirs = {**mine, "idx": row["idx"]}, dict(theirs)
        mine.pop("seconds"), theirs.pop("seconds")
        same += mine == theirs
    print(f"records identical (all fields but the wall time `seconds`): {same} of {len(job)}")


if __name__ == "__main__":
    main()
