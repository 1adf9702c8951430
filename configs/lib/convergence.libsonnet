// Empirical Explainers' convergence curve (Schwarzenberg et al. 2021, Figure 2) for one Empirical-Explainer job
// set `j` (from empexp.jobs): explain the test split with LIG at k = 1..K integration steps, score each against
// the K-step reference (MSE, Spearman, top-5 overlap) together with the empirical explainer, which costs one
// forward pass. logs/<dataset>.evaluate.convergence.<variant>/plots/cost_vs_spearman.png is the curve: LIG's
// points joined in order of cost, the empirical explainer a single point beside them, the random floor dashed.
local defaults = import 'defaults.libsonnet';

{
  pipeline(j, variant, dataset='rt', steps=[1, 2, 3, 5, 10, 15]):: {
    local lig_at(k) = j.explain_test {
      name: dataset + '.explain.lig' + k + '.' + variant + '.test',
      explainer+: { n_steps: k },
    },
    local curve = [lig_at(k) for k in steps],
    local evaluate = defaults {
      job: 'evaluate',
      name: dataset + '.evaluate.convergence.' + variant,
      explanations: [job.name for job in curve] + [j.explain_test.name, j.explain_empirical.name],
      reference: j.explain_test.name,
      model: j.train.name,
      metrics: [{ type: 'mse' }, { type: 'spearman' }, { type: 'topk_overlap', k: 5 }, { type: 'cost' }],
    },
    jobs: [j.download, j.train, j.explain_train, j.explain_validation, j.explain_test, j.distill, j.explain_empirical]
          + curve + [evaluate],
  },
}
