// What attention attribution is for (Hao et al. 2021) on Rotten Tomatoes with the minilm classifier: head pruning
// by attribution vs Taylor vs random, adversarial triggers, attribution trees, and IBA's per-layer view; then the
// first 5 test sentences explained with AttAttr and shown with their trees and layer flows on one page each.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.attattr.jsonnet
//   read logs/rt.prune_heads.minilm/table.md and logs/rt.triggers.minilm/table.md;
//   open visualizations/rt.visualize.attattr.minilm/index.html (or the tree and flow jobs' own index.html)
//
// Download and train are the minilm pipeline's jobs (skipped where they finished already).
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;
local tree = import '../rotten_tomatoes/attribution_tree.minilm.jsonnet';
local flow = import '../rotten_tomatoes/layer_flow.minilm.jsonnet';

local explain = j.explain_test {
  name: 'rt.explain.attattr.minilm.test5',
  explainer: { type: 'attattr', steps: 20 },
  limit: tree.limit,  // the first rows of the test split: the same idx as the trees and flows
};

{
  jobs: [
    j.download,
    j.train,
    import '../rotten_tomatoes/prune_heads.minilm.jsonnet',
    import '../rotten_tomatoes/triggers.minilm.jsonnet',
    tree,
    flow,
    explain,
    defaults {
      job: 'visualize',
      name: 'rt.visualize.attattr.minilm',
      explanations: [explain.name],
      trees: tree.name,
      layer_flow: flow.name,
      max_instances: null,
    },
  ],
}
