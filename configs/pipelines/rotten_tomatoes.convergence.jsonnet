// Empirical Explainers' convergence curve (Schwarzenberg et al. 2021, Figure 2) on Rotten Tomatoes with minilm
// (see lib/convergence.libsonnet; rotten_tomatoes.convergence.tiny.jsonnet is the same with the tiny model):
//
//   python run_job.py configs/pipelines/rotten_tomatoes.convergence.jsonnet
//   logs/rt.evaluate.convergence.minilm/table.md and plots/cost_vs_spearman.png
local convergence = import '../lib/convergence.libsonnet';
local rt = import '../lib/rotten_tomatoes.libsonnet';
{ jobs: convergence.pipeline(rt.minilm, 'minilm').jobs }
