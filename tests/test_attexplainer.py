"""AttExplainer (Niu et al., IJCAI 2022): attention features, the masking game, the DQN agent, the train_agent job,
the `attexplainer` explainer and the masking-game metric, on tiny models built here.

The learning test uses a tiny BERT trained for a few seconds on synthetic sentences whose label is whether the
word "good" occurs: its decision hangs on that one token, so an agent that learned anything masks it first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_bert, word_tokenizer

from attexp.config.hashing import config_hash
from attexp.distill.attexplainer import (
    Agent,
    AgentSettings,
    GameSettings,
    MaskingGame,
    Observation,
    PrioritizedReplay,
    QNetwork,
    Transition,
    Victim,
    attention_features,
    feature_size,
    play,
    start_game,
)
from attexp.distill.attexplainer.job import TrainAgentConfig
from attexp.distill.attexplainer.training import train as training_train
from attexp.io.artifacts import MANIFEST, new_manifest
from attexp.io.files import read_json, read_jsonl, write_json, write_jsonl
from attexp.io.records import CLASSIFIER, DATASET
from attexp.models.inputs import Batch, pad_features, structural_positions, tokenize_rows

FILLER = "the a movie film plot actors was is were very and but this that it".split()
KEY = "good"


# ------------------------------------------------------------------------------------------ builders


def sentences(rng: np.random.Generator, n: int, p_key: float = 0.5) -> tuple[list[str], list[int]]:
    """n sentences of 4-8 filler words; with probability p_key "good" is inserted somewhere (label 1)."""
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(FILLER, size=int(rng.integers(4, 9))))
        has = bool(rng.random() < p_key)
        if has:
            words.insert(int(rng.integers(0, len(words) + 1)), KEY)
        texts.append(" ".join(words))
        labels.append(int(has))
    return texts, labels


@pytest.fixture(scope="module")
def key_classifier():
    """A 1-layer BERT trained (about 2 s) to say whether "good" occurs; its decision hangs on that token."""
    torch.set_num_threads(1)
    tokenizer = word_tokenizer([*FILLER, KEY])
    model = tiny_bert(len(tokenizer), seed=0, num_labels=2, layers=1, heads=2, hidden=32).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(150):
        texts, labels = sentences(rng, 32)
        loss = model(**tokenizer(texts, padding=True, return_tensors="pt"), labels=torch.tensor(labels)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    texts, labels = sentences(rng, 100)
    with torch.no_grad():
        predicted = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1)
    assert (predicted == torch.tensor(labels)).float().mean() > 0.95  # the classifier really learned the rule
    return model, tokenizer


def small_agent(**agent) -> Agent:
    settings = dict(batch_size=64, learn_every=1, target_sync=20, lr=1e-3, dropout=0.0)
    return Agent(AgentSettings(**{**settings, **agent}), GameSettings(done_threshold=0.5, max_steps=6), seed=0)


def game_for(model, tokenizer, texts: list[str], settings: GameSettings | None = None) -> MaskingGame:
    rows = [{"text": t} for t in texts]
    return start_game(settings or GameSettings(), Victim(model), tokenizer, tokenize_rows(tokenizer, rows, 32), "cpu")


# ------------------------------------------------------------------------------------------ features


@pytest.mark.parametrize("bins", [1, 8, 32])
def test_feature_dimension_is_two_histograms_plus_four_statistics(bins):
    attention = torch.rand(3, 7, 7).softmax(dim=-1)
    mask = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 2 + [0] * 5])
    features = attention_features(attention, mask, bins)
    assert features.shape == (3, 7, 2 * bins + 4) and feature_size(bins) == 2 * bins + 4
    assert feature_size(32) == 68  # the paper's
    assert (features[mask == 0] == 0).all()  # padding rows are empty


def test_histograms_sum_to_at_most_one_and_read_columns_and_rows():
    torch.manual_seed(0)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    logits = torch.randn(2, 6, 6).masked_fill(mask[:, None, :] == 0, float("-inf"))
    features = attention_features(logits.softmax(dim=-1), mask, bins=16)
    received, given = features[..., :16].sum(-1), features[..., 16:32].sum(-1)
    assert (received <= 1 + 1e-6).all() and (given <= 1 + 1e-6).all()
    assert torch.allclose(received[mask == 1], torch.ones(10)) and torch.allclose(given[mask == 1], torch.ones(10))
    # every token attends only to token 1: token 1 receives 1.0 from all n rows (last bin), others receive 0
    attention = torch.zeros(1, 4, 4)
    attention[0, :, 1] = 1.0
    features = attention_features(attention, torch.ones(1, 4, dtype=torch.long), bins=4)
    assert features[0, 1, :4].tolist() == [0, 0, 0, 1]  # received histogram of token 1
    assert features[0, 0, :4].tolist() == [1, 0, 0, 0]  # token 0 receives nothing
    assert features[0, 0, 4:8].tolist() == [0.75, 0, 0, 0.25]  # token 0 gives 1.0 once and 0 three times
    assert features[0, 1, 8 + 2].item() == pytest.approx(1.0)  # received mean of token 1


# ------------------------------------------------------------------------------------------ the game


def test_toggling_twice_restores_the_input(key_classifier):
    model, tokenizer = key_classifier
    game = game_for(model, tokenizer, ["the movie was good", "a film is very good and fun"])
    before_ids, before_status, before_features = game.ids.clone(), game.status.clone(), game.features.clone()
    actions = torch.tensor([2, 3])
    game.step(actions)
    assert (game.ids[[0, 1], [2, 3]] == tokenizer.mask_token_id).all()
    assert (game.status[[0, 1], [2, 3]] == 0).all()
    assert game.order_scores()[0, 2] == 1.0
    game.step(actions)
    assert torch.equal(game.ids, before_ids) and torch.equal(game.status, before_status)
    assert torch.allclose(game.features, before_features, atol=1e-5)
    assert (game.masked_at == -1).all() and (game.order_scores() == 0).all()
    assert game.steps.tolist() == [2, 2] and game.victim.queries == 2 + 2 + 2


def test_finished_instances_leave_the_batch(key_classifier):
    model, tokenizer = key_classifier
    game = game_for(model, tokenizer, ["the movie was good", "the movie was good"], GameSettings(done_threshold=0.5))
    key = 4  # [CLS] the movie was good [SEP]: "good" is position 4
    step = game.step(torch.tensor([key, 1]))  # instance 0 masks the key token, instance 1 masks "the"
    assert step.done.tolist() == [True, False] and step.reward[0] == pytest.approx(10 * step.delta_p[0].item())
    assert game.active.tolist() == [1] and len(game.observe()) == 1
    queries = game.victim.queries
    game.step(torch.tensor([key]))
    assert game.victim.queries == queries + 1  # only the instance still playing was run
    assert game.finished and game.success.tolist() == [True, True] and game.steps.tolist() == [1, 2]
    difference = game_for(
        model, tokenizer, ["the movie was good"], GameSettings(done_threshold=0.5, reward="difference")
    )
    first, second = difference.step(torch.tensor([1])), difference.step(torch.tensor([key]))
    assert first.reward.item() == pytest.approx(10 * first.delta_p.item(), abs=1e-5)
    assert second.reward.item() == pytest.approx(10 * (second.delta_p - first.delta_p).item() + 10, abs=1e-4)
    attack = game_for(model, tokenizer, ["the movie was good"], GameSettings(task="attack", max_steps=1))
    step = attack.step(torch.tensor([1]))
    assert step.reward.item() == 0.0 and not step.done.item() and attack.finished  # out of steps, not done


def test_specials_and_padding_are_never_chosen(key_classifier):
    model, tokenizer = key_classifier
    game = game_for(model, tokenizer, ["good", "the movie was very good and fun"])
    observation = game.observe()
    allowed = ~structural_positions(game.original, game.attention_mask, tokenizer)
    assert torch.equal(observation.allowed, allowed)
    for epsilon in (0.0, 1.0):
        agent = Agent(AgentSettings(epsilon=epsilon), GameSettings(), seed=1)
        q = agent.q_values(observation)
        assert torch.isinf(q[~allowed]).all() and torch.isfinite(q[allowed]).all()
        for _ in range(50):
            actions = agent.act(observation, explore=True)
            assert allowed[torch.arange(2), actions].all()
    with pytest.raises(ValueError, match="may not be toggled"):
        game.step(torch.tensor([0, 1]))  # [CLS]


# ------------------------------------------------------------------------------------------ the agent


def transition(n: int, reward: float, action: int = 1, done: bool = False) -> Transition:
    return Transition(
        features=torch.rand(n, 68),
        status=torch.ones(n),
        allowed=torch.tensor([False] + [True] * (n - 2) + [False]),
        action=action,
        reward=reward,
        next_features=torch.rand(n, 68),
        next_status=torch.ones(n),
        done=done,
    )


def test_replay_samples_by_priority_and_updates_priorities():
    replay = PrioritizedReplay(capacity=4, seed=0)
    replay.add([transition(4, 0.0), transition(5, 0.0), transition(6, 1.0)], np.array([0.0, 0.0, 10.0]))
    assert len(replay) == 3
    slots, items, weights = replay.sample(200)
    assert (slots == 2).mean() > 0.8 and items[0] is replay.items[slots[0]]
    assert weights.max() == pytest.approx(1.0) and (weights > 0).all()
    assert weights[slots == 2].max() < weights[slots != 2].min()  # importance weights correct the bias
    before = replay.priorities.copy()
    replay.update(np.array([2]), np.array([0.0]))
    assert replay.priorities[2] < before[2] and replay.priorities[2] == pytest.approx(replay.priority(np.zeros(1))[0])
    replay.add([transition(4, 0.0), transition(4, 0.0)], np.zeros(2))  # the ring wraps over the oldest
    assert len(replay) == 4 and replay.next == 1


def test_q_network_shares_weights_over_tokens_and_reads_the_status_bit():
    net = QNetwork(68).eval()
    features = torch.rand(1, 5, 68)
    q = net(features, torch.ones(1, 5))
    assert q.shape == (1, 5)
    assert torch.allclose(net(features[:, [3, 0]], torch.ones(1, 2)), q[:, [3, 0]])  # per token, same weights
    assert not torch.allclose(net(features, torch.zeros(1, 5)), q)
    assert [p.shape for p in net.parameters()] == [(63, 68), (63,), (8, 64), (8,), (1, 8), (1,)]


def test_td_target_parity_flag_uses_the_same_action():
    agent = Agent(AgentSettings(same_action_target=False, dropout=0.0), GameSettings(), seed=0)
    parity = Agent(AgentSettings(same_action_target=True, dropout=0.0), GameSettings(), seed=0)
    from attexp.distill.attexplainer.agent import collate

    batch = collate([transition(6, 1.0, action=2), transition(6, 1.0, action=3, done=True)], agent.device)
    with torch.no_grad():
        q_next = agent.target(batch["next_features"], batch["next_status"])
        q = agent.net(batch["features"], batch["status"]).gather(1, batch["action"][:, None]).squeeze(1)
        usual, same = agent._td_errors(batch, train=False), parity._td_errors(batch, train=False)
    best = q_next[0, 1:5].max()
    assert usual[0].item() == pytest.approx((q[0] - (1.0 + 0.9 * best)).item(), abs=1e-5)
    assert same[0].item() == pytest.approx((q[0] - (1.0 + 0.9 * q_next[0, 2])).item(), abs=1e-5)
    assert usual[1].item() == pytest.approx(same[1].item()) == pytest.approx((q[1] - 1.0).item(), abs=1e-5)


def test_dropout_at_eval_parity_flag():
    observation = Observation(torch.rand(2, 6, 68), torch.ones(2, 6), torch.ones(2, 6, dtype=torch.bool))
    agent = Agent(AgentSettings(), GameSettings(), seed=0)
    assert torch.equal(agent.q_values(observation), agent.q_values(observation))  # off: greedy is deterministic
    parity = Agent(AgentSettings(dropout_at_eval=True), GameSettings(), seed=0)
    assert not torch.equal(parity.q_values(observation), parity.q_values(observation))


def test_agent_learns_to_mask_the_token_the_decision_hangs_on_first(key_classifier):
    model, tokenizer = key_classifier
    texts, _ = sentences(np.random.default_rng(1), 364, p_key=1.0)
    features = tokenize_rows(tokenizer, [{"text": t} for t in texts], 32)
    train, held_out = features[:300], features[300:]
    victim = Victim(model)
    agent = small_agent()
    key_id = tokenizer.convert_tokens_to_ids(KEY)

    def first_move_hits_key() -> float:
        game = start_game(agent, victim, tokenizer, held_out, "cpu")
        first = agent.act(game.observe())
        return (game.original[torch.arange(len(held_out)), first] == key_id).float().mean().item()

    before = first_move_hits_key()
    for episode in range(45):
        start = (episode * 16) % 288
        play(agent, start_game(agent, victim, tokenizer, train[start : start + 16], "cpu"), train=True)
    after = first_move_hits_key()
    assert before < 0.4 and after > 0.8, (before, after)
    game = start_game(agent, victim, tokenizer, held_out, "cpu")
    play(agent, game)
    assert game.success.float().mean() > 0.8 and game.steps.float().mean() < 2.0


def test_learning_curve_shows_the_agent_overtaking_the_random_policy(key_classifier, tmp_path):
    """train() with eval_every: the greedy agent on held-out games before, during and after training, against a
    random policy on the same games; on the key task the trained agent ends far above random (and the untrained
    one does not), and the random policy never moves onto a special token."""
    from attexp.distill.attexplainer.training import RandomPolicy, evaluate_policy
    from attexp.train.settings import AgentTrainSettings

    model, tokenizer = key_classifier
    texts, _ = sentences(np.random.default_rng(1), 364, p_key=1.0)
    features = tokenize_rows(tokenizer, [{"text": t} for t in texts], 32)
    victim = Victim(model)
    agent = small_agent()
    settings = AgentTrainSettings(batch_size=16, episodes=45, eval_every=15, progress=False, checkpoint_every=100)
    result = training_train(
        agent, victim, tokenizer, features[:300], settings, tmp_path / "ck", "cpu", eval_features=features[300:]
    )
    assert [p["episode"] for p in result.learning_curve] == [0, 15, 30, 45]
    first, last, random = result.learning_curve[0], result.learning_curve[-1], result.random_policy
    assert last["success_rate"] > 0.8 and last["steps"] < 2.0, last
    assert last["steps"] < random["steps"] and last["mask_rate"] < random["mask_rate"], (last, random)
    assert first["steps"] > last["steps"], (first, last)
    # the random policy: reproducible by seed, and only ever on allowed positions
    again = evaluate_policy(RandomPolicy(42), victim, tokenizer, features[300:], agent.game, 16, "cpu")
    assert again == random
    game = start_game(agent, victim, tokenizer, features[300:316], "cpu")
    moves = RandomPolicy(0).act(game.observe())
    assert game.allowed[torch.arange(16), moves].all()


def test_learning_curve_games_are_not_training_time(key_classifier, tmp_path, monkeypatch):
    """The curve's evaluations (here made to take 2 s each) count neither in `seconds` nor toward max_seconds."""
    import time

    from attexp.distill.attexplainer import training
    from attexp.train.settings import AgentTrainSettings

    model, tokenizer = key_classifier
    texts, _ = sentences(np.random.default_rng(1), 24, p_key=1.0)
    features = tokenize_rows(tokenizer, [{"text": t} for t in texts], 32)
    real = training.evaluate_policy

    def slow(*args, **kwargs):
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate_policy", slow)
    settings = AgentTrainSettings(batch_size=8, episodes=2, eval_every=1, max_seconds=1.5, progress=False)
    result = training_train(
        small_agent(), Victim(model), tokenizer, features[:16], settings, tmp_path, "cpu", eval_features=features[16:]
    )
    assert result.episodes == 2 and result.stopped_by == "episodes"  # 6 s of curve did not use up 1.5 s
    assert result.seconds < 1.5 and [p["episode"] for p in result.learning_curve] == [0, 1, 2]


