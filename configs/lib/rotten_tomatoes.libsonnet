// Rotten Tomatoes sentence polarity (Pang & Lee 2005; the source sentences of SST), 10,568 labelled
// sentences fetched offline from the vaderSentiment 3.3.2 source distribution on PyPI. No predefined
// splits: 80/10/10, stratified and seeded.
local empexp = import 'empexp.libsonnet';

{
  source: { type: 'packaged', corpus: 'rt_sentences' },
  tiny: empexp.jobs('rt', self.source, 'tiny', train={ epochs: 6, batch_size: 32, lr: 1e-3, patience: 2 },
                    distill={ epochs: 8, lr: 1e-3 }),
  // minilm's empirical explainers learn from LIG on every training sentence (8,454; about 2 hours on a 2-core CPU,
  // minutes on a GPU)
  minilm: empexp.jobs('rt', self.source, 'minilm', train={ epochs: 2, batch_size: 32, lr: 5e-5 },
                      distill={ epochs: 5, lr: 5e-5 },
                      explain_limits={ train: null, validation: 500, test: 500 }),
}
