// Head importance by Self-Attention Attribution (Hao et al. 2021, Sec. 4.1) vs the Taylor baseline (Michel et al.
// 2019) vs a random order, for rt.train.minilm: importance from 200 validation instances (gold labels, m = 20),
// accuracy on the whole test split with 0, 10, ..., 100% of the 72 heads masked -> logs/rt.prune_heads.minilm/
// (records.jsonl per rate, metrics.json, table.md, plots/curve_pruning_curve.png).
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;

defaults {
  job: 'head_pruning',
  name: 'rt.prune_heads.minilm',
  model: j.train.name,
  data: j.download.name,
  importance_split: 'validation',
  importance_size: 200,
  eval_split: 'test',
  steps: 20,
  batch_size: 8,
  eval_batch_size: 64,
}
