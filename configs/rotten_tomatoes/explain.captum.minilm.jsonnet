// The Captum family on the Rotten Tomatoes test split for rt.train.minilm: five gradient methods (on the
// word embeddings) and five perturbation methods (over the real tokens), each with its documented defaults
// made explicit where they matter. Every job reads the same model and data as the LIG job of
// lib/empexp.libsonnet and writes explanations/rt.explain.<method>.minilm.test/.
// The perturbation methods cost hundreds of forward passes per instance: lower `limit` for a quick look
// (e.g. --jobs.9.limit=50).
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;
local explain(method, explainer) = j.explain_test {
  name: 'rt.explain.' + method + '.minilm.test',
  explainer: { type: method } + explainer,
};

{
  jobs: [
    explain('ig', { n_steps: 20, baseline: 'pad' }),
    explain('saliency', { abs: true, reduce: 'l2' }),
    explain('input_x_gradient', {}),
    explain('deeplift', { baseline: 'pad', return_delta: true }),
    explain('gradient_shap', { n_samples: 20, stdevs: 0.0, seed: 0 }),
    explain('occlusion', { window: 3, stride: 1, baseline: 'mask' }),
    explain('feature_ablation', { baseline: 'mask' }),
    explain('shapley_sampling', { n_samples: 25, baseline: 'mask', seed: 0 }),
    explain('kernel_shap', { n_samples: 100, baseline: 'mask', seed: 0 }),
    explain('lime', { n_samples: 100, baseline: 'mask', seed: 0 }),
  ],
}
