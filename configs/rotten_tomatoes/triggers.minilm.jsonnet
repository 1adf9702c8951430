// Adversarial triggers from attribution patterns (Hao et al. 2021, Sec. 4.3) for rt.train.minilm: patterns from
// the first 500 training instances (predicted class, m = 20), the 40 strongest above 0.02 inserted into every test
// sentence -> logs/rt.triggers.minilm/ (patterns.jsonl, records.jsonl per trigger, metrics.json, table.md with the
// top 10 by accuracy drop, plots/trigger_drops.png). Each trigger costs one pass over the test split; raise
// max_triggers (null: all patterns) where that is cheap.
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;

defaults {
  job: 'triggers',
  name: 'rt.triggers.minilm',
  model: j.train.name,
  data: j.download.name,
  source_split: 'train',
  source_size: 500,
  eval_split: 'test',
  steps: 20,
  batch_size: 8,
  threshold: 0.02,
  max_triggers: 40,
  top: 10,
}
