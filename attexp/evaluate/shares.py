"""The model's work of an evaluate job split over processes: under torchrun every rank, in a job array every task
(`--shard I/N`), scores its share of the instances with the faithfulness metrics, the part that runs the model.

Each share keeps every probability its scorer computed in a share file (`scorer.npz.rank<r>.partial`, named like
every shard file by `JobContext.shard_path`: the row keys and the probabilities; numpy arrays only, read without
pickle). Unlike records, two shares may hold one key (the same perturbed input reached from two instances, e.g. every
token masked): the files are a memo of the model's outputs, and equal keys carry equal probabilities. The process
that finishes the job (rank 0, or the task that records the last shard) loads every share into its own scorer and
scores all the instances as one process would: the rows a share ran cost no forward pass, so the tables, per-instance
values and curves are those of one process (up to the float noise of other batch compositions, ~1e-7), and a row no
share asked for (a metric whose perturbations depend on other instances) is simply run there. The evaluation cost in
the manifest adds up the shares' passes and seconds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attexp.evaluate.base import Metric
from attexp.evaluate.metric_table import Run, score_planned
from attexp.evaluate.model_scorer import ModelScorer

SHARE_FILE = "scorer.npz"  # each share's part: `JobContext.shard_path(SHARE_FILE)`


def share_runs(runs: Sequence[Run], share: Callable[[list[int]], list[int]]) -> list[Run]:
    """Each run's records of this process's share (`share`: `JobContext.share`) of the instances, dealt by idx, the
    same idx to the same share in every run (so a share scores the same instances of every explainer)."""
    every = sorted({record["idx"] for _, _, records in runs for record in records})
    mine = set(share(every))
    return [(name, explainer, [r for r in records if r["idx"] in mine]) for name, explainer, records in runs]


def score_share(
    runs: Sequence[Run], metrics: Sequence[Metric], reference: list[dict] | None, scorer: ModelScorer
) -> None:
    """Run the model-reading metrics on every run's share (the results are recomputed from the shares' rows when
    the job finishes; here only the scorer's rows matter), their planned inputs first in one pass (`score_planned`)."""
    score_planned([run for run in runs if run[2]], metrics, scorer)
    for _, _, records in runs:
        if not records:
            continue
        for metric in metrics:
            if metric.needs_model:
                metric.compute(records, reference, scorer=scorer)


def save_share(path: Path, scorer: ModelScorer) -> None:
    """The rows `scorer` ran and its counters, atomically (a killed share leaves no half file)."""
    keys, probabilities = scorer.known()
    lengths = np.array([len(k) for k in keys], dtype=np.int64)
    flat = np.frombuffer(b"".join(keys), dtype=np.uint8) if keys else np.zeros(0, dtype=np.uint8)
    width = probabilities[0].shape[0] if probabilities else 0
    values = np.stack(probabilities) if probabilities else np.zeros((0, width))
    counters = np.array([scorer.forward_passes, scorer.rows, scorer.seconds], dtype=np.float64)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, keys=flat, lengths=lengths, probabilities=values, counters=counters)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_shares(paths: Sequence[Path], scorer: ModelScorer) -> dict[str, Any]:
    """Every share file into `scorer`; returns the shares' summed cost (forward passes, rows, seconds)."""
    cost = {"forward_passes": 0, "rows": 0, "seconds": 0.0, "shares": 0}
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            flat, lengths = data["keys"].tobytes(), data["lengths"]
            ends = np.cumsum(lengths)
            keys = [flat[end - n : end] for n, end in zip(lengths.tolist(), ends.tolist(), strict=True)]
            scorer.learn(keys, list(data["probabilities"]))
            passes, rows, seconds = data["counters"].tolist()
        cost["forward_passes"] += int(passes)
        cost["rows"] += int(rows)
        cost["seconds"] += float(seconds)
        cost["shares"] += 1
    return cost


def remove_shares(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
