// A prompted classifier through explain, evaluate and visualize on Rotten Tomatoes: a causal LM reads each sentence
// inside a template, and the next-token logits of ' negative' / ' positive' after it are the class scores
// (attexp/models/prompted.py). Every explainer attributes the sentence's tokens only (the template's are in the
// sequence the LM reads, never in the records); the inside-the-model explainers run over the whole prompt and are
// read back at the sentence.
//
// pipeline(model, sizes, variant, fine_tune): `model` a model source with a `head` (prompt.head below). With
// fine_tune, a train job first tunes the LM so that its label words classify (prompt-based fine-tuning, as
// PET/LM-BFF: every weight, cross-entropy over the label words' logits) and the explain jobs read that; without,
// the explain jobs read `model` as it is (zero-shot: a hub instruct model).
local defaults = import 'defaults.libsonnet';
local rt = import 'rotten_tomatoes.libsonnet';

local full = {
  download: {},
  train: { epochs: 4, batch_size: 32, lr: 1e-3, patience: 2 },
  limit: 200,
  lig: { n_steps: 20 },
  quiet: {},
  samples: { lime: 200, kernel_shap: 200, shapley_sampling: 10, gradient_shap: 20, ig: 20, attattr: 20 },
};

{
  full: full,
  // The template and label words; the class names are the dataset's (rt: negative, positive).
  head(template='Review: {text}\nSentiment:'):: {
    type: 'label_words',
    template: template,
    labels: { negative: ' negative', positive: ' positive' },
  },
  pipeline(model, sizes={}, variant='prompted', fine_tune=true):: {
    local s = full + sizes,
    local classifier = if fine_tune then 'rt.train.' + variant else model,
    local test(method, explainer) = defaults + s.quiet {
      job: 'explain',
      name: 'rt.explain.' + method + '.' + variant + '.test',
      model: classifier,
      data: 'rt.download',
      split: 'test',
      batch_size: 16,
      max_length: 96,
      limit: s.limit,
      explainer: { type: method } + explainer,
    },
    local explained = [
      test('lig', s.lig),
      test('ig', { n_steps: s.samples.ig }),
      test('saliency', {}),
      test('input_x_gradient', {}),
      test('deeplift', {}),
      test('gradient_shap', { n_samples: s.samples.gradient_shap }),
      test('occlusion', {}),
      test('feature_ablation', {}),
      test('lime', { n_samples: s.samples.lime }),
      test('kernel_shap', { n_samples: s.samples.kernel_shap }),
      test('shapley_sampling', { n_samples: s.samples.shapley_sampling }),
      test('raw_attention', {}),
      test('rollout', {}),
      test('alti', {}),
      test('attattr', { steps: s.samples.attattr }),
      test('iba', { prior_data: 'rt.download', prior_size: 200 }),
      test('random', {}),
    ],
    local names = [e.name for e in explained],
    jobs: [
      defaults { job: 'download', name: 'rt.download', source: rt.source } + s.download,
    ] + (if fine_tune then [
      defaults {
        job: 'train',
        name: 'rt.train.' + variant,
        data: 'rt.download',
        model: model,
        max_length: 96,
      } + s.train,
    ] else []) + explained + [
      defaults {
        job: 'evaluate',
        name: 'rt.evaluate.' + variant,
        explanations: names,
        reference: 'rt.explain.lig.' + variant + '.test',
        // naopc and soft: normalised AOPC and soft deletion (attexp/evaluate/normalised.py, soft.py); decoder
        // vocabularies have no [MASK], so naopc pads
        metrics: [{ type: 'spearman' }, { type: 'eraser' }, { type: 'naopc', perturbation: 'pad' }, { type: 'soft' },
                  { type: 'cost' }],
      },
      defaults {
        job: 'visualize',
        name: 'rt.visualize.' + variant,
        explanations: ['rt.explain.' + m + '.' + variant + '.test' for m in ['lig', 'alti', 'occlusion']],
        evaluation: 'rt.evaluate.' + variant,
        max_instances: 50,
      },
    ],
  },
}
