// The full report on Rotten Tomatoes with the minilm model: the Empirical-Explainer pipeline, then the test split
// explained with every registered explainer, scored for faithfulness (ERASER comprehensiveness / sufficiency and
// AOPC, ALTI's variant, ferret's AOPC, IBA's degradation test, tau-LOO, log-odds), agreement with LIG and cost,
// and rendered as heatmaps with a summary page (metric table, deletion curves, cost-vs-faithfulness plots).
//
//   python run_job.py configs/pipelines/rotten_tomatoes.report.jsonnet
//   open visualizations/rt.report.minilm/summary.html; read logs/rt.evaluate.report.minilm/table.md
//
// `explainers` below must name every registered explainer (tests/test_faithfulness.py checks it against the
// registry): add a new explainer here with report settings when you register it. `random` is the floor row.
local defaults = import '../lib/defaults.libsonnet';
local empexp = import '../lib/empexp.libsonnet';
local rt = import '../lib/rotten_tomatoes.libsonnet';

local variant = 'minilm';
local j = rt[variant];  // download, train, LIG on train/validation/test, distill, empirical on test
local test_limit = 500;
local agent = import '../rotten_tomatoes/agent.explain.minilm.jsonnet';  // AttExplainer's explanation agent

// Explainer settings for the report; `null` marks the two whose explain jobs come from the Empirical-Explainer
// pipeline (`lig` on the test split is also the agreement reference; `empirical` needs its distill job).
local explainers = {
  lig: null,
  empirical: null,
  random: { type: 'random' },
  ig: { type: 'ig', n_steps: 20 },
  saliency: { type: 'saliency' },
  input_x_gradient: { type: 'input_x_gradient' },
  deeplift: { type: 'deeplift' },
  gradient_shap: { type: 'gradient_shap', n_samples: 20 },
  occlusion: { type: 'occlusion', window: 1 },
  feature_ablation: { type: 'feature_ablation' },
  shapley_sampling: { type: 'shapley_sampling', n_samples: 25 },
  lime: { type: 'lime', n_samples: 100 },
  kernel_shap: { type: 'kernel_shap', n_samples: 100 },
  raw_attention: { type: 'raw_attention' },
  rollout: { type: 'rollout' },
  alti: { type: 'alti' },
  attattr: { type: 'attattr', steps: 20 },
  iba: { type: 'iba', prior_data: j.download.name },
  attexplainer: { type: 'attexplainer', agent: agent.name },  // needs the train_agent job below
};

local explain_job(name, explainer) = j.explain_test {
  name: 'rt.explain.' + name + '.' + variant + '.test',
  explainer: explainer,
  limit: test_limit,
  batch_size: 16,
};
local extra = [explain_job(name, explainers[name]) for name in std.objectFields(explainers) if explainers[name] != null];
local lig_test = j.explain_test { limit: test_limit };
local empirical_test = j.explain_empirical { limit: test_limit };
local explained = [lig_test.name, empirical_test.name] + [job.name for job in extra];

local evaluate = defaults {
  job: 'evaluate',
  name: 'rt.evaluate.report.' + variant,
  explanations: explained,
  reference: lig_test.name,
  model: j.train.name,
  metrics: [
    { type: 'eraser' },
    { type: 'eraser', alti: true },
    { type: 'ferret_aopc' },
    { type: 'degradation' },
    { type: 'tau_loo' },
    { type: 'log_odds' },
    { type: 'spearman' },
    { type: 'kendall' },
    { type: 'topk_overlap', k: 5 },
    { type: 'f1' },
    { type: 'cost' },
  ],
};

local visualize = defaults {
  job: 'visualize',
  name: 'rt.report.' + variant,
  explanations: explained,
  evaluation: evaluate.name,
  max_instances: 50,
  merge_subwords: true,
};

{
  jobs: [j.download, j.train, j.explain_train, j.explain_validation, lig_test, j.distill, empirical_test, agent]
        + extra + [evaluate, visualize],
}
