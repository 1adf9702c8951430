"""Head importance and head pruning without `head_mask` (attexp.analyze.heads) and the `head_pruning` job.

The head mask is a forward pre-hook on each layer's attention output projection; masking every head of a layer
must equal a hand computation in which that layer's attention output is the projection's bias alone, and no
hook may stay behind. The job runs on a tiny BERT saved as a train artifact.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny import make_batch, tiny_bert, word_tokenizer

from attexp.analyze import heads as H
from attexp.config.hashing import config_hash
from attexp.errors import AttexpError
from attexp.explain.attattr import AttAttrConfig, AttentionAttribution
from attexp.models.encoder import Encoder

WORDS = "good great fine bad awful dull the a movie film plot was is very".split()
POSITIVE, NEGATIVE = ["good", "great", "fine"], ["bad", "awful", "dull"]


def hooks(model: torch.nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def sentences(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for idx in range(count):
        label = idx % 2
        word = rng.choice(POSITIVE if label else NEGATIVE)
        filler = rng.sample(["the", "a", "movie", "film", "plot", "was", "is", "very"], rng.randint(1, 5))
        filler.insert(rng.randint(0, len(filler)), word)
        rows.append({"idx": idx, "text": " ".join(filler), "label": label})
    return rows


def make_base(base: Path, layers: int = 2, heads: int = 4, sizes=(40, 24, 30)) -> Path:
    """A base directory with a download artifact `t.data` and a train artifact `t.train` (a tiny BERT)."""
    data = base / "data" / "t.data"
    data.mkdir(parents=True)
    for seed, (split, size) in enumerate(zip(("train", "validation", "test"), sizes, strict=True)):
        rows = sentences(size, seed)
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = base / "models" / "t.train"
    tokenizer = word_tokenizer(WORDS)
    tiny_bert(len(tokenizer), seed=3, num_labels=2, layers=layers, heads=heads).save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    for path, job, name in ((data, "download", "t.data"), (folder, "train", "t.train")):
        config = {"job": job, "name": name}
        manifest = {"job": job, "name": name, "status": "finished", "config_hash": config_hash(config)}
        (path / "manifest.json").write_text(json.dumps({**manifest, "label_names": ["neg", "pos"]}))
        (path / "config.json").write_text(json.dumps(config))
    return base


@pytest.fixture
def tiny():
    tokenizer = word_tokenizer(WORDS)
    model = tiny_bert(len(tokenizer), seed=1, num_labels=2, layers=3, heads=4)
    batch = make_batch(tokenizer, ["good movie", "the plot was very dull", "a great film"], [1, 0, 1], num_labels=2)
    return model, tokenizer, batch


def by_hand(model, batch, zeroed: int) -> torch.Tensor:
    """Logits with layer `zeroed`'s attention output replaced by the output projection's bias."""
    encoder = Encoder(model)
    hidden = encoder.embed(batch.input_ids, batch.token_type_ids)
    context = encoder.context(batch.attention_mask, hidden.dtype, batch.input_ids)
    with encoder.attention():
        for index, layer in enumerate(encoder.layers):
            if index == zeroed:
                hidden = layer.feed_forward(layer.norm(layer.output.bias + hidden))
            else:
                hidden = encoder.run(hidden, context, index, index + 1)
    return encoder.classify(hidden, context)


@pytest.mark.parametrize("layer", [0, 2])
def test_masking_every_head_of_a_layer_zeroes_its_attention_output(tiny, layer):
    model, _, batch = tiny
    encoder = Encoder(model)
    masked = torch.zeros(3, 4, dtype=torch.bool)
    masked[layer] = True
    with torch.no_grad():
        plain = model(**batch.model_inputs()).logits
        with H.head_mask(encoder, masked):
            pruned = model(**batch.model_inputs()).logits
        expected = by_hand(model, batch, layer)
    torch.testing.assert_close(pruned, expected, atol=1e-5, rtol=1e-5)
    assert (pruned - plain).abs().max() > 1e-3, "masking a whole layer changes the logits"
    assert hooks(model) == 0


def test_masking_one_head_zeroes_its_slice_only(tiny):
    model, _, batch = tiny
    encoder = Encoder(model)
    seen = {}
    size = encoder.head_size
    masked = torch.zeros(3, 4, dtype=torch.bool)
    masked[1, 2] = True
    with H.head_mask(encoder, masked):  # registered first, so it runs first: the recorder sees the masked input
        handle = encoder.layers[1].output.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].clone()))
        with torch.no_grad():
            model(**batch.model_inputs())
        handle.remove()
    context = seen["x"]  # [B, T, heads * d]
    assert torch.all(context[..., 2 * size : 3 * size] == 0)
    assert context[..., : 2 * size].abs().sum() > 0 and context[..., 3 * size :].abs().sum() > 0
    assert hooks(model) == 0


def test_hooks_are_removed_after_an_exception(tiny):
    model, _, batch = tiny
    with pytest.raises(RuntimeError, match="boom"), H.head_mask(Encoder(model), torch.ones(3, 4, dtype=torch.bool)):
        assert hooks(model) == 3
        raise RuntimeError("boom")
    assert hooks(model) == 0
    with pytest.raises(AttexpError, match=r"expected \[3, 4\]"), H.head_gates(Encoder(model), torch.ones(2, 4)):
        pass


def head_products(model, single, objective) -> torch.Tensor:
    """<context_h(t), d objective/dcontext_h(t)> of layer 1 for a one-instance batch, by hand: [T, heads]."""
    encoder, captured = Encoder(model), {}

    def keep(module, args):
        args[0].retain_grad()
        captured["context"] = args[0]

    handle = encoder.layers[1].output.register_forward_pre_hook(keep)
    objective(model(**single.model_inputs()).logits).backward()
    handle.remove()
    context = captured["context"]  # [1, T, heads * d]
    return (context * context.grad).view(*context.shape[:2], encoder.num_heads, encoder.head_size).sum(dim=3)[0]


def test_taylor_scores_are_the_gate_gradients(tiny):
    """|dL/dgate| per instance equals |<context_h, dL/dcontext_h>| summed over tokens, computed by hand."""
    model, _, batch = tiny
    scores = H.taylor_head_scores(Encoder(model), batch)  # [B, L, heads]
    assert scores.shape == (3, 3, 4) and hooks(model) == 0
    single = make_batch_of(batch, 1)
    products = head_products(model, single, lambda logits: F.cross_entropy(logits, single.targets))
    torch.testing.assert_close(scores[1, 1], products.sum(dim=0).abs().detach(), atol=1e-5, rtol=1e-4)


def make_batch_of(batch, i):
    from attexp.models.inputs import Batch

    n = int(batch.attention_mask[i].sum())
    types = None if batch.token_type_ids is None else batch.token_type_ids[i : i + 1, :n]
    return Batch(batch.input_ids[i : i + 1, :n], batch.attention_mask[i : i + 1, :n], types, batch.targets[i : i + 1])


def test_attattr_maxima_ignore_padding_and_match_one_by_one(tiny):
    model, tokenizer, batch = tiny
    explainer = AttentionAttribution(AttAttrConfig(steps=3, return_maps=True), model, tokenizer, {})
    together = H.attattr_head_maxima(explainer, batch)  # [B, L, heads]
    for i in range(len(batch)):
        alone = H.attattr_head_maxima(explainer, make_batch_of(batch, i))[0]
        torch.testing.assert_close(together[i], alone, atol=1e-5, rtol=1e-4)
    with pytest.raises(AttexpError, match="return_maps=True"):
        H.attattr_head_maxima(AttentionAttribution(AttAttrConfig(steps=2), model, tokenizer, {}), batch)


def test_orders_counts_and_normalisation():
    importance = torch.tensor([[3.0, 1.0], [1.0, 0.5]])
    assert H.pruning_order(importance) == [(1, 1), (0, 1), (1, 0), (0, 0)]  # ties: lower layer first
    assert H.random_order(2, 2, 0) == H.random_order(2, 2, 0) and sorted(H.random_order(2, 2, 0)) == sorted(
        H.pruning_order(importance)
    )
    assert [H.pruned_count(r, 72) for r in (0, 10, 50, 100)] == [0, 7, 36, 72]
    normalised = H.normalise_per_layer(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    torch.testing.assert_close(normalised, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))


def test_zero_rate_reproduces_the_accuracy_and_full_rate_masks_everything(tiny):
    model, tokenizer, _ = tiny
    rows = sentences(30, 0)
    batches = H.Batches(rows, model, tokenizer, batch_size=7, max_length=32, device=torch.device("cpu"))
    with torch.no_grad():
        enc = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
        reference = (model(**enc).logits.argmax(-1) == torch.tensor([r["label"] for r in rows])).float().mean()
    order = H.pruning_order(torch.rand(3, 4))
    curves = H.pruning_curves(model, batches, {"a": order, "b": list(reversed(order))}, [0, 50, 100])
    assert curves["a"][0] == curves["b"][0] == pytest.approx(float(reference))
    assert curves["a"][2] == curves["b"][2]  # 100%: the same mask for every order
    assert hooks(model) == 0


def test_official_taylor_is_the_per_token_logit_sum_gradient(tiny):
    """The AttAttr code's Taylor baseline: sum_t |<context_h(t), d(sum of logits)/dcontext_h(t)>| over real
    tokens, by hand with a retained gradient; it is not Michel et al.'s cross-entropy criterion."""
    model, _, batch = tiny
    encoder = Encoder(model)
    scores = H.taylor_head_scores(encoder, batch, "official")  # [B, L, heads]
    assert scores.shape == (3, 3, 4) and hooks(model) == 0
    single = make_batch_of(batch, 1)
    per_token = head_products(model, single, lambda logits: logits.sum()).abs()  # [T, heads]
    real = single.attention_mask[0].bool()
    torch.testing.assert_close(scores[1, 1], per_token[real].sum(dim=0).detach(), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(scores, H.taylor_head_scores(encoder, batch, "michel"))
    with pytest.raises(AttexpError, match="unknown Taylor definition"):
        H.taylor_head_scores(encoder, batch, "taylor")
    tokens = batch.input_ids.shape[1]
    with (
        pytest.raises(AttexpError, match=rf"pass gates of shape \[3, {tokens}, 3, 4\]"),
        H.head_gates(encoder, torch.ones(3, tokens - 1, 3, 4)),
    ):
        model(**batch.model_inputs())


def run_pruning(tmp_path: Path, run_cli, base: Path, **settings) -> Path:
    """Run a head_pruning job on `make_base`'s tiny BERT (`settings` over the small defaults); its folder."""
    config = {
        "job": "head_pruning",
        "model": "t.train",
        "data": "t.data",
        "importance_size": 10,
        "max_length": 32,
        "progress": False,
        **settings,
    }
    path = tmp_path / f"{config['name']}.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 0, err
    return base / "logs" / config["name"]


def test_head_pruning_job_measures_only_the_orders_asked_for(tmp_path, run_cli):
    """orders: [taylor] with the official criterion computes no attribution; its order follows that criterion."""
    base = make_base(tmp_path / "base")
    config = {"name": "t.prune.official", "rates": [0, 50, 100], "orders": ["taylor"], "taylor": "official"}
    out = run_pruning(tmp_path, run_cli, base, **config, plots=False)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["importance"]) == ["taylor"] and list(metrics["curves"]) == ["taylor"]
    scores = [json.loads(line) for line in (out / "head_scores.jsonl").read_text().splitlines()]
    assert all(s["attattr"] is None for s in scores)
    from attexp.models.loading import load_classifier

    model, tokenizer = load_classifier(base / "models" / "t.train" / "model")
    rows = [json.loads(line) for line in (base / "data" / "t.data" / "validation.jsonl").read_text().splitlines()]
    batches = H.Batches(rows[:10], model, tokenizer, 8, 32, "cpu")
    by_hand = sum(H.taylor_head_scores(Encoder(model), b, "official").sum(dim=0) for b in batches.batches)
    torch.testing.assert_close(torch.tensor(metrics["importance"]["taylor"]), H.normalise_per_layer(by_hand))
    # the default criterion leaves a job's config hash as it was before the key existed
    job = {"job": "head_pruning", "model": "t.train", "data": "t.data", **config}
    without = {k: v for k, v in job.items() if k != "taylor"}
    assert config_hash({**job, "taylor": "michel"}) == config_hash(without)