def test_save_and_load_round_trip(tmp_path):
    agent = Agent(AgentSettings(hidden=16), GameSettings(task="attack", bins=8), seed=3)
    agent.save(tmp_path / "agent", extra={"victim": "m"})
    loaded = Agent.load(tmp_path / "agent")
    assert loaded.settings.hidden == 16 and loaded.game.task == "attack" and loaded.game.bins == 8
    for a, b in zip(agent.net.state_dict().values(), loaded.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert read_json(tmp_path / "agent" / "agent.json")["victim"] == "m"
    from attexp.errors import AttexpError

    with pytest.raises(AttexpError, match="no trained AttExplainer agent"):
        Agent.load(tmp_path / "nothing")


# ------------------------------------------------------------------------------------------ explainer and metric


def test_explainer_records_the_masking_order(key_classifier, tmp_path):
    from attexp.distill.attexplainer.explainer import AttExplainerConfig, AttExplainerExplainer

    model, tokenizer = key_classifier
    agent = small_agent()
    agent.save(tmp_path / "job" / "agent")
    explainer = AttExplainerExplainer(
        AttExplainerConfig(agent="job", max_steps=4), model, tokenizer, {"job": tmp_path / "job"}
    )
    enc = tokenizer(["the movie was good", "a very good film and plot"], padding=True, return_tensors="pt")
    batch = Batch(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], torch.tensor([1, 1]))
    with torch.inference_mode():
        out = explainer.explain(batch)
    scores, extras = out.attributions, out.extras
    assert out.forward_passes == [1 + int(s) for s in extras["steps"].tolist()]
    assert (extras["steps"] <= 4).all() and set(extras) == {"steps", "delta_p", "success", "masked", "flipped"}
    assert torch.equal((scores > 0).sum(dim=1).float(), extras["masked"])
    assert (scores[batch.attention_mask == 0] == 0).all()
    special = structural_positions(batch.input_ids, batch.attention_mask, tokenizer)
    assert (scores[special] == 0).all()
    for row in scores:  # masking order as scores: 1, (k-1)/k, ..., 1/k
        k = int((row > 0).sum())
        assert sorted(row[row > 0].tolist(), reverse=True) == pytest.approx([(k - i) / k for i in range(k)])


