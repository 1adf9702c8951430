// The job a wandb sweep agent runs for rotten_tomatoes.train.tiny.yaml: the tiny RT classifier with wandb
// logging on. Each sweep run gets its own job folder (models/rt.train.tiny.sweep-<run id>); the agent's
// `--lr=... --batch_size=...` arguments override the keys below. Needs rt.download (run
// configs/rotten_tomatoes/download.jsonnet first).
local run = std.extVar('wandb_run_id');
(import '../lib/rotten_tomatoes.libsonnet').tiny.train {
  name: super.name + (if run == '' then '' else '.sweep-' + run),
  wandb+: { enabled: true },
  progress: false,
}
