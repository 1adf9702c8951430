// Attribution trees (Hao et al. 2021, Sec. 4.2) of the first 5 test sentences for rt.train.minilm (m = 20,
// threshold 0.4) -> visualizations/rt.attribution_tree.minilm/index.html, instances/<idx>.html, trees.jsonl.
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;

defaults {
  job: 'attribution_tree',
  name: 'rt.attribution_tree.minilm',
  model: j.train.name,
  data: j.download.name,
  split: 'test',
  limit: 5,
  steps: 20,
  threshold: 0.4,
}
