// Empirical Explainers' convergence curve (Schwarzenberg et al. 2021, Figure 2) for one Empirical-Explainer job
// set `j` (from empexp.jobs): explain the test split with LIG at k = 1..K integration steps, score each against
// the K-step reference (MSE, Spearman, top-5 overlap, ERASER comprehensiveness/sufficiency on the classifier,
// seconds per instance) together with the empirical explainers, which cost one forward pass or less.
// logs/<dataset>.evaluate.convergence.<variant>/plots/cost_vs_spearman.png is the curve: LIG's points joined in
// order of cost, each empirical explainer a single point beside them, the random floor dashed.
//
// modes: empirical explainers distilled beside j.distill (the paper's `copy` mode), by name -> distill settings
// (see DistillSettings: mode, head, student_layers, branch_layers, branch_init, correlation_weight). Each adds a
// distill job `<dataset>.distill.<variant>.<name>` and its explain job
// `<dataset>.explain.empirical.<variant>.<name>.test`.
local defaults = import 'defaults.libsonnet';

{
  // The fresh parts (the shared branch, the student's head) learn at a higher rate than a fine-tuned copy; the
  // correlation term and these rates were chosen on MiniLM (benchmarks/README.md, "The empirical explainer's
  // modes"): shared 1 branch layer at lr 1e-3 beat 2 layers and lr 5e-5/5e-4. The shared branch's per-class head
  // (a score per class, the target's read out) and its start as a copy of the classifier's top layer (the
  // default branch_init) were chosen on the validation sentences (benchmarks/README.md, "Which branch").
  modes: {
    student: { mode: 'student', lr: 2e-4, correlation_weight: 1.0, epochs: 10, patience: 3 },
    shared: { mode: 'shared', head: 'class', lr: 1e-3, correlation_weight: 1.0, epochs: 10, patience: 3 },
  },

  pipeline(j, variant, dataset='rt', steps=[1, 2, 3, 5, 8, 12, 15], modes=self.modes):: {
    local lig_at(k) = j.explain_test {
      name: dataset + '.explain.lig' + k + '.' + variant + '.test',
      explainer+: { n_steps: k },
    },
    local curve = [lig_at(k) for k in steps],
    local distill(name) = j.distill + modes[name] { name: j.distill.name + '.' + name },
    local explain(name) = j.explain_empirical {
      name: dataset + '.explain.empirical.' + variant + '.' + name + '.test',
      explainer: { type: 'empirical', model: distill(name).name },
    },
    local extra = std.objectFields(modes),
    local evaluate = defaults {
      job: 'evaluate',
      name: dataset + '.evaluate.convergence.' + variant,
      explanations: [job.name for job in curve] + [j.explain_test.name, j.explain_empirical.name]
                    + [explain(name).name for name in extra],
      reference: j.explain_test.name,
      model: j.train.name,
      metrics: [{ type: 'mse' }, { type: 'spearman' }, { type: 'topk_overlap', k: 5 }, { type: 'eraser' },
                { type: 'cost' }],
    },
    jobs: [j.download, j.train, j.explain_train, j.explain_validation, j.explain_test, j.distill, j.explain_empirical]
          + [distill(name) for name in extra] + [explain(name) for name in extra] + curve + [evaluate],
  },
}
