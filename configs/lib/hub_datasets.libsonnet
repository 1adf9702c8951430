// The emp-exp datasets, loaded from the Hugging Face hub with `datasets.load_dataset` (needs a network;
// these configs validate offline with --dry-run). emp-exp explains BERT on IMDB, SNLI and AG News.
local empexp = import 'empexp.libsonnet';
local models = import 'models.libsonnet';
local bert = models.hub('bert-base-uncased');

{
  imdb: empexp.jobs(
    'imdb',
    { type: 'huggingface', path: 'stanfordnlp/imdb', splits: { train: 'train', test: 'test' } },
    bert, variant='bert', train={ epochs: 2, batch_size: 16, lr: 2e-5 }, max_length=512,
    download={ splits: { validation: 0.1 } },
  ),
  snli: empexp.jobs(
    'snli',
    { type: 'huggingface', path: 'stanfordnlp/snli', text: 'premise', text_pair: 'hypothesis',
      splits: { train: 'train', validation: 'validation', test: 'test' } },
    bert, variant='bert', train={ epochs: 2, batch_size: 32, lr: 2e-5 },
  ),
  ag_news: empexp.jobs(
    'ag_news',
    { type: 'huggingface', path: 'fancyzhx/ag_news', splits: { train: 'train', test: 'test' } },
    bert, variant='bert', train={ epochs: 2, batch_size: 32, lr: 2e-5 },
    download={ splits: { validation: 0.05 } },
  ),
}
