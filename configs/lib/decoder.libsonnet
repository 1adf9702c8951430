// A decoder classifier (the Llama layout: RMSNorm, rotary positions, grouped-query attention, causal, last-token head)
// through every stage: fine-tune on Rotten Tomatoes, explain the test split with every explainer that runs on it
// (the inside-the-model ones read the Llama-style layout of attexp/models/layouts.py), distil LIG into a `shared`,
// a `student` and a `heads` empirical explainer, evaluate every explanation against LIG and the model, summary.html, and the
// model analyses (head pruning, triggers, IBA's layer flow).
//
// pipeline(model, sizes, variant): `model` a model source (models.libsonnet's `decoder`, or a hub decoder such as
// models.hub('Qwen/Qwen2.5-0.5B') where a network exists); `sizes` shrinks it for tests (or changes the training:
// `train: { lora: {...} }`); `variant` names the jobs (rt.train.<variant>, rt.evaluate.<variant>, ...).
local defaults = import 'defaults.libsonnet';
local empexp = import 'empexp.libsonnet';
local rt = import 'rotten_tomatoes.libsonnet';
local teachers = import 'teachers.libsonnet';

local full = {
  download: {},
  train: { epochs: 6, batch_size: 32, lr: 1e-3, patience: 2 },
  explain_limits: { train: 2000, validation: 500, test: 200 },
  lig: { n_steps: 20 },
  distill: { epochs: 8, lr: 1e-3 },
  quiet: {},
  analysis: { importance_size: 200, source_size: 200, max_triggers: 20, flow_limit: 5, steps: 20 },
  samples: { lime: 200, kernel_shap: 200, shapley_sampling: 10, gradient_shap: 20, ig: 20, attattr: 20 },
};

{
  full: full,
  pipeline(model, sizes={}, variant='decoder'):: {
    local s = full + sizes,
    local j = empexp.jobs('rt', rt.source, model, variant=variant, train=s.train, explain_limits=s.explain_limits,
                          download=s.download, lig=s.lig, distill=s.distill),
    local test(method, explainer) = j.explain_test + s.quiet {
      name: 'rt.explain.' + method + '.' + variant + '.test',
      explainer: { type: method } + explainer,
    },
    local distill(mode, extra) = j.distill + s.quiet { name: 'rt.distill.' + mode + '.' + variant, mode: mode } + extra,
    local shared = distill('shared', {}),
    local student = distill('student', { student_layers: 1 }),
    // the heads design (attexp/distill/empirical/heads.py), as the teachers pipeline distils it: on this decoder it
    // agrees with LIG-20 as the shared branch does, from a map of a few thousand numbers (benchmarks/README.md, 3.6)
    local heads = distill('heads', teachers.designs.heads { epochs: s.distill.epochs }),
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
      test('iba', { prior_data: j.download.name }),
      test('empirical.shared', {}) { explainer: { type: 'empirical', model: shared.name } },
      test('empirical.student', {}) { explainer: { type: 'empirical', model: student.name } },
      test('empirical.heads', {}) { explainer: { type: 'empirical', model: heads.name } },
      test('random', {}),
    ],
    local names = [e.name for e in explained],
    jobs: [
      j.download,
      j.train,
      j.explain_train + s.quiet,
      j.explain_validation + s.quiet,
      shared,
      student,
      heads,
    ] + explained + [
      defaults {
        job: 'evaluate',
        name: 'rt.evaluate.' + variant,
        explanations: names,
        reference: 'rt.explain.lig.' + variant + '.test',
        metrics: [{ type: 'spearman' }, { type: 'eraser' }, { type: 'cost' }],
      },
      defaults {
        job: 'visualize',
        name: 'rt.visualize.' + variant,
        explanations: ['rt.explain.' + m + '.' + variant + '.test' for m in ['lig', 'alti', 'attattr']],
        evaluation: 'rt.evaluate.' + variant,
        max_instances: 50,
      },
      defaults {
        job: 'head_pruning',
        name: 'rt.prune_heads.' + variant,
        model: j.train.name,
        data: j.download.name,
        importance_split: 'validation',
        importance_size: s.analysis.importance_size,
        eval_split: 'test',
        steps: s.analysis.steps,
      } + s.quiet,
      defaults {
        job: 'triggers',
        name: 'rt.triggers.' + variant,
        model: j.train.name,
        data: j.download.name,
        source_split: 'train',
        source_size: s.analysis.source_size,
        eval_split: 'test',
        steps: s.analysis.steps,
        max_triggers: s.analysis.max_triggers,
      } + s.quiet,
      defaults {
        job: 'layer_flow',
        name: 'rt.layer_flow.' + variant,
        model: j.train.name,
        data: j.download.name,
        split: 'test',
        limit: s.analysis.flow_limit,
        iba: { type: 'iba', prior_data: j.download.name },
      },
    ],
  },
}
