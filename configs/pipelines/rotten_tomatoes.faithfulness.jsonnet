// Which faithfulness column ranks the explainers how, on MiniLM and RT: 100 test sentences explained by every
// explainer, scored by ERASER (deletion), naopc (normalised AOPC, Edin et al. 2025) and soft (Soft-NC/NS, Zhao &
// Aletras 2023), with agreement with LIG and cost; table.md ends with each column's ranking, Kendall's tau between
// the rankings and the rank changes. The download and train jobs are rt.minilm's (shared with its other pipelines).
// The normalised AOPC's bounds cost about 3,000 perturbed inputs per sentence (about 18 minutes on a 2-core CPU).
//
//   python run_job.py configs/pipelines/rotten_tomatoes.faithfulness.jsonnet
//   read logs/rt.evaluate.minilm.faith/table.md
local defaults = import '../lib/defaults.libsonnet';
local rt = import '../lib/rotten_tomatoes.libsonnet';
local j = rt.minilm;
local test(method, explainer) = j.explain_test {
  name: 'rt.explain.' + method + '.minilm.faith',
  explainer: { type: method } + explainer,
  limit: 100,
  progress: false,
};
local explained = [
  test('lig', { n_steps: 20 }), test('ig', { n_steps: 20 }), test('saliency', {}), test('input_x_gradient', {}),
  test('deeplift', {}), test('gradient_shap', { n_samples: 20 }), test('occlusion', {}), test('feature_ablation', {}),
  test('lime', { n_samples: 200 }), test('kernel_shap', { n_samples: 200 }), test('shapley_sampling', { n_samples: 10 }),
  test('raw_attention', {}), test('rollout', {}), test('alti', {}), test('attattr', { steps: 20 }),
  test('iba', { prior_data: 'rt.download' }), test('random', {}),
];
{
  jobs: [j.download, j.train] + explained + [
    defaults {
      job: 'evaluate',
      name: 'rt.evaluate.minilm.faith',
      explanations: [e.name for e in explained],
      reference: 'rt.explain.lig.minilm.faith',
      metrics: [{ type: 'spearman' }, { type: 'eraser' }, { type: 'naopc' }, { type: 'soft' }, { type: 'cost' }],
    },
  ],
}