def record(tokenizer, model, text: str, scores_by_word: dict[str, float], label: int = 1, passes: int = 3) -> dict:
    ids = tokenizer(text)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    with torch.no_grad():
        probabilities = model(input_ids=torch.tensor([ids])).logits.softmax(-1)[0].tolist()
    return {
        "idx": abs(hash(text)) % 10**6,
        "input_ids": ids,
        "tokens": tokens,
        "label": label,
        "predictions": probabilities,
        "target": int(np.argmax(probabilities)),
        "attributions": [scores_by_word.get(t, 0.0) for t in tokens],
        "forward_passes": passes,
    }


def test_masking_metric_paper_way_and_sequential(key_classifier):
    from attexp.evaluate.masking import MaskingGameConfig
    from attexp.evaluate.masking import MaskingGameMetric as MaskingMetric
    from attexp.evaluate.model_scorer import ModelScorer
    from attexp.io.words import word_ids

    model, tokenizer = key_classifier
    scorer = ModelScorer(model, tokenizer, batch_size=8)
    text = "the movie was good"
    records = [
        record(tokenizer, model, text, {"good": 1.0, "the": -1.0}),  # masks "good" only: success with 1/4 tokens
        record(tokenizer, model, "a film is this", {"film": 0.5}, label=1),  # label 1 but predicted 0: misclassified
    ]
    out = MaskingMetric(MaskingGameConfig(done_threshold=0.5, budgets=[0.25])).compute(records, scorer=scorer)
    first = out.per_instance[records[0]["idx"]]
    assert first["success"] == 1.0 and first["token_mod"] == 0.25 and first["word_mod"] == 0.25
    assert first["queries"] == 3 and first["fidelity"] == 1.0 and first["delta_p"] > 0.5
    assert first["success@25%"] == 1.0 and out.summary["n"] == 2
    assert len(out.curves["masking_success"]["x"]) == 20
    # sequential: "the" (negative) is never masked; "movie" then "good" by score
    seq = record(tokenizer, model, text, {"movie": 0.9, "good": 0.5, "the": -1.0})
    out = MaskingMetric(MaskingGameConfig(done_threshold=0.5, mode="sequential")).compute([seq], scorer=scorer)
    values = out.per_instance[seq["idx"]]
    assert values["success_seq"] == 1.0 and values["masked_seq"] == 2 and values["queries_seq"] == 3 + 2
    # attack: the success rate over initially correct instances; the official quirk counts misclassified ones
    attack = MaskingMetric(MaskingGameConfig(task="attack")).compute(records, scorer=scorer)
    assert attack.summary["asr_attack"] == 1.0 and attack.summary["initially_correct_attack"] == 1
    quirk = MaskingMetric(MaskingGameConfig(task="attack", count_misclassified_as_success=True))
    assert quirk.compute(records, scorer=scorer).summary["asr_attack"] == 1.0
    assert word_ids(["[un]", "##like", "##ly", "good"]) == [0, 0, 0, 1]
    assert word_ids(["Ġthe", "Ġun", "like", "Ġgood"]) == [0, 1, 1, 2]


