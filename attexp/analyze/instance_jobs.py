"""Analyses of single instances, computed from the model: attribution trees and IBA's information flow per
layer. The jobs write records; their pages are drawn by the visualize stage (`attexp.visualize.analysis_pages`,
registered as the renderer of these jobs), into the same folder.

- `attribution_tree` (Hao et al. 2021, Sec. 4.2): Self-Attention Attribution maps of each chosen instance,
  summed over heads, turned into the paper's attribution tree (`attexp.analyze.trees`). Output
  (`visualizations/<name>/`): `trees.jsonl` (idx, tokens, root, edges with their layer and weight, node
  levels), `instances/<idx>.html` (the tree as inline SVG, its edge table and the tokens) and `index.html`.
- `layer_flow` (Jiang et al. 2020): the `iba` explainer with its bottleneck after each layer in turn
  (`attexp.analyze.flow`). Output: `flow.jsonl` (idx, tokens, per-layer scores and capacities [L][T]),
  `plots/<idx>.png` (layer x token heatmap), `instances/<idx>.html` (the heatmap as a table and the plot) and
  `index.html`.

Instances: `instances` lists idx values of `split` (default: the first `limit` rows). Pages are
self-contained and every token is HTML-escaped (jinja2 autoescape, as all pages of the visualize stage).
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field

from attexp.analyze import flow as F
from attexp.analyze import trees as T
from attexp.analyze.heads import Batches
from attexp.config.schema import ClassifierRef, JobConfig, Upstream
from attexp.errors import AttexpError
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution
from attexp.explain.bottleneck import IBAConfig
from attexp.io.files import read_jsonl, write_jsonl
from attexp.io.records import ATTRIBUTION_TREE, DATASET, LAYER_FLOW
from attexp.models.layouts import ENCODER_MODEL_TYPES, INSIDE_MODEL_TYPES
from attexp.models.loading import label_names_of
from attexp.registry import JOBS
from attexp.runner import Job, JobContext, Splits

log = logging.getLogger(__name__)


class _InstancesConfig(JobConfig):
    """The classifier, the data and which instances to draw."""

    model: ClassifierRef
    data: Annotated[str, Upstream(("download",))]
    split: Literal["train", "validation", "test"] = "test"
    instances: list[int] | None = Field(None, min_length=1, description="idx values to draw (default: first `limit`)")
    limit: int = Field(3, ge=1, description="with `instances` unset: the first N rows of the split")
    target: Literal["predicted", "label"] = "predicted"
    batch_size: int = Field(4, ge=1)
    max_length: int = Field(128, ge=8)


class AttributionTreeConfig(_InstancesConfig):
    """Attribution trees: steps (m, AttAttr's Riemann steps, 20), threshold (0.4, the paper's)."""

    job: Literal["attribution_tree"] = "attribution_tree"
    steps: int = Field(20, ge=1)
    threshold: float = Field(T.THRESHOLD, gt=0)


class LayerFlowConfig(_InstancesConfig):
    """IBA per layer: `iba` holds the explainer settings (`layer` is ignored: every layer in turn);
    quantity: what the heatmap shows, `scores` (per-layer min-max normalised) or `capacity` (nats)."""

    job: Literal["layer_flow"] = "layer_flow"
    iba: IBAConfig = Field(default_factory=IBAConfig)
    quantity: Literal["scores", "capacity"] = "scores"


def _load(config: _InstancesConfig, ctx: JobContext):
    device = ctx.device
    model, tokenizer = ctx.classifier(config.model, device=device)
    rows = ctx.upstream(config.data).read(DATASET, f"{config.split}.jsonl")
    if config.instances is None:
        chosen = rows[: config.limit]
    else:
        by_idx = {row["idx"]: row for row in rows}
        missing = [i for i in config.instances if i not in by_idx]
        if missing:
            raise AttexpError(
                f"{config.name}: instances {missing} are not idx values of split {config.split!r} of "
                f"{config.data!r} (it has {len(rows)} rows, idx {rows[0]['idx'] if rows else '-'}..). Fix `instances`."
            )
        chosen = [by_idx[i] for i in config.instances]
    chosen = ctx.share(chosen)  # this process's share (`finish` merges the shards)
    batches = Batches(chosen, model, tokenizer, config.batch_size, config.max_length, device)
    label_names = ctx.upstream(config.data).manifest.label_names
    if not isinstance(config.model, str):  # a model of its own names its own classes
        label_names = label_names_of(model)
    return model, tokenizer, batches, label_names


def _merge_shares(ctx: JobContext, name: str) -> list[dict]:
    """Once every share is written (`ctx.shard_path`): one file sorted by idx; its records."""
    count = ctx.merge_shards(name)
    ctx.counts.update(instances=count)
    return read_jsonl(ctx.path(name))


def _predict(model, batch) -> torch.Tensor:
    with torch.inference_mode():
        return model(**batch.model_inputs()).logits.argmax(dim=-1).clone()


@JOBS.register("attribution_tree", AttributionTreeConfig)
class AttributionTreeJob(Job):
    """Attribution trees (Hao et al. 2021) of chosen instances, as JSON edges and SVG pages."""

    architectures = ENCODER_MODEL_TYPES
    architecture_note = (
        "the paper's tree is rooted at [CLS], the position a bidirectional encoder's head reads; a decoder's head "
        "reads its last token, which attends to no later token, so the paper's construction does not apply"
    )

    schema = ATTRIBUTION_TREE
    folder = "visualizations"
    resumable = False
    splits = Splits.INSTANCES  # each process a share of the instances; `finish` merges them

    @classmethod
    def finish(cls, config: AttributionTreeConfig, ctx: JobContext) -> None:
        records = _merge_shares(ctx, "trees.jsonl")
        edges = [len(r["edges"]) for r in records]
        ctx.log_metrics({"instances": len(records), "mean_edges": float(np.mean(edges)) if edges else 0.0})

    def run(self, config: AttributionTreeConfig, ctx: JobContext) -> None:
        model, tokenizer, batches, label_names = _load(config, ctx)
        explainer = AttentionAttribution(AttAttrConfig(steps=config.steps, return_maps=True), model, tokenizer, {})
        if explainer.encoder.reads != "first":
            raise AttexpError(
                f"attribution_tree: the tree is rooted at [CLS], but this {model.config.model_type} classifier's head "
                f"reads {'the mean of its tokens' if explainer.encoder.reads == 'mean' else 'its last token'}; a tree "
                f"rooted where the head does not read is not the paper's. Use a classifier that reads [CLS] (for "
                f"ModernBERT: classifier_pooling 'cls')."
            )
        records = []
        for batch, rows in zip(batches.batches, batches.rows, strict=True):
            predicted = _predict(model, batch)
            if config.target == "predicted":
                batch.targets = predicted
            with torch.enable_grad():
                maps = explainer.explain(batch).extras["maps"].detach().sum(dim=2).cpu().numpy()  # [B, L, T, T]
            lengths = batch.attention_mask.sum(dim=1).tolist()
            for i, row in enumerate(rows):
                n = int(lengths[i])
                tokens = tokenizer.convert_ids_to_tokens(batch.input_ids[i, :n].tolist())
                tree = T.build_tree(maps[i, :, :n, :n], config.threshold)
                records.append(
                    {
                        "idx": row["idx"],
                        "tokens": tokens,
                        "label": row["label"],
                        "prediction": int(predicted[i]),
                        "target": int(batch.targets[i]),
                        **tree.to_json(tokens),
                    }
                )
        write_jsonl(ctx.shard_path("trees.jsonl"), records)
        ctx.manifest.label_names = label_names
        ctx.manifest.notes = [
            f"model: {config.model}; data: {config.data} ({config.split}); AttAttr m = {config.steps}"
        ]


@JOBS.register("layer_flow", LayerFlowConfig)
class LayerFlowJob(Job):
    """IBA's information flow: a bottleneck after each layer in turn, as a layer x token heatmap."""

    architectures = INSIDE_MODEL_TYPES

    schema = LAYER_FLOW
    folder = "visualizations"
    resumable = False
    splits = Splits.INSTANCES  # each process a share of the instances (IBA samples noise: per-process seeds)

    @classmethod
    def finish(cls, config: LayerFlowConfig, ctx: JobContext) -> None:
        ctx.log_metrics({"instances": len(_merge_shares(ctx, "flow.jsonl"))})

    def run(self, config: LayerFlowConfig, ctx: JobContext) -> None:
        model, tokenizer, batches, label_names = _load(config, ctx)
        upstream = {name: artifact.dir for name, artifact in ctx.upstream_artifacts.items()}
        if config.iba.prior_data is not None and config.iba.prior_data not in upstream:
            raise AttexpError(f"{config.name}: iba.prior_data={config.iba.prior_data!r} is not an upstream artifact.")
        records = []
        for batch, rows in zip(batches.batches, batches.rows, strict=True):
            predicted = _predict(model, batch)
            if config.target == "predicted":
                batch.targets = predicted
            scores, capacity = F.layer_flow(model, tokenizer, batch, config.iba, upstream)  # [B, L, T] each
            lengths = batch.attention_mask.sum(dim=1).tolist()
            for i, row in enumerate(rows):
                n = int(lengths[i])
                records.append(
                    {
                        "idx": row["idx"],
                        "tokens": tokenizer.convert_ids_to_tokens(batch.input_ids[i, :n].tolist()),
                        "label": row["label"],
                        "prediction": int(predicted[i]),
                        "target": int(batch.targets[i]),
                        "scores": scores[i, :, :n].cpu().tolist(),
                        "capacity": capacity[i, :, :n].cpu().tolist(),
                    }
                )
        write_jsonl(ctx.shard_path("flow.jsonl"), records)
        ctx.manifest.label_names = label_names
        ctx.manifest.notes = [
            f"model: {config.model}; data: {config.data} ({config.split}); iba: beta={config.iba.beta}, "
            f"steps={config.iba.steps}, prior={config.iba.prior}"
        ]
