// Shared pieces of the paper reproductions in configs/papers/. Each pipeline runs one table of a seed paper on
// the paper's hub dataset and released fine-tuned checkpoints (needs the hub; validates offline with --dry-run),
// and carries the paper's numbers in its evaluate job's `paper:` block, so table.md, metrics.json and
// summary.html put paper, measured and difference side by side.
//
// `--ext-var standin=tiny` or `--ext-var standin=minilm` runs the same jobs offline instead: the Rotten Tomatoes
// sentences (packaged) for the dataset and the tiny BERT or MiniLM, fine-tuned on them by a train job, for each
// checkpoint; `tiny` with a few dozen instances (the tests run it), `minilm` with the paper's sample count
// capped at RT's 1,057 test sentences. The table keeps its shape, so a stand-in run shows how far an offline
// setting lands from the paper's numbers.
//
// `--ext-var normalised=1` adds Edin et al.'s normalised AOPC (`naopc`, attexp/evaluate/normalised.py) beside the
// AOPC a reproduction reports: its bounds cost about 3,000 perturbed inputs per instance, hours for a table of
// 1,000 instances on a CPU, so it is off unless asked for.
local defaults = import 'defaults.libsonnet';
local models = import 'models.libsonnet';
local rt = import 'rotten_tomatoes.libsonnet';

{
  standin: std.extVar('standin'),
  normalised: std.extVar('normalised') != '',
  assert std.member(['', 'tiny', 'minilm'], self.standin) : "ext var standin must be '', 'tiny' or 'minilm'",

  // The data and classifier jobs of a reproduction: the paper's hub download, or the stand-in's download and its
  // train job. `checkpoints`: {short name: hub model id}. Returns {jobs, data, model(name), limit(n)}.
  // `finetune`: train settings when the paper released no fine-tuned checkpoint: each checkpoint is then the hub
  // model a train job fine-tunes as the paper did (`<prefix>.train.<name>`).
  setup(prefix, source, checkpoints, download={}, finetune=null):: (
    local standin = $.standin;
    local stand = if standin == 'tiny' then models.tiny else models.minilm;
    local train = defaults {
      job: 'train',
      name: prefix + '.train.' + standin,
      data: prefix + '.download',
      model: stand,
      max_length: 128,
    // tiny: 2,000 sentences x 4 epochs is the least that learns (about 0.67 test accuracy; 400 x 2 stayed at 0.5)
    } + (if standin == 'tiny' then { epochs: 4, batch_size: 32, lr: 1e-3, progress: false }
         else { epochs: 2, batch_size: 32, lr: 5e-5 });
    local finetuned(name) = defaults {
      job: 'train',
      name: prefix + '.train.' + name,
      data: prefix + '.download',
      model: models.hub(checkpoints[name]),
    } + finetune;
    if standin == '' then {
      jobs: [defaults { job: 'download', name: prefix + '.download', source: source } + download]
            + (if finetune == null then [] else [finetuned(name) for name in std.objectFields(checkpoints)]),
      data: prefix + '.download',
      model(name):: if finetune == null then models.hub(checkpoints[name]) else finetuned(name).name,
      limit(n):: n,
    } else {
      jobs: [defaults {
        job: 'download',
        name: prefix + '.download',
        source: rt.source,
        [if standin == 'tiny' then 'limit']: { train: 2000, validation: 50, test: 40 },
      }, train],
      data: prefix + '.download',
      // one stand-in classifier for every checkpoint: the rows of each checkpoint keep their names
      model(name):: train.name,
      limit(n):: if standin == 'tiny' then 40 else if n == null then 1057 else std.min(n, 1057),
    }
  ),

  // An explain job of one method on one checkpoint. On a stand-in every checkpoint is the same stand-in model, so
  // the job is named after the stand-in and shared by the checkpoints' tables (`unique` drops the repeats).
  explain(prefix, setup, checkpoint, method, explainer, limit, split='test'):: defaults {
    job: 'explain',
    name: prefix + '.explain.' + method + '.' + (if $.standin == '' then checkpoint else $.standin),
    model: setup.model(checkpoint),
    data: setup.data,
    split: split,
    explainer: explainer,
    limit: setup.limit(limit),
    max_length: 128,
    progress: $.standin == '',
  },

  // Jobs with the same name once (the first of each name kept, order otherwise unchanged).
  unique(jobs):: std.foldl(
    function(kept, job) if std.member([k.name for k in kept], job.name) then kept else kept + [job], jobs, []
  ),
}
