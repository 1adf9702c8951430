// The inside-the-model explainers on the Rotten Tomatoes test split for rt.train.minilm: raw attention,
// attention rollout, ALTI, Self-Attention Attribution and IBA (bottleneck after layer 4 of MiniLM's 6, with the
// `dataset` prior estimated on rt.download's training sentences). Each writes
// explanations/rt.explain.<method>.minilm.test/.
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;
local explain(method, explainer) = j.explain_test {
  name: 'rt.explain.' + method + '.minilm.test',
  explainer: { type: method } + explainer,
};

{
  jobs: [
    explain('raw_attention', {}),
    explain('rollout', {}),
    explain('alti', { measure: 'alti' }),
    explain('attattr', { steps: 20 }),
    explain('iba', { prior_data: 'rt.download' }),
  ],
}
