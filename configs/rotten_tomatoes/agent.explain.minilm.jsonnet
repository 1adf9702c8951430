// AttExplainer (Niu et al., IJCAI 2022): train an explanation agent on the MiniLM Rotten Tomatoes classifier.
// The agent masks tokens one at a time, watching only the classifier's attention, until p(predicted class) has
// dropped by 0.8. Games are played on the training split, 32 instances at a time; the run stops after
// `max_seconds` of training (sized for about 25 minutes of one CPU core; set OMP_NUM_THREADS=1) or `episodes`
// game batches. Paper defaults for the agent (gamma 0.9, lr 1e-4, batch 256, target sync 100) except, to make more
// of a short CPU budget, one learn step every game step instead of every 10th and games of at most 20 steps instead
// of 100 (more games, hence more first moves, per victim forward; the explainer keeps the 20-step limit).
//
//   OMP_NUM_THREADS=1 python run_job.py configs/rotten_tomatoes/agent.explain.minilm.jsonnet
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;

defaults {
  job: 'train_agent',
  name: 'rt.agent.explain.minilm',
  model: j.train.name,
  data: j.download.name,
  split: 'train',
  batch_size: 32,
  episodes: 100000,
  max_seconds: 1500,
  max_length: 64,
  game: { task: 'explain', done_threshold: 0.8, max_steps: 20, bins: 32 },
  agent: { learn_every: 1 },
  checkpoint_every: 10,
  log_every: 10,
}
