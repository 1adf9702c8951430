// The Empirical-Explainer pipeline (Schwarzenberg et al. 2021) as named jobs, for one dataset and model:
//   download -> train -> explain (LIG on train, validation, test) -> distill -> explain (empirical, test)
//   -> evaluate (empirical vs LIG) -> visualize.
// Every stage config under configs/<dataset>/ picks one job from here; configs/pipelines/ run them all.
// Jobs refer to each other by name, never by path.
local defaults = import 'defaults.libsonnet';
local models = import 'models.libsonnet';

{
  // dataset: short name used in job names ("rt"); source: a download source; model: 'tiny' | 'minilm' | an object
  // train: extra train settings; explain_limits: instances explained per split (LIG is the expensive part).
  // variant: names the model in job names (default: the model's name in models.libsonnet).
  jobs(dataset, source, model='tiny', variant=null, train={}, explain_limits={ train: 2000, validation: 500, test: 500 },
       download={}, lig={}, distill={}, max_length=128)::
    local variant_name = if variant != null then variant else if std.type(model) == 'string' then model else 'custom';
    local model_source = if std.type(model) == 'string' then models[model] else model;
    local prefix = dataset + '.';
    local lig_explainer = { type: 'lig', n_steps: 20 } + lig;
    local explain(split) = defaults {
      job: 'explain',
      name: prefix + 'explain.lig.' + variant_name + '.' + split,
      model: prefix + 'train.' + variant_name,
      data: prefix + 'download',
      split: split,
      explainer: lig_explainer,
      batch_size: 16,
      max_length: max_length,
      limit: explain_limits[split],
    };
    {
      download: defaults {
        job: 'download',
        name: prefix + 'download',
        source: source,
      } + download,
      train: defaults {
        job: 'train',
        name: prefix + 'train.' + variant_name,
        data: prefix + 'download',
        model: model_source,
        max_length: max_length,
      } + train,
      explain_train: explain('train'),
      explain_validation: explain('validation'),
      explain_test: explain('test'),
      distill: defaults {
        job: 'distill',
        name: prefix + 'distill.' + variant_name,
        model: prefix + 'train.' + variant_name,
        train: prefix + 'explain.lig.' + variant_name + '.train',
        validation: prefix + 'explain.lig.' + variant_name + '.validation',
        max_length: max_length,
      } + distill,
      explain_empirical: explain('test') {
        name: prefix + 'explain.empirical.' + variant_name + '.test',
        explainer: { type: 'empirical', model: prefix + 'distill.' + variant_name },
        batch_size: 64,
      },
      evaluate: defaults {
        job: 'evaluate',
        name: prefix + 'evaluate.' + variant_name,
        explanations: [prefix + 'explain.empirical.' + variant_name + '.test', prefix + 'explain.lig.' + variant_name + '.test'],
        reference: prefix + 'explain.lig.' + variant_name + '.test',
        // agreement with LIG, and faithfulness to the model (ERASER, run on the explained classifier) against
        // the random floor the evaluate stage adds
        metrics: [{ type: 'mse' }, { type: 'spearman' }, { type: 'eraser' }, { type: 'f1' }, { type: 'cost' }],
      },
      visualize: defaults {
        job: 'visualize',
        name: prefix + 'visualize.' + variant_name,
        explanations: [prefix + 'explain.lig.' + variant_name + '.test', prefix + 'explain.empirical.' + variant_name + '.test'],
        evaluation: prefix + 'evaluate.' + variant_name,  // summary.html: the metric table and its plots
        max_instances: 50,
      },
    },

  // All jobs of `jobs(...)` in pipeline order.
  pipeline(j):: {
    jobs: [j.download, j.train, j.explain_train, j.explain_validation, j.explain_test, j.distill,
           j.explain_empirical, j.evaluate, j.visualize],
  },
}
