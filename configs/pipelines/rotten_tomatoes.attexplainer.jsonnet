// AttExplainer (Niu et al., IJCAI 2022) on the MiniLM Rotten Tomatoes classifier: train an explanation agent and
// an attack agent, play them on the test split, and compare them in the masking game with a random masking
// policy and Captum's Feature Ablation, Occlusion and KernelSHAP at comparable query budgets (the agents use at
// most 1 + 20 victim queries; Feature Ablation n + 1, Occlusion about n, KernelSHAP 25).
//
//   OMP_NUM_THREADS=1 python run_job.py configs/pipelines/rotten_tomatoes.attexplainer.jsonnet
//   read logs/rt.ax.evaluate.minilm/table.md
//
// The masking game (attexp.evaluate.masking): `positive` masks every token with a positive score at once (the
// paper's way for its Captum baselines; for the agents, exactly the tokens they left masked); `sequential` masks
// the positively scored tokens one at a time by score until the goal is reached, which for the `random` row is the
// random masking policy. success@B: success with at most a fraction B of the tokens masked, the comparison
// "at equal or fewer masked tokens". Columns end in _attack for the attack task (prediction flipped) and _seq for
// the sequential mode; asr_attack is the attack success rate over the instances classified correctly at first.
local defaults = import '../lib/defaults.libsonnet';
local j = (import '../lib/rotten_tomatoes.libsonnet').minilm;
local agent_explain = import '../rotten_tomatoes/agent.explain.minilm.jsonnet';
local agent_attack = import '../rotten_tomatoes/agent.attack.minilm.jsonnet';
// not the paper's: the explanation agent rewarded for the change of delta_p (+10 at the goal) instead of its level
local agent_difference = agent_explain { name: 'rt.agent.explain.difference.minilm', game+: { reward: 'difference' } };
local limit = 200;

local explain(name, explainer, batch_size=16) = j.explain_test {
  name: 'rt.ax.' + name + '.minilm.test',
  explainer: explainer,
  limit: limit,
  batch_size: batch_size,
};
local explained = [
  explain('attexplainer.explain', { type: 'attexplainer', agent: agent_explain.name }, 32),
  explain('attexplainer.attack', { type: 'attexplainer', agent: agent_attack.name }, 32),
  explain('attexplainer.difference', { type: 'attexplainer', agent: agent_difference.name }, 32),
  explain('random', { type: 'random' }),
  explain('feature_ablation', { type: 'feature_ablation', baseline: 'mask' }),
  explain('occlusion', { type: 'occlusion', window: 3, baseline: 'mask' }),
  explain('kernel_shap', { type: 'kernel_shap', n_samples: 25, baseline: 'mask', seed: 0 }),
];
local game(task, mode) = {
  type: 'masking_game',
  task: task,
  mode: mode,
  done_threshold: agent_explain.game.done_threshold,
  max_steps: agent_explain.game.max_steps,
  budgets: [0.1, 0.2, 0.3],
};

local evaluate = defaults {
  job: 'evaluate',
  name: 'rt.ax.evaluate.minilm',
  explanations: [job.name for job in explained],
  model: j.train.name,
  metrics: [
    game('explain', 'positive'),
    game('explain', 'sequential'),
    game('attack', 'positive'),
    game('attack', 'sequential'),
    { type: 'cost' },
  ],
  batch_size: 64,
};

{
  // download and train are skipped where they have finished with the same config
  jobs: [j.download, j.train, agent_explain, agent_attack, agent_difference] + explained + [evaluate],
}
