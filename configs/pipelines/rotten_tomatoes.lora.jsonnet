// A LoRA-tuned decoder classifier through every stage on Rotten Tomatoes: the small Llama of the decoder pipeline
// (random start; no decoder weights are on PyPI), its weights frozen and LoRA adapters (r 8 on every linear layer)
// plus the score head trained (peft), explained with every explainer that runs on it (the adapter is loaded over its
// base and merged), distilled, evaluated against LIG and the model, shown in summary.html, and analysed. The model
// artifact models/rt.train.lora/model/ is a peft adapter folder; the tiny base is saved beside it in base/.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.lora.jsonnet
//   read logs/rt.evaluate.lora/table.md; open visualizations/rt.visualize.lora/summary.html
//
// With a network, LoRA over a real decoder in bf16 (jobs[1] is the train job; an override's value is JSON):
//   python run_job.py configs/pipelines/rotten_tomatoes.lora.jsonnet \
//       '--jobs.1.model={"type": "hub", "name": "Qwen/Qwen2.5-0.5B", "dtype": "bfloat16"}'
local decoder = import '../lib/decoder.libsonnet';
decoder.pipeline('decoder', {
  // adapters learn with a larger step than full fine-tuning
  train: decoder.full.train { lr: 5e-3, lora: { r: 8, alpha: 16, dropout: 0.0, target_modules: 'all-linear' } },
}, variant='lora')
