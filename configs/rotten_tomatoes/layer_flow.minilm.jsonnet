// IBA's per-layer view (Jiang et al. 2020) for rt.train.minilm: the first 5 test sentences explained with the
// bottleneck after each of the 6 layers in turn (dataset prior from 1,000 training sentences) -> a layer x token
// heatmap per sentence in visualizations/rt.layer_flow.minilm/ (index.html, instances/<idx>.html, plots/, flow.jsonl).
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;

defaults {
  job: 'layer_flow',
  name: 'rt.layer_flow.minilm',
  model: j.train.name,
  data: j.download.name,
  split: 'test',
  limit: 5,
  iba: { type: 'iba', prior_data: j.download.name },
  quantity: 'scores',
}
