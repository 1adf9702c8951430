// Explanations learned from cheap teachers on Rotten Tomatoes with MiniLM (configs/lib/teachers.libsonnet): LIG-1,
// LIG-3, LIG-5, LIG-20 and one-permutation Shapley sampling each explain as many training sentences as a fifth of
// "every training sentence by LIG-20" buys; the shared and heads empirical explainers learn from each; one evaluate
// job scores them all on 500 test sentences against LIG-20, with the LIG-k curve beside them.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.teachers.jsonnet
//   logs/rt.evaluate.teachers.minilm/table.md and plots/teacher_cost_vs_spearman.png
//
// About 2 hours on a 2-core CPU (the teachers' explain jobs about 45 minutes, ten distill jobs the rest).
// The budget is `fraction` below: a share of 8,454 sentences x LIG-20's 43 passes.
local rt = import '../lib/rotten_tomatoes.libsonnet';
local teachers = import '../lib/teachers.libsonnet';
{ jobs: teachers.pipeline(rt.minilm, 'minilm', fraction=0.2).jobs }
