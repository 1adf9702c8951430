// Qwen2.5-0.5B-Instruct read zero-shot as a sentiment classifier (needs the Hugging Face hub): its chat format
// written out as the template, the label words ' negative' / ' positive' after the assistant's turn begins, bf16
// weights; every explainer, evaluate and summary.html as in rotten_tomatoes.prompted.jsonnet. Another instruct model
// is another `name` and its own chat format (Llama-3: '<|start_header_id|>user<|end_header_id|>\n\n...').
//
//   python run_job.py configs/pipelines/rotten_tomatoes.prompted.instruct.jsonnet
local prompt = import '../lib/prompted.libsonnet';
local chat = '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n' +
             'Is the sentiment of this movie review negative or positive? Answer with one word.\n\n' +
             'Review: {text}<|im_end|>\n<|im_start|>assistant\nThe sentiment is';
prompt.pipeline({
  type: 'hub',
  name: 'Qwen/Qwen2.5-0.5B-Instruct',
  dtype: 'bfloat16',
  head: prompt.head(chat),
}, variant='prompted.instruct', fine_tune=false)
