// Explanations learned from cheap teachers: teacher cost as an axis of the convergence pipeline.
//
// Stochastic amortization (Covert et al., NeurIPS 2024) trains an amortized explainer on noisy labels (few-step
// integrals, few-sample Shapley estimates) and reaches the clean-label solution for less, provided the noise is
// unbiased: a fixed few-step rule (LIG-k) errs the same way every time, a stratified random one (`slig<k>`) does not. Here each teacher of
// `teachers` explains as many training sentences as `budget` passes buy (its validation sentences, for early
// stopping, are paid from the same budget), each design of `designs` is distilled from it, and one evaluate job
// scores every learned explainer on the test split against LIG-20 with the LIG-k curve beside them:
// Spearman, MSE, ERASER comprehensiveness/sufficiency against the random floor, the explainer's own passes and
// the teacher's (`teacher_instances`, `teacher_passes`: summed over the teacher's explanations, from the explain
// manifests). logs/<dataset>.evaluate.teachers.<variant>/table.md is the frontier table and
// plots/teacher_cost_vs_spearman.png its plot.
//
// Job names: <dataset>.explain.<teacher>.<variant>.{train,validation} (the teacher's), <dataset>.distill.<variant>.
// <design>.<teacher> and <dataset>.explain.empirical.<variant>.<design>.<teacher>.test.
local convergence = import 'convergence.libsonnet';
local defaults = import 'defaults.libsonnet';

{
  // passes: what the teacher costs per sentence, forward + backward, as the explain job counts it; it only sizes
  // the training set (the table reports what the explain jobs recorded). LIG-k: k + 3 forwards (the prediction,
  // reading the embedding layer at the input and at the baseline, the k points) and k backwards. Shapley sampling with one permutation:
  // one forward per token plus one, and the prediction: 33 per RT sentence on average (measured on the decoder's
  // WordPiece vocabulary; an estimate too low spends more than the budget, the table shows what was spent).
  teachers: {
    lig1: { explainer: { type: 'lig', n_steps: 1 }, passes: 5 },
    lig3: { explainer: { type: 'lig', n_steps: 3 }, passes: 9 },
    lig5: { explainer: { type: 'lig', n_steps: 5 }, passes: 13 },
    lig20: { explainer: { type: 'lig', n_steps: 20 }, passes: 43 },
    shapley1: { explainer: { type: 'shapley_sampling', n_samples: 1 }, passes: 33 },
    // LIG-k with one random point per stratum of the path (`method: 'stratified'`): the same cost as LIG-k, but
    // unbiased for the exact integral, the labels stochastic amortization asks for
    slig1: { explainer: { type: 'lig', n_steps: 1, method: 'stratified' }, passes: 5 },
    slig3: { explainer: { type: 'lig', n_steps: 3, method: 'stratified' }, passes: 9 },
  },

  // distill settings per design (DistillSettings). `shared`: the shipped design (convergence.libsonnet); `heads`:
  // the AT2-style linear map over the read row's attention, values and last hidden states
  // (attexp/distill/empirical/heads.py), a few thousand parameters, hence the higher rate.
  designs: {
    shared: convergence.modes.shared,
    heads: { mode: 'heads', head: 'class', lr: 1e-2, correlation_weight: 1.0, epochs: 10, patience: 3 },
  },

  // j: the job set of empexp.jobs (its train, explain_test = the LIG-20 reference and the LIG train job's
  // settings); train_sentences: the training split's size; fraction: the budget as a share of explaining every
  // training sentence with LIG-20 (`reference_passes` per sentence); order: the teachers run first (the rest
  // follow by name).
  pipeline(j, variant, dataset='rt', train_sentences=8454, validation=300, fraction=0.2, reference_passes=43,
           teachers=self.teachers, designs=self.designs, lig_steps=[1, 3, 5],
           order=['lig3', 'lig1', 'slig1', 'lig20', 'lig5', 'slig3', 'shapley1']):: {
    local budget = fraction * train_sentences * reference_passes,
    local sentences(teacher) = std.max(1, std.min(train_sentences,
                                                  std.floor((budget - validation * teacher.passes) / teacher.passes))),
    local explain(name, split, limit) = j.explain_train {
      name: dataset + '.explain.' + name + '.' + variant + '.' + split,
      split: split,
      explainer: teachers[name].explainer,
      limit: limit,
    },
    local taught(name) = [explain(name, 'train', sentences(teachers[name])), explain(name, 'validation', validation)],
    local distill(design, name) = j.distill + designs[design] {
      name: dataset + '.distill.' + variant + '.' + design + '.' + name,
      train: explain(name, 'train', null).name,
      validation: explain(name, 'validation', null).name,
    },
    local learned(design, name) = j.explain_empirical {
      name: dataset + '.explain.empirical.' + variant + '.' + design + '.' + name + '.test',
      explainer: { type: 'empirical', model: distill(design, name).name },
    },
    local curve = [j.explain_test { name: dataset + '.explain.lig' + k + '.' + variant + '.test',
                                    explainer+: { n_steps: k } } for k in lig_steps],
    local names = [name for name in order if std.objectHas(teachers, name)]
                  + [name for name in std.objectFields(teachers) if !std.member(order, name)],
    local pairs = [[design, name] for name in names for design in std.objectFields(designs)],
    local evaluate = defaults {
      job: 'evaluate',
      name: dataset + '.evaluate.teachers.' + variant,
      explanations: [learned(p[0], p[1]).name for p in pairs] + [job.name for job in curve],
      reference: j.explain_test.name,
      model: j.train.name,
      metrics: [{ type: 'mse' }, { type: 'spearman' }, { type: 'topk_overlap', k: 5 }, { type: 'eraser' },
                { type: 'cost' }],
    },
    // teacher by teacher (its explanations, then what learns from them), so that a partial run has whole rows
    jobs: [j.download, j.train, j.explain_test]
          + std.flattenArrays([
            taught(name) + std.flattenArrays([[distill(d, name), learned(d, name)] for d in std.objectFields(designs)])
            for name in names
          ])
          + curve + [evaluate],
  },
}