# ------------------------------------------------------------------------------------------ the job


def finished_artifact(base: Path, stage_folder: str, stage: str, name: str) -> Path:
    folder = base / stage_folder / name
    folder.mkdir(parents=True, exist_ok=True)
    config = {"job": stage, "name": name, "seed": 0}
    write_json(folder / "config.json", config)
    schema = {"download": DATASET, "train": CLASSIFIER}[stage]
    manifest = new_manifest(schema=schema, stage=stage, config=config, config_hash=config_hash(config), upstream={})
    write_json(folder / MANIFEST, {**manifest.to_json(), "status": "finished"})
    return folder


@pytest.fixture
def base_with_victim(key_classifier, tmp_path) -> Path:
    model, tokenizer = key_classifier
    base = tmp_path / "base"
    data = finished_artifact(base, "data", "download", "syn.download")
    rng = np.random.default_rng(2)
    for split, n in (("train", 64), ("validation", 8), ("test", 12)):
        texts, labels = sentences(rng, n)
        write_jsonl(
            data / f"{split}.jsonl",
            [{"idx": i, "text": t, "label": y} for i, (t, y) in enumerate(zip(texts, labels, strict=True))],
        )
    models = finished_artifact(base, "models", "train", "syn.train")
    model.save_pretrained(models / "model")
    tokenizer.save_pretrained(models / "model")
    return base


