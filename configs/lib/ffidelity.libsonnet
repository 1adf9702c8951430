// F-Fidelity on Rotten Tomatoes (attexp/train/augment.py): deletion measured on a copy of the classifier fine-tuned
// with random masking, while the explanations come from the original. The tiny pipeline's classifier is explained
// by a handful of explainers; a second train job continues it with `mask_augment` at the evaluate job's deletion
// rates; one evaluate job runs the deletion metrics on the original, one on the masked copy, with the same records.
//
// pipeline(j, sizes): `j` the jobs of empexp.jobs(...) (its download and train jobs are shared with the other RT
// pipelines of the model); `sizes` shrinks it for tests.
local defaults = import 'defaults.libsonnet';

local full = {
  limit: 200,
  lig: { n_steps: 20 },
  augment: { epochs: 2, lr: 2e-4, patience: 1 },
  quiet: {},
  naopc: { beam_width: 5 },
};
local eraser_bins = [0.01, 0.05, 0.1, 0.2, 0.5];

{
  full: full,
  pipeline(j, sizes={}, variant='tiny'):: {
    local s = full + sizes,
    local masked = 'rt.train.' + variant + '.masked',
    local test(method, explainer) = j.explain_test + s.quiet {
      name: 'rt.explain.' + method + '.' + variant + '.ffidelity',
      explainer: { type: method } + explainer,
      limit: s.limit,
    },
    local explained = [
      test('lig', s.lig),
      test('saliency', {}),
      test('input_x_gradient', {}),
      test('occlusion', {}),
      test('alti', {}),
      test('raw_attention', {}),
      test('random', {}),
    ],
    local names = [e.name for e in explained],
    local metrics = [{ type: 'eraser', bins: eraser_bins }, { type: 'naopc' } + s.naopc, { type: 'soft' }],
    jobs: [
      j.download,
      j.train,
    ] + explained + [
      // the explained classifier, continued with random masking at ERASER's deletion rates (F-Fidelity)
      j.train + s.quiet + s.augment {
        name: masked,
        model: { type: 'trained', job: j.train.name },
        mask_augment: { rates: eraser_bins, token: 'mask' },
      },
      defaults {
        job: 'evaluate',
        name: 'rt.evaluate.' + variant + '.ffidelity.original',
        explanations: names,
        metrics: metrics,
      },
      defaults {
        job: 'evaluate',
        name: 'rt.evaluate.' + variant + '.ffidelity.masked',
        explanations: names,
        deletion_model: masked,  // deletion on the masked copy; the explanations are the original's
        metrics: metrics,
      },
      defaults {
        job: 'visualize',
        name: 'rt.visualize.' + variant + '.ffidelity',
        explanations: [names[0], names[3], names[4]],
        evaluation: 'rt.evaluate.' + variant + '.ffidelity.masked',
        max_instances: 50,
      },
    ],
  },
}
