// Self-Attention Attribution (Hao, Dong, Wei and Xu, 2021, "Self-Attention Attribution: Interpreting Information
// Interactions Inside Transformer", AAAI): head pruning by attribution against the Taylor baseline (and a random
// order, mean of 5 seeds with its band) on MNLI, SST-2, MRPC and RTE (Sec. 4.1, the pruning figure), and the
// adversarial-trigger attack on MNLI (Sec. 4.3).
//
//   python run_job.py configs/papers/attattr.glue.jsonnet                       # the paper's setting (hub, GPU)
//   python run_job.py configs/papers/attattr.glue.jsonnet --ext-var standin=minilm   # offline stand-in
//   then read logs/attattr.prune_heads.<task>*/table.md, logs/attattr.triggers.mnli*/table.md
//
// Settings from the paper's code (YRdddream/attattr at f5a7396: examples/prune_head_with_attr.py,
// prune_head_with_taylor.py, run_adver_connection.py, run_adver_evaluate.py, run_classifier_orig.py):
// bert-base-cased fine-tuned per task (no checkpoint on the hub; the repo's defaults: lr 5e-5, 3 epochs, batch
// 32, 128 tokens, warmup 0.1, seed 42); head importance from the first 200 dev examples with the gold label,
// m = 20 Riemann steps from a zero baseline; accuracy on the whole dev set (MNLI: dev_matched) with 0, 10, ...,
// 100% of the 144 heads masked, no retraining. The code's Taylor baseline differentiates the sum of the logits
// (not a loss) and takes |.| per token; the paper names Michel et al.'s criterion (gold-label cross-entropy, |.|
// per instance), the default: the `.taylor_official` jobs add the code's. Triggers: patterns from the first 500 training examples, kept
// above 0.02, inserted into every dev example; accuracy per gold class. GLUE's test labels are hidden, so
// attexp's `test` is the dev set (as in the paper) and a slice of train is the fine-tuning's validation.
// The pruning curves are figures whose values could not be read; the one number found is the trigger attack's on
// MNLI (second-hand: a reproducibility summary quoting the paper).
local defaults = import '../lib/defaults.libsonnet';
local papers = import '../lib/papers.libsonnet';

local prefix = 'attattr';
local standin = papers.standin;
local suffix = if standin == '' then '' else '.' + standin;
local citation = 'Hao, Dong, Wei and Xu (2021), Self-Attention Attribution: Interpreting Information Interactions '
                 + 'Inside Transformer, AAAI';
local standin_note = if standin == '' then '' else '; offline stand-in: Rotten Tomatoes sentences and the '
                                                   + standin + ' model fine-tuned on them, not bert-base-cased';
local glue(task, dev, text, text_pair=null) = {
  type: 'huggingface', path: 'nyu-mll/glue', name: task, text: text, label: 'label',
  [if text_pair != null then 'text_pair']: text_pair,
  splits: { train: 'train', test: dev },
};
local tasks = {
  mnli: glue('mnli', 'validation_matched', 'premise', 'hypothesis'),
  sst2: glue('sst2', 'validation', 'sentence'),
  mrpc: glue('mrpc', 'validation', 'sentence1', 'sentence2'),
  rte: glue('rte', 'validation', 'sentence1', 'sentence2'),
};
local finetune = { epochs: 3, batch_size: 32, lr: 5e-5, warmup_ratio: 0.1, max_length: 128, seed: 42 };
// one setup per task; on a stand-in every task is the RT stand-in, so its jobs and the pruning run once
// (`unique` keeps the first of each name)
local setups = {
  [task]: papers.setup(if standin == '' then prefix + '.' + task else prefix, tasks[task],
                       { [task]: 'google-bert/bert-base-cased' },
                       download={ splits: { validation: 0.02 } }, finetune=finetune)
  for task in std.objectFields(tasks)
};
local analysis(task) = defaults {
  model: setups[task].model(task),
  data: setups[task].data,
  steps: 20,
  batch_size: 8,
  max_length: 128,
  progress: standin == '',
  [if standin != '' then 'eval_limit']: if standin == 'tiny' then 40 else 500,
};
local prune(task) = analysis(task) {
  job: 'head_pruning',
  name: prefix + '.prune_heads.' + (if standin == '' then task else standin),
  importance_split: 'test',  // the first 200 dev examples, as prune_head_with_attr.py takes them
  importance_size: if standin == 'tiny' then 20 else 200,
  eval_split: 'test',
  random_seeds: 5,
  paper: {
    citation: citation,
    table: 'Sec. 4.1, the head-pruning figure (' + (if standin == '' then task else 'MNLI, SST-2, MRPC, RTE')
           + ': accuracy by fraction of heads pruned)',
    source: 'settings: YRdddream/attattr@f5a7396 examples/prune_head_with_attr.py, prune_head_with_taylor.py',
    note: "the figure's values could not be read (the repository holds no result files)" + standin_note,
  },
};
// the Taylor baseline as the paper's code computes it (the gradient of the sum of the logits, |.| per token; the
// paper describes Michel et al.'s cross-entropy criterion, which `prune` uses): its order only, no attribution
local prune_official(task) = prune(task) {
  name: super.name + '.taylor_official',
  orders: ['taylor'],
  taylor: 'official',
};
local triggers = analysis('mnli') {
  job: 'triggers',
  name: prefix + '.triggers.mnli' + suffix,
  source_split: 'train',
  source_size: if standin == 'tiny' then 40 else 500,
  eval_split: 'test',
  threshold: if standin == 'tiny' then 0 else 0.02,  // the tiny stand-in's patterns are faint
  max_triggers: if standin == '' then null else 10,
  top: 10,
  paper: {
    citation: citation,
    table: 'Sec. 4.3, adversarial attack on MNLI: one pattern in the premise drops entailment accuracy from '
           + '82.87% to 0.8%',
    source: 'second-hand: the reproducibility summary at ri.k117.org quoting the paper (the paper text was not '
            + 'readable here)',
    // rank 1 = the trigger with the largest drop; on a stand-in, its drop on the class it hurts most
    numbers: { '1': { [if standin == '' then 'drop_entailment' else 'drop']: 0.8287 - 0.008 } },
    note: 'the best trigger of this run against the paper\'s reported example' + standin_note,
  },
};

{
  jobs: papers.unique(std.flattenArrays([setups[t].jobs for t in std.objectFields(tasks)]))
        + papers.unique([prune(t) for t in std.objectFields(tasks)])
        + papers.unique([prune_official(t) for t in std.objectFields(tasks)])
        + [triggers],
}