def agent_job(**overrides) -> dict:
    job = {
        "job": "train_agent",
        "name": "syn.agent",
        "model": "syn.train",
        "data": "syn.download",
        "batch_size": 8,
        "episodes": 4,
        "checkpoint_every": 1,
        "log_every": 1,
        "progress": False,
        "game": {"done_threshold": 0.5, "max_steps": 4, "bins": 8},
        "agent": {"batch_size": 16, "learn_every": 1},
    }
    return {**job, **overrides}


def test_train_agent_job_writes_the_agent_and_resumes(base_with_victim, run_cli, tmp_path, monkeypatch):
    from attexp.distill.attexplainer import training

    config = tmp_path / "agent.json"
    config.write_text(json.dumps(agent_job()))
    real_play, calls = training.play, {"n": 0}

    def killed_in_the_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated kill")
        return real_play(*args, **kwargs)

    monkeypatch.setattr(training, "play", killed_in_the_third_batch)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_cli(config, "--base-dir", base_with_victim)
    folder = base_with_victim / "models" / "syn.agent"
    assert (folder / "checkpoints" / "last.json").exists() and not (folder / "agent").exists()
    assert (folder / "checkpoints" / "last.safetensors").exists() and not (folder / "checkpoints" / "last.pt").exists()
    monkeypatch.setattr(training, "play", real_play)
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 0, err
    manifest = read_json(folder / MANIFEST)
    assert manifest["status"] == "finished" and manifest["resumed"] == 1
    assert manifest["resumed_from_episode"] == 2 and manifest["episodes"] == 4 and manifest["victim"] == "syn.train"
    assert len(manifest["rewards_curve"]) == 4 and manifest["task"] == "explain"
    rewards = read_jsonl(folder / "rewards.jsonl")
    assert [r["episode"] for r in rewards] == [1, 2, 3, 4]
    assert {"reward", "success_rate", "mask_rate", "steps", "loss"} <= set(rewards[0])
    assert (folder / "agent" / "agent.safetensors").exists() and not (folder / "checkpoints").exists()
    # the explain stage uses it through the attexplainer explainer
    explain = tmp_path / "explain.json"
    explain.write_text(
        json.dumps(
            {
                "job": "explain",
                "name": "syn.explain.agent",
                "model": "syn.train",
                "data": "syn.download",
                "explainer": {"type": "attexplainer", "agent": "syn.agent"},
                "max_length": 32,
                "progress": False,
            }
        )
    )
    code, _, err = run_cli(explain, "--base-dir", base_with_victim)
    assert code == 0, err
    records = read_jsonl(base_with_victim / "explanations" / "syn.explain.agent" / "records.jsonl")
    assert len(records) == 12 and {"steps", "delta_p", "success", "masked", "flipped"} <= set(records[0]["extras"])
    # and the evaluate stage scores it in the masking game (the paper's way and sequentially)
    evaluate = tmp_path / "evaluate.json"
    metrics = [
        {"type": "masking_game", "done_threshold": 0.5},
        {"type": "masking_game", "done_threshold": 0.5, "mode": "sequential"},
        {"type": "masking_game", "task": "attack"},
    ]
    job = {"job": "evaluate", "name": "syn.evaluate", "explanations": ["syn.explain.agent"], "metrics": metrics}
    evaluate.write_text(json.dumps({**job, "model": "syn.train"}))
    code, _, err = run_cli(evaluate, "--base-dir", base_with_victim)
    assert code == 0, err
    results = read_json(base_with_victim / "logs" / "syn.evaluate" / "metrics.json")["results"]
    agent = results["syn.explain.agent"]
    assert agent["masking_game.success"] == pytest.approx(np.mean([r["extras"]["success"] for r in records]))
    assert agent["masking_game.queries"] == pytest.approx(np.mean([r["forward_passes"] for r in records]))
    assert {"masking_game.success_seq", "masking_game.asr_attack"} <= set(agent)
    assert results["random-floor"]["masking_game.token_mod"] == 1.0  # uniform scores: all tokens positive