def test_head_pruning_job_writes_records_table_and_plot(tmp_path, run_cli):
    base = make_base(tmp_path / "base")
    config = {"name": "t.prune", "steps": 3, "rates": [0, 25, 50, 75, 100]}
    out = run_pruning(tmp_path, run_cli, base, **config)
    for name in ("records.jsonl", "head_scores.jsonl", "metrics.json", "table.md", "plots/curve_pruning_curve.png"):
        assert (out / name).is_file(), name
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [r["rate"] for r in records] == [0, 25, 50, 75, 100]
    assert [r["heads_pruned"] for r in records] == [0, 2, 4, 6, 8]
    metrics = json.loads((out / "metrics.json").read_text())
    assert records[0]["accuracy"] == {k: metrics["model_accuracy"] for k in ("attattr", "taylor", "random")}
    assert len(metrics["importance"]["attattr"]) == 2 and len(metrics["importance"]["attattr"][0]) == 4
    table = (out / "table.md").read_text()
    assert "rate | heads_pruned | attattr | taylor | random" in table and "|   50 |            4 |" in table
    assert len((out / "head_scores.jsonl").read_text().splitlines()) == 10

    # the random order is 5 seeded draws: the curve is their mean, the band their range (a test of the job's
    # aggregation against the draws measured one by one)
    random_curve = metrics["curves"]["random"]
    assert random_curve["seeds"] == 5 and "random_min | random_max" in table
    from attexp.models.loading import load_classifier

    model, tokenizer = load_classifier(base / "models" / "t.train" / "model")
    rows = [json.loads(line) for line in (base / "data" / "t.data" / "test.jsonl").read_text().splitlines()]
    batches = H.Batches(rows, model, tokenizer, 64, 32, "cpu")
    encoder_layers, encoder_heads = 2, 4
    draws = {f"s{k}": H.random_order(encoder_layers, encoder_heads, 42 + k) for k in range(5)}
    each = np.array(list(H.pruning_curves(model, batches, draws, config["rates"]).values()))  # [5, rates]
    assert random_curve["y"] == pytest.approx(each.mean(axis=0).tolist())
    assert random_curve["band"] == [pytest.approx(each.min(axis=0).tolist()), pytest.approx(each.max(axis=0).tolist())]
    assert [r["random_band"] for r in records] == [list(b) for b in zip(*random_curve["band"], strict=True)]

    # a run killed while scoring heads resumes: the scored instances are kept (a torn last line is cut off)
    lines = (out / "head_scores.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["attattr"][0][0] = 1000.0  # a marker: recomputing would overwrite it
    for name in ("head_scores.jsonl", "records.jsonl", "metrics.json"):
        (out / name).unlink()
    (out / "head_scores.jsonl.rank0.partial").write_text(json.dumps(first) + "\n" + lines[1] + "\n" + lines[2][:20])
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    assert run_pruning(tmp_path, run_cli, base, **config) == out  # the same job again: it resumes
    scores = [json.loads(line) for line in (out / "head_scores.jsonl").read_text().splitlines()]
    assert sorted(s["idx"] for s in scores) == list(range(10)) and scores[0]["attattr"][0][0] == 1000.0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["importance"]["attattr"][0][0] > 1000
    assert json.loads((out / "manifest.json").read_text())["resumed"] == 1

    # shard files that both hold one instance (two processes scored it) are refused, never merged silently
    for name in ("head_scores.jsonl", "records.jsonl", "metrics.json"):
        (out / name).unlink()
    for rank in (0, 1):
        (out / f"head_scores.jsonl.rank{rank}.partial").write_text(lines[3] + "\n")
    (out / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    code, _, err = run_cli(tmp_path / "t.prune.json", "--base-dir", base)  # the config run_pruning wrote
    assert code == 1 and "idx 3 is in two shard files" in err and not (out / "head_scores.jsonl").exists()


def test_head_pruning_config_errors_exit_2(tmp_path, run_cli):
    base = make_base(tmp_path / "base")
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"job": "head_pruning", "name": "t.p", "model": "t.train", "data": "t.data", "rates": [150]})
    )
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 2 and "rates" in err
    path.write_text(json.dumps({"job": "head_pruning", "name": "t.p", "model": "t.data", "data": "t.data"}))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 2 and "download job" in err
    assert not (base / "logs").exists()


