// Explanations learned from cheap teachers (configs/lib/teachers.libsonnet) for the decoder classifier of
// rotten_tomatoes.decoder.jsonnet (a 2-layer Llama built from a config, fine-tuned on RT; its train job is shared
// with that pipeline): the same teachers, budget and designs as the MiniLM run, scored on 200 test sentences.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.teachers.decoder.jsonnet
//   logs/rt.evaluate.teachers.decoder/table.md and plots/teacher_cost_vs_spearman.png
local decoder = import '../lib/decoder.libsonnet';
local empexp = import '../lib/empexp.libsonnet';
local models = import '../lib/models.libsonnet';
local rt = import '../lib/rotten_tomatoes.libsonnet';
local teachers = import '../lib/teachers.libsonnet';
local j = empexp.jobs('rt', rt.source, models.decoder, variant='decoder', train=decoder.full.train,
                      explain_limits=decoder.full.explain_limits);
{ jobs: teachers.pipeline(j, 'decoder', fraction=0.2).jobs }
