// Explain a classifier someone else fine-tuned, as it is: DistilBERT fine-tuned on SST-2 (the model of ferret's
// first example), from the Hugging Face hub, on the Rotten Tomatoes test sentences (the source sentences of SST,
// same labels: 0 negative, 1 positive). No train job: the explain jobs read the model through a model source,
// and its class names come from its config's id2label.
//   download RT -> explain (LIG, occlusion, ALTI) -> evaluate (ERASER against the random floor) -> visualize
// Needs the hub for the model (validates offline with --dry-run). For a model in a folder of your own, use
// model: { type: 'local', path: '/path/to/save_pretrained/folder' } instead.
local defaults = import '../lib/defaults.libsonnet';
local rt = import '../lib/rotten_tomatoes.libsonnet';

local model = { type: 'hub', name: 'distilbert/distilbert-base-uncased-finetuned-sst-2-english', revision: 'main' };
local explain(explainer, name) = defaults {
  job: 'explain',
  name: 'rt.explain.' + name + '.distilbert-sst2',
  model: model,
  data: 'rt.download',
  split: 'test',
  explainer: explainer,
  limit: 200,
};
local explainers = [
  explain({ type: 'lig', n_steps: 20 }, 'lig'),
  explain({ type: 'occlusion' }, 'occlusion'),
  explain({ type: 'alti' }, 'alti'),
];
{
  jobs: [defaults { job: 'download', name: 'rt.download', source: rt.source }] + explainers + [
    defaults {
      job: 'evaluate',
      name: 'rt.evaluate.distilbert-sst2',
      explanations: [e.name for e in explainers],
      metrics: [{ type: 'eraser' }, { type: 'f1' }, { type: 'cost' }],
    },
    defaults {
      job: 'visualize',
      name: 'rt.visualize.distilbert-sst2',
      explanations: [e.name for e in explainers],
      evaluation: 'rt.evaluate.distilbert-sst2',
      max_instances: 50,
    },
  ],
}