def test_head_pruning_on_two_torchrun_ranks_equals_one_process(tmp_path, run_cli):
    """Each rank scores a share of the importance instances and of the evaluation rows; the accuracies are summed
    over the ranks: the same importance, orders and table as one process."""
    import os
    import socket
    import subprocess
    import sys

    from conftest import ROOT

    base = make_base(tmp_path / "base")
    settings = {"rates": [0, 25, 50, 75, 100], "random_seeds": 2, "plots": False}
    one = run_pruning(tmp_path, run_cli, base, name="t.prune.one", **settings)
    config = {"job": "head_pruning", "name": "t.prune.two", "model": "t.train", "data": "t.data",
              "importance_size": 10, "max_length": 32, "progress": False, **settings}  # fmt: skip
    path = tmp_path / "two.json"
    path.write_text(json.dumps(config))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, "run_job.py", str(path), "--base-dir", str(base)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    two = base / "logs" / "t.prune.two"
    assert (two / "table.md").read_text() == (one / "table.md").read_text()
    a, b = (json.loads((f / "metrics.json").read_text()) for f in (one, two))
    for name in a["importance"]:
        torch.testing.assert_close(torch.tensor(b["importance"][name]), torch.tensor(a["importance"][name]))
    assert a["curves"] == b["curves"] and a["model_accuracy"] == b["model_accuracy"]
    assert (two / "head_scores.jsonl").read_text() != "" and not list(two.glob("*.partial"))
    assert json.loads((two / "manifest.json").read_text())["world_size"] == 2

    # as a job array: each task scores a share of the importance instances; the last to finish evaluates
    path.write_text(json.dumps({**config, "name": "t.prune.array"}))
    for task in ("1/2", "0/2"):
        code, _, err = run_cli(path, "--base-dir", base, "--shard", task)
        assert code == 0, err
    array = base / "logs" / "t.prune.array"
    assert (array / "table.md").read_text() == (one / "table.md").read_text()
    c = json.loads((array / "metrics.json").read_text())
    for name in a["importance"]:
        torch.testing.assert_close(torch.tensor(c["importance"][name]), torch.tensor(a["importance"][name]))
    assert a["curves"] == c["curves"] and a["model_accuracy"] == c["model_accuracy"]
    manifest = json.loads((array / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["shards"] == 2 and manifest["world_size"] == 2
    assert not list(array.glob("*.partial"))