def test_time_budget_stops_training_and_metrics_reach_the_tracker(base_with_victim, run_cli, tmp_path, monkeypatch):
    from attexp.tracking import Tracker

    logged: list[tuple[dict, int | None]] = []
    monkeypatch.setattr(Tracker, "log", lambda self, metrics, step=None: logged.append((metrics, step)))
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(agent_job(episodes=1000, max_seconds=0.5)))
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 0, err
    manifest = read_json(base_with_victim / "models" / "syn.agent" / MANIFEST)
    assert manifest["stopped_by"] == "max_seconds" and manifest["episodes"] < 1000
    assert manifest["training_cpu_seconds"] > 0
    assert logged and {"reward", "success_rate", "mask_rate"} <= set(logged[0][0]) and logged[0][1] == 1


def test_learning_curve_of_the_job_survives_a_kill(base_with_victim, run_cli, tmp_path, monkeypatch):
    """eval_every: the curve (and the random policy, computed once) is in the checkpoint, so a killed and
    resumed job continues it: points at 0, 2 and 4 game batches, in learning_curve.jsonl and the manifest."""
    from attexp.distill.attexplainer import training

    config = tmp_path / "agent.json"
    config.write_text(json.dumps(agent_job(name="syn.agent.curve", eval_every=2, eval_size=8)))
    real_play, calls = training.play, {"n": 0}

    def counted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # random policy, agent at 0, batches 1-2, agent at 2, then batch 3 is killed
            raise RuntimeError("simulated kill")
        return real_play(*args, **kwargs)

    monkeypatch.setattr(training, "play", counted)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_cli(config, "--base-dir", base_with_victim)
    calls["n"] = 100
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 0, err
    assert calls["n"] == 103  # batches 3 and 4 and the agent at 4: nothing played twice
    folder = base_with_victim / "models" / "syn.agent.curve"
    manifest = read_json(folder / MANIFEST)
    assert manifest["resumed_from_episode"] == 2 and manifest["heldout"] == 8
    assert [p["episode"] for p in manifest["learning_curve"]] == [0, 2, 4]
    assert read_jsonl(folder / "learning_curve.jsonl") == [
        {"idx": i, **p} for i, p in enumerate(manifest["learning_curve"])
    ]
    assert {"success_rate", "mask_rate", "reward", "steps"} <= set(manifest["random_policy"])
    # the default (no curve) leaves existing train_agent configs' hashes as they were
    job = agent_job()
    assert config_hash({**job, "eval_every": None, "eval_size": 64}) == config_hash(job)


def test_a_finished_agent_is_continued_to_a_larger_budget(base_with_victim, run_cli, tmp_path, monkeypatch):
    """continue_from: a new job starts from the finished agent's final state (its Q-network, counters, rewards
    and learning curve) and trains on to its own budget; the finished job's files are left as they were."""
    from attexp.distill.attexplainer import training
    from attexp.distill.attexplainer.training import CHECKPOINT
    from attexp.io.checkpoints import load_state

    first = tmp_path / "first.json"
    first.write_text(json.dumps(agent_job(eval_every=2, eval_size=8)))
    code, _, err = run_cli(first, "--base-dir", base_with_victim)
    assert code == 0, err
    before = base_with_victim / "models" / "syn.agent"
    manifest_before = read_json(before / MANIFEST)
    assert set(manifest_before["files"]) == {"rewards.jsonl", "state/last.safetensors", "state/last.json"}
    assert not (before / "checkpoints").exists()
    files_before = {p: p.read_bytes() for p in before.rglob("*") if p.is_file()}
    final = load_state(before / "state" / CHECKPOINT)
    assert final["episode"] == 4 and [p["episode"] for p in final["learning_curve"]] == [0, 2, 4]

    real_play, seen = training.play, []

    def watched(agent, game, train=False):  # the Q-network the continuation's first training game starts with
        if train and not seen:
            seen.append({k: v.clone() for k, v in agent.net.state_dict().items()})
        return real_play(agent, game, train)

    monkeypatch.setattr(training, "play", watched)
    more = tmp_path / "more.json"
    more.write_text(
        json.dumps(agent_job(name="syn.agent.more", continue_from="syn.agent", episodes=7, eval_every=2, eval_size=8))
    )
    code, _, err = run_cli(more, "--base-dir", base_with_victim)
    assert code == 0, err
    for key, value in seen[0].items():
        assert torch.equal(value, final["agent"]["net"][key]), key
    folder = base_with_victim / "models" / "syn.agent.more"
    manifest = read_json(folder / MANIFEST)
    assert manifest["continued_from"] == {
        "job": "syn.agent",
        "episodes": 4,
        "training_seconds": manifest_before["training_seconds"],
    }
    assert manifest["resumed_from_episode"] == 4 and manifest["episodes"] == 7
    assert manifest["learn_steps"] > manifest_before["learn_steps"]
    assert manifest["game_steps"] > manifest_before["game_steps"]
    assert manifest["training_seconds"] >= manifest_before["training_seconds"]
    rewards = read_jsonl(folder / "rewards.jsonl")
    assert [r["episode"] for r in rewards] == list(range(1, 8))
    assert rewards[:4] == read_jsonl(before / "rewards.jsonl")
    assert [p["episode"] for p in manifest["learning_curve"]] == [0, 2, 4, 6, 7]
    assert manifest["learning_curve"][:3] == manifest_before["learning_curve"]
    assert manifest["random_policy"] == manifest_before["random_policy"]
    assert {p: p.read_bytes() for p in before.rglob("*") if p.is_file()} == files_before


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"episodes": 4}, "nothing left to train"),
        ({"episodes": 3}, "nothing left to train"),
        ({"episodes": 9, "game": {"done_threshold": 0.6, "max_steps": 4, "bins": 8}}, "game is"),
        ({"episodes": 9, "seed": 7}, "seed is"),
        ({"episodes": 9, "eval_every": 2, "eval_size": 4}, "set eval_size to 8"),
        ({"episodes": 9, "eval_every": None}, "set eval_every (e.g. 2)"),
        ({"episodes": 9, "continue_from": "syn.train"}, "train job"),
    ],
)
def test_a_continuation_that_cannot_continue_exits_2(base_with_victim, run_cli, tmp_path, overrides, fragment):
    first = tmp_path / "first.json"
    first.write_text(json.dumps(agent_job(eval_every=2, eval_size=8)))
    code, _, err = run_cli(first, "--base-dir", base_with_victim)
    assert code == 0, err
    config = tmp_path / "more.json"
    config.write_text(json.dumps(agent_job(**{"name": "syn.agent.more", "continue_from": "syn.agent", **overrides})))
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 2 and fragment in err, err
    assert not (base_with_victim / "models" / "syn.agent.more").exists()


