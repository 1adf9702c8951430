// The convergence curve of rotten_tomatoes.convergence.jsonnet with the tiny model: runs in minutes on a CPU and
// reuses the jobs of the demo pipeline (configs/run_job.jsonnet) when run in the same base directory.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.convergence.tiny.jsonnet
//   logs/rt.evaluate.convergence.tiny/table.md and plots/cost_vs_spearman.png
local convergence = import '../lib/convergence.libsonnet';
local rt = import '../lib/rotten_tomatoes.libsonnet';
{ jobs: convergence.pipeline(rt.tiny, 'tiny').jobs }
