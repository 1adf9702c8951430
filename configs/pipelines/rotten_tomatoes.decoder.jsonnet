// A decoder classifier through every stage on Rotten Tomatoes: a small Llama (random start; no decoder weights are
// on PyPI) fine-tuned, explained with every explainer (the gradient and perturbation families, raw attention,
// rollout, ALTI, AttAttr, IBA, shared and student empirical explainers), evaluated against LIG and the model, shown
// in summary.html, and analysed (head pruning, triggers, layer flow). Jobs in configs/lib/decoder.libsonnet.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.decoder.jsonnet
//   read logs/rt.evaluate.decoder/table.md; open visualizations/rt.visualize.decoder/summary.html
//
// With a network, a real decoder (jobs[1] is the train job; an override's value is JSON):
//   python run_job.py configs/pipelines/rotten_tomatoes.decoder.jsonnet \
//       '--jobs.1.model={"type": "hub", "name": "Qwen/Qwen2.5-0.5B"}'
// It needs a pad token: Qwen's tokenizer has one, and a config without a pad id takes the tokenizer's.
local decoder = import '../lib/decoder.libsonnet';
decoder.pipeline('decoder')
