// F-Fidelity on Rotten Tomatoes with the tiny model (configs/lib/ffidelity.libsonnet, attexp/train/augment.py): the
// tiny classifier explained by LIG, saliency, input x gradient, occlusion, ALTI, raw attention and the random floor;
// a copy fine-tuned with random masking at ERASER's rates; ERASER, normalised AOPC and soft deletion measured on the
// original and on the copy, with the same explanations.
//
//   python run_job.py configs/pipelines/rotten_tomatoes.ffidelity.jsonnet
//   read logs/rt.evaluate.tiny.ffidelity.original/table.md and logs/rt.evaluate.tiny.ffidelity.masked/table.md
local ffidelity = import '../lib/ffidelity.libsonnet';
ffidelity.pipeline((import '../lib/rotten_tomatoes.libsonnet').tiny)
