// A prompted causal LM as a sentiment classifier on Rotten Tomatoes: 'Review: {text}\nSentiment:' and the label
// words ' negative' / ' positive' (their next-token logits are the class scores), explained with every explainer
// that runs on it, evaluated against LIG and the model, and shown in summary.html (configs/lib/prompted.libsonnet).
// Offline there are no LM weights to read zero-shot (none ship on PyPI), so the default tunes a 2-layer Llama LM
// built from a config (random start, the WordPiece vocabulary of the tiny models) through its label words first.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.prompted.jsonnet
//   read logs/rt.evaluate.prompted/table.md; open visualizations/rt.visualize.prompted/summary.html
//
// With a network, an instruct model zero-shot: configs/pipelines/rotten_tomatoes.prompted.instruct.jsonnet.
local models = import '../lib/models.libsonnet';
local prompt = import '../lib/prompted.libsonnet';
prompt.pipeline(models.decoder { head: prompt.head() }, fine_tune=true)
