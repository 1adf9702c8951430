"""The batching engine of the explain stage, shared by every explainer.

Explainers only see padded tensors; everything between dataset rows and explanation records lives here:
tokenising (single texts and sentence pairs), length bucketing, dynamic padding, the prediction forward
that fixes each instance's probabilities and target, timing, and turning tensors back into records of the
documented format (one per instance, padding stripped).

Length bucketing: rows are sorted by token count, longest first (ties keep dataset order), and cut into
batches of `batch_size`. Similar lengths waste little compute on padding, the order depends only on the
data (so a resumed run is reproducible), and putting the longest batch first makes an out-of-memory
setting fail at once rather than hours in.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm import tqdm

from attexp.errors import AttexpError, ConfigError
from attexp.explain.base import Explainer, Explanation
from attexp.models.inputs import (
    Batch,
    batch_pad_id,
    length_sorted_batches,
    max_length_problem,
    pad_features,
    tokenize_rows,
)
from attexp.models.loading import check_logits
from attexp.models.precision import Precision, autocast, frozen_weights

Target = Literal["predicted", "label"] | int


def rows_per_forward(max_tokens: int | None, width: int) -> int | None:
    """Rows of `width` padded tokens that fit a budget of `max_tokens` token positions per model call.

    The memory budget of the explainers: each sizes its chunks with this (Captum's `internal_batch_size`,
    `perturbations_per_eval`, or how many instances go into one Captum call), so that one forward (and its
    backward) holds about `max_tokens` positions whatever the length bucket: a bucket of short sentences gets
    many rows per call, a bucket of long ones few. Never less than 1; None means no budget.
    """
    if max_tokens is None:
        return None
    return max(1, max_tokens // max(width, 1))


def _targets(target: Target, probabilities: Tensor, rows: Sequence[dict]) -> Tensor:
    """The class to explain per instance, [B] long."""
    num_classes = probabilities.shape[-1]
    if target == "predicted":
        return probabilities.argmax(dim=-1)
    if target == "label":
        missing = [row.get("idx") for row in rows if row.get("label") is None]
        if missing:
            raise AttexpError(
                f"target='label' but rows {missing[:5]} have no label. Use target='predicted' for unlabelled data."
            )
        labels = torch.tensor([int(row["label"]) for row in rows], dtype=torch.long)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise AttexpError(
                f"labels {sorted(set(labels.tolist()))} do not fit a classifier with {num_classes} classes. "
                f"Check that the model was trained on this dataset."
            )
        return labels.to(probabilities.device)
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < num_classes:
        return torch.full((len(rows),), target, dtype=torch.long, device=probabilities.device)
    raise ConfigError(
        f"target={target!r} is not valid: expected 'predicted', 'label' or a class id in 0..{num_classes - 1}."
    )


def _check(explanation: Explanation, batch: Batch, name: str) -> None:
    """An explainer that breaks the contract fails loudly here rather than writing bad records."""
    size, width = batch.input_ids.shape
    if tuple(explanation.attributions.shape) != (size, width):
        raise AttexpError(
            f"explainer {name!r} returned attributions of shape {tuple(explanation.attributions.shape)}, "
            f"expected [B, T] = {(size, width)}."
        )
    if len(explanation.forward_passes) != size or len(explanation.backward_passes) != size:
        raise AttexpError(f"explainer {name!r} returned pass counts that are not one per instance (B = {size}).")


def text_length(row: dict) -> int:
    """Characters of a row's text(s): the explain stage orders rows by it before sharding and batching, and the
    Python API does the same, so both cut the same batches (which stochastic explainers' draws depend on)."""
    return len(row["text"]) + len(row.get("text_pair") or "")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def explain_rows(
    explainer: Explainer,
    model: torch.nn.Module,
    tokenizer: Any,
    rows: Sequence[dict],
    *,
    batch_size: int,
    max_length: int,
    target: Target,
    device: torch.device | str,
    skip_idx: Collection[int] = (),
    progress: bool = True,
    first_batch: int = 0,
    precision: Precision | None = None,
    max_tokens_per_pass: int | None = None,
) -> Iterator[list[dict]]:
    """Explain dataset rows batch by batch; yield each batch's finished explanation records.

    rows: `{"idx", "text", "label"}` (+ `"text_pair"`) dicts; those whose idx is in `skip_idx` (already
    written by an interrupted run) are skipped. target: explain the predicted class, the gold label, or a
    fixed class id. Records follow the explanation record format: padding stripped, `seconds` = the batch's
    wall time (prediction + explanation) / B, pass counts include the one prediction forward, `batch`
    counts from `first_batch` (pass the number of batches already written when resuming). precision: autocast
    of the prediction forward, and of `explain` for explainers that opt in (`Explainer.mixed_precision`).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}.")
    if max_tokens_per_pass is not None:  # the job's memory budget, which every explainer sizes its passes by
        explainer.max_tokens_per_pass = max_tokens_per_pass
    problem = max_length_problem(max_length, getattr(model, "config", None))
    if problem:
        raise ConfigError(f"{problem}.")
    device = torch.device(device)
    name = getattr(explainer, "registered_name", type(explainer).__name__)
    skip = set(skip_idx)
    todo = [row for row in rows if row["idx"] not in skip]
    if not todo:
        return
    features = tokenize_rows(tokenizer, todo, max_length, with_words=True)
    batches = length_sorted_batches([len(f["input_ids"]) for f in features], batch_size)
    pad = batch_pad_id(model, tokenizer)

    bar = tqdm(total=len(todo), desc=f"explain {name}", unit="row", disable=not progress)
    try:
        for number, chosen in enumerate(batches, start=first_batch):
            batch_rows = [todo[i] for i in chosen]
            ids, mask, types = pad_features([features[i] for i in chosen], pad)
            ids, mask = ids.to(device), mask.to(device)
            types = None if types is None else types.to(device)

            _sync(device)
            began = time.perf_counter()
            mixed = autocast(device, precision if explainer.mixed_precision else None)
            if explainer.predicts:  # one forward gives the prediction and the explanation

                def targets_of(logits: Tensor, rows: Sequence[dict] = batch_rows) -> Tensor:
                    return _targets(target, logits.float().softmax(dim=-1), rows)

                with torch.inference_mode(), mixed:
                    logits, explanation = explainer.predict_and_explain(ids, mask, types, targets_of)
                logits = logits.float()  # [B, C]
                check_logits(logits, model, f"explain ({name})", [row["idx"] for row in batch_rows])
                targets = _targets(target, logits.softmax(dim=-1), batch_rows)  # [B]
                batch = Batch(input_ids=ids, attention_mask=mask, token_type_ids=types, targets=targets.clone())
            else:
                with torch.inference_mode(), autocast(device, precision):
                    kwargs = {"input_ids": ids, "attention_mask": mask}
                    if types is not None:
                        kwargs["token_type_ids"] = types
                    logits = model(**kwargs).logits.float()  # [B, C]
                    check_logits(logits, model, f"explain ({name})", [row["idx"] for row in batch_rows])
                    probabilities = logits.softmax(dim=-1)
                    targets = _targets(target, probabilities, batch_rows)  # [B]
                batch = Batch(input_ids=ids, attention_mask=mask, token_type_ids=types, targets=targets.clone())
                if explainer.needs_gradients:  # gradients of the inputs only: no weight gradient is kept
                    with torch.enable_grad(), mixed, frozen_weights(model):
                        explanation = explainer.explain(batch)
                else:
                    with torch.inference_mode(), mixed:
                        explanation = explainer.explain(batch)
            _check(explanation, batch, name)
            _sync(device)
            seconds = (time.perf_counter() - began) / len(chosen)

            chosen_features = [features[i] for i in chosen]
            yield _records(explanation, batch, batch_rows, chosen_features, logits, tokenizer, seconds, number)
            bar.update(len(chosen))
    finally:
        bar.close()


def _records(
    explanation: Explanation,
    batch: Batch,
    rows: Sequence[dict],
    features: Sequence[dict],
    logits: Tensor,
    tokenizer: Any,
    seconds: float,
    number: int,
) -> list[dict]:
    lengths = batch.attention_mask.sum(dim=-1).tolist()
    ids = batch.input_ids.tolist()
    scores = explanation.attributions.detach().float().cpu().tolist()
    probs = logits.softmax(dim=-1).cpu().tolist()
    raw = logits.cpu().tolist()
    targets = batch.targets.tolist()
    # per-instance scalars among the extras (e.g. LIG's convergence_delta [B]) travel with the record
    scalars = {
        key: value.detach().float().cpu().tolist()
        for key, value in explanation.extras.items()
        if value.dim() == 1 and value.shape[0] == len(rows)
    }
    records = []
    for i, row in enumerate(rows):
        n = int(lengths[i])
        record = {
            "idx": row["idx"],
            "text": row["text"],
            **({"text_pair": row["text_pair"]} if row.get("text_pair") is not None else {}),
            "input_ids": ids[i][:n],
            "tokens": tokenizer.convert_ids_to_tokens(ids[i][:n]),
            **{key: features[i][key] for key in ("word_ids", "words") if key in features[i]},
            "label": row.get("label"),
            "predictions": probs[i],
            "logits": raw[i],
            "target": int(targets[i]),
            "attributions": scores[i][:n],
            "seconds": seconds,
            "forward_passes": 1 + int(explanation.forward_passes[i]),
            "backward_passes": int(explanation.backward_passes[i]),
            "batch": number,
        }
        if scalars:
            record["extras"] = {key: values[i] for key, values in scalars.items()}
        records.append(record)
    return records