def test_continuing_in_one_pipeline_and_what_cannot_be_continued(base_with_victim, run_cli, tmp_path):
    """In a pipeline the budget is checked against the earlier job's config, and again at run time against what
    it played; an agent without a final state, or whose data was rerun since, cannot be continued exactly."""
    pipeline = tmp_path / "pipeline.json"
    jobs = [agent_job(), agent_job(name="syn.agent.more", continue_from="syn.agent", episodes=4)]
    pipeline.write_text(json.dumps({"jobs": jobs}))
    code, _, err = run_cli(pipeline, "--base-dir", base_with_victim)
    assert code == 2 and "raise episodes above 4:" in err and "max_seconds above" not in err, err
    assert not (base_with_victim / "models").joinpath("syn.agent").exists()
    jobs[1]["episodes"] = 6
    pipeline.write_text(json.dumps({"jobs": jobs}))
    code, _, err = run_cli(pipeline, "--base-dir", base_with_victim)
    assert code == 0, err
    assert read_json(base_with_victim / "models" / "syn.agent.more" / MANIFEST)["episodes"] == 6
    # more time but fewer batches than were played: found when the state is read
    short = tmp_path / "short.json"
    short.write_text(
        json.dumps(
            {
                "jobs": [agent_job(name="syn.agent.t", max_seconds=1000)]
                + [agent_job(name="syn.agent.t2", continue_from="syn.agent.t", episodes=3, max_seconds=2000)]
            }
        )
    )
    code, _, err = run_cli(short, "--base-dir", base_with_victim)
    assert code == 1 and "nothing left to train: that job played 4 game batches" in err, err
    assert not (base_with_victim / "models" / "syn.agent.t2" / "checkpoints").exists()
    # a job cannot continue itself
    itself = tmp_path / "itself.json"
    itself.write_text(json.dumps(agent_job(name="syn.agent.x", continue_from="syn.agent.x", episodes=8)))
    code, _, err = run_cli(itself, "--base-dir", base_with_victim)
    assert code == 2 and "is this job itself" in err, err
    # the data rerun with another config since the agent trained on it
    later = tmp_path / "later.json"
    later.write_text(json.dumps(agent_job(name="syn.agent.later", continue_from="syn.agent", episodes=8)))
    manifest_path = base_with_victim / "data" / "syn.download" / MANIFEST
    data_manifest = read_json(manifest_path)
    write_json(manifest_path, {**data_manifest, "config_hash": "0" * 64})
    code, _, err = run_cli(later, "--base-dir", base_with_victim)
    assert code == 1 and "'syn.download' was rerun with another config" in err, err
    write_json(manifest_path, data_manifest)
    # an agent without state/ (as attexp wrote them before it kept one): refused before anything is written
    shutil.rmtree(base_with_victim / "models" / "syn.agent" / "state")
    later.write_text(json.dumps(agent_job(name="syn.agent.later2", continue_from="syn.agent", episodes=8)))
    code, _, err = run_cli(later, "--base-dir", base_with_victim)
    assert code == 2 and "no final training state" in err and "Train a new agent" in err, err
    assert not (base_with_victim / "models" / "syn.agent.later2").exists()


