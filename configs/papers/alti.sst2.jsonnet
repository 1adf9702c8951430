// ALTI (Ferrando, Gállego and Costa-jussà, 2022, "Measuring the Mixing of Contextual Information in the
// Transformer", EMNLP), Table 2: comprehensiveness and sufficiency AOPC on SST-2 of ALTI against attention rollout
// and gradient methods, for RoBERTa and DistilBERT (the released checkpoints the paper's code loads).
//
//   python run_job.py configs/papers/alti.sst2.jsonnet                      # the paper's setting (needs the hub)
//   python run_job.py configs/papers/alti.sst2.jsonnet --ext-var standin=minilm   # offline stand-in
//   then read logs/alti.evaluate.<checkpoint>/table.md ("Paper: ..." section) or open summary.html
//
// Settings from the paper's code (mt-upc/transformer-contributions at 4f89039: src/utils_contributions.py,
// src/contributions.py, aupc.py, evaluation.ipynb): the first 1,000 sentences, the predicted class explained,
// tokens deleted (never [CLS]/[SEP]) at 1, 5, 10, 20, 50% with a running min (comprehensiveness) / max
// (sufficiency) started at the 0% point and the bins' sum divided by 6 (`eraser` with `alti: true`); IG with 100
// steps from a [MASK] baseline, aggregated per token by the L2 norm. The paper explains GLUE's unlabelled SST-2
// test split; attexp's download keeps labelled rows only, so SST-2's 872 validation sentences stand in for it.
// Not reproduced here: IG/G×I aggregated by mean(|·|), and GlobEnc (no attexp explainer computes them).
local defaults = import '../lib/defaults.libsonnet';
local papers = import '../lib/papers.libsonnet';

local prefix = 'alti';
local checkpoints = {
  roberta: 'textattack/roberta-base-SST-2',
  distilbert: 'distilbert/distilbert-base-uncased-finetuned-sst-2-english',
};
local setup = papers.setup(
  prefix,
  { type: 'huggingface', path: 'stanfordnlp/sst2', text: 'sentence', label: 'label',
    splits: { train: 'train', test: 'validation' } },
  checkpoints,
  download={ splits: { validation: 0.05 } },
);

// method: [attexp explainer, the paper's numbers (comp, suff) per checkpoint] -- evaluation.ipynb cell 15
// (rob_distil_results.csv, SST-2) and cell 13 (roberta_bin_results.csv, for ALTI-L2, RoBERTa only)
local methods = {
  alti: [{ type: 'alti', measure: 'alti' }, { roberta: [0.269, 0.057], distilbert: [0.332, 0.034] }],
  alti_l2: [{ type: 'alti', measure: 'alti_l2' }, { roberta: [0.230, 0.075] }],
  rollout: [{ type: 'rollout' }, { roberta: [0.076, 0.179], distilbert: [0.152, 0.147] }],
  grad_l2: [{ type: 'saliency', reduce: 'l2' }, { roberta: [0.190, 0.075], distilbert: [0.230, 0.066] }],
  ig_l2: [{ type: 'ig', n_steps: 100, baseline: 'mask', reduce: 'l2' },
          { roberta: [0.223, 0.074], distilbert: [0.295, 0.048] }],
  gxi_l2: [{ type: 'input_x_gradient', reduce: 'l2' }, { roberta: [0.187, 0.081], distilbert: [0.235, 0.065] }],
  lig: [{ type: 'lig', n_steps: 20 }, {}],  // not in the paper: attexp's default explainer, for comparison
};

local explain(checkpoint, method) = papers.explain(prefix, setup, checkpoint, method, methods[method][0], 1000);

local evaluate(checkpoint) = defaults {
  job: 'evaluate',
  name: prefix + '.evaluate.' + checkpoint + (if papers.standin != '' then '.' + papers.standin else ''),
  explanations: [explain(checkpoint, m).name for m in std.objectFields(methods)],
  // the paper's AOPC, and ERASER's; with --ext-var normalised=1 the normalised AOPC beside them
  metrics: [{ type: 'eraser', alti: true }, { type: 'eraser' }] + (if papers.normalised then [{ type: 'naopc' }] else []),
  random_floor: true,
  paper: {
    citation: 'Ferrando, Gállego and Costa-jussà (2022), Measuring the Mixing of Contextual Information in the Transformer, EMNLP',
    table: 'Table 2, SST-2, ' + checkpoint + ' (' + checkpoints[checkpoint] + ')',
    source: 'mt-upc/transformer-contributions@4f89039 evaluation.ipynb, stored outputs of cells 13 and 15',
    numbers: {
      [explain(checkpoint, m).name]: {
        comprehensiveness_alti: methods[m][1][checkpoint][0],
        sufficiency_alti: methods[m][1][checkpoint][1],
      }
      for m in std.objectFields(methods)
      if std.objectHas(methods[m][1], checkpoint)
    },
    note: if papers.standin == '' then 'SST-2 validation (872 sentences) for the unlabelled test split the paper explains'
          else 'offline stand-in: Rotten Tomatoes sentences and the ' + papers.standin + ' model fine-tuned on them, not '
               + checkpoints[checkpoint],
  },
};

{
  jobs: setup.jobs
        + papers.unique([explain(c, m) for c in std.objectFields(checkpoints) for m in std.objectFields(methods)])
        + [evaluate(c) for c in std.objectFields(checkpoints)]
        + [defaults {
          job: 'visualize',
          name: prefix + '.visualize.' + c + (if papers.standin != '' then '.' + papers.standin else ''),
          explanations: [explain(c, m).name for m in ['alti', 'ig_l2', 'rollout']],
          evaluation: evaluate(c).name,
          max_instances: 50,
        } for c in std.objectFields(checkpoints)],
}