def test_a_run_killed_after_keeping_its_state_finishes_without_training_again(
    base_with_victim, run_cli, tmp_path, monkeypatch
):
    """Between keeping the final state and the finished manifest, a kill leaves no checkpoint; the rerun starts
    from the job's own state/ instead of from scratch."""
    from attexp.distill.attexplainer import job as agent_job_module
    from attexp.distill.attexplainer import training

    config = tmp_path / "agent.json"
    config.write_text(json.dumps(agent_job()))
    real_curve = agent_job_module._curve

    def killed(*args, **kwargs):
        raise RuntimeError("simulated kill")

    monkeypatch.setattr(agent_job_module, "_curve", killed)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_cli(config, "--base-dir", base_with_victim)
    folder = base_with_victim / "models" / "syn.agent"
    assert not (folder / "checkpoints").exists() and (folder / "state" / "last.json").exists()
    monkeypatch.setattr(agent_job_module, "_curve", real_curve)
    real_play, calls = training.play, {"n": 0}

    def counted(*args, **kwargs):
        calls["n"] += 1
        return real_play(*args, **kwargs)

    monkeypatch.setattr(training, "play", counted)
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 0, err
    assert calls["n"] == 0
    manifest = read_json(folder / MANIFEST)
    assert manifest["status"] == "finished" and manifest["episodes"] == 4 and manifest["resumed_from_episode"] == 4
    assert [r["episode"] for r in read_jsonl(folder / "rewards.jsonl")] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"game": {"task": "explian"}}, "game.task"),
        ({"agent": {"gamma": 2}}, "agent.gamma"),
        ({"agent": {"learn_evry": 2}}, "learn_every"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"model": "syn.download"}, "download job"),
        ({"split": "validation", "eval_every": 2}, "would not be held out"),
    ],
)
def test_config_errors_exit_2_before_any_work(base_with_victim, run_cli, tmp_path, overrides, fragment):
    config = tmp_path / "agent.json"
    config.write_text(json.dumps(agent_job(**overrides)))
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 2 and fragment in err, err
    assert not (base_with_victim / "models" / "syn.agent").exists()


def test_explainer_and_metric_config_errors_exit_2(base_with_victim, run_cli, tmp_path):
    explain = tmp_path / "explain.json"
    bad = {"job": "explain", "name": "e", "model": "syn.train", "data": "syn.download"}
    explain.write_text(json.dumps({**bad, "explainer": {"type": "attexplainer", "agent": "syn.train"}}))
    code, _, err = run_cli(explain, "--base-dir", base_with_victim)
    assert code == 2 and "train_agent" in err, err
    evaluate = tmp_path / "evaluate.json"
    metric = {"type": "masking_game", "budgets": [1.5]}
    evaluate.write_text(json.dumps({"job": "evaluate", "name": "v", "explanations": ["e"], "metrics": [metric]}))
    code, _, err = run_cli(evaluate, "--base-dir", base_with_victim)
    assert code == 2 and "budgets" in err, err


class _Payload:
    """Unpickling this runs code: it writes a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_planted_pickle_checkpoint_is_refused_and_never_runs(base_with_victim, run_cli, tmp_path, monkeypatch):
    """A killed run leaves a resumable job; a pickle planted as its checkpoint is refused on resume, unread."""
    import pickle

    from attexp.distill.attexplainer import training

    config = tmp_path / "agent.json"
    config.write_text(json.dumps(agent_job()))
    real_play, calls = training.play, {"n": 0}

    def killed_in_the_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated kill")
        return real_play(*args, **kwargs)

    monkeypatch.setattr(training, "play", killed_in_the_second_batch)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_cli(config, "--base-dir", base_with_victim)
    monkeypatch.setattr(training, "play", real_play)
    marker = tmp_path / "pwned"
    checkpoints = base_with_victim / "models" / "syn.agent" / "checkpoints"
    for path in checkpoints.iterdir():
        path.unlink()
    (checkpoints / "last.pt").write_bytes(pickle.dumps({"agent": _Payload(marker)}))
    code, _, err = run_cli(config, "--base-dir", base_with_victim)
    assert code == 1 and "last.pt" in err and "never loaded" in err and "Delete it" in err
    assert not marker.exists(), "the pickle's payload ran"


def test_checkpoint_state_round_trips_without_pickle(tmp_path):
    from attexp.io.checkpoints import load_state, save_state

    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    optimizer.param_groups[0]["params"][0].grad = torch.ones(3)
    optimizer.step()
    rng = np.random.default_rng(7)
    state = {
        "optimizer": optimizer.state_dict(),
        "rng": rng.bit_generator.state,
        "history": [{"loss": float("nan"), "reward": 1.5}],
        "episode": 3,
    }
    save_state(tmp_path / "last", state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.safetensors"]
    back = load_state(tmp_path / "last")
    assert back["episode"] == 3 and back["rng"] == rng.bit_generator.state
    assert np.isnan(back["history"][0]["loss"]) and back["history"][0]["reward"] == 1.5
    restored = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], lr=0.1)
    restored.load_state_dict(back["optimizer"])
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_victim_in_bf16_autocast_answers_as_in_float32(key_classifier):
    """Agent training's `precision`: the classifier's forwards in the games run under autocast; what the game
    reads (probabilities, mean attention) comes back float32 and close to the float32 answers."""
    model, tokenizer = key_classifier
    texts, _ = sentences(np.random.default_rng(2), 8)
    batch = pad_features(tokenize_rows(tokenizer, [{"text": t} for t in texts], 32), tokenizer.pad_token_id)
    exact, mixed = Victim(model), Victim(model, precision="bf16")
    p32, a32 = exact(*batch)
    p16, a16 = mixed(*batch)
    assert p16.dtype == a16.dtype == torch.float32
    assert (p16 - p32).abs().max() < 0.05 and (a16 - a32).abs().max() < 0.05
    assert not torch.equal(p16, p32)  # the forwards did run in bfloat16
    assert TrainAgentConfig(name="a", model="m", data="d", precision="bf16").precision == "bf16"
