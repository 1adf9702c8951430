"""Attribution trees (attexp.visualize.tree) on hand-made maps, and the visualize-stage analysis jobs
`attribution_tree` and `layer_flow` end to end on a tiny BERT (pages, JSON, escaping, config errors)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_heads import make_base

from attexp.analyze import trees as T
from attexp.visualize import tree as drawing
from attexp.visualize.render import render_page

EVIL = "<img src=x onerror=alert(1)>"


def hand_made() -> np.ndarray:
    """Head-summed maps [3 layers, 5 tokens, 5 tokens] of '[CLS] a b c [SEP]' (row i attends to column j)."""
    maps = np.zeros((3, 5, 5))
    maps[2, 2, 3] = 3.0  # top layer: only counts towards the root
    maps[1, 2, 1] = 1.0  # layer 1 max over rows 1..4 -> normalised 1.0
    maps[1, 2, 3] = 0.5  # 0.5 > 0.4: an edge
    maps[1, 2, 4] = 0.4  # exactly the threshold: no edge
    maps[1, 0, 4] = 5.0  # row 0 ([CLS]) neither sets the scale nor starts edges
    maps[0, 1, 4] = 2.0  # layer 0 max -> 1.0
    maps[0, 3, 4] = 1.6  # 0.8, but 4 is in the tree by then
    maps[0, 3, 1] = 1.0  # 0.5, but 1 is an inner node by then
    maps[0, 4, 0] = 0.9  # 0.45: 4 (a leaf) gathers from [CLS]
    maps[0, 2, 2] = 1.9  # the diagonal never makes an edge
    maps[0, 0, 3] = 10.0  # row 0 again
    return maps


def test_tree_of_a_hand_made_map():
    maps = hand_made()
    # root: row sums of the layer sum without diagonal, negatives and row 0: row 1 = 2.0,
    # row 2 = 3.0 + 1.0 + 0.5 + 0.4 = 4.9, row 3 = 1.6 + 1.0 = 2.6, row 4 = 0.9 -> token 2 ("b")
    assert T.find_root(maps) == 2
    tree = T.build_tree(maps)
    # layer 1 (L - 2): b -> a (1.0), b -> c (0.5); layer 0: a -> [SEP] (1.0), [SEP] -> [CLS] (0.45)
    assert [(e.layer, e.parent, e.child) for e in tree.edges] == [(1, 2, 1), (1, 2, 3), (0, 1, 4), (0, 4, 0)]
    assert [e.weight for e in tree.edges] == pytest.approx([1.0, 0.5, 1.0, 0.45])
    assert tree.root == 2 and tree.levels == {2: 2, 1: 1, 3: 1, 4: 0, 0: 0}
    tokens = ["[CLS]", "a", "b", "c", "[SEP]"]
    as_json = tree.to_json(tokens)
    assert as_json["edges"][0] == {
        "layer": 1,
        "parent": 2,
        "child": 1,
        "weight": 1.0,
        "parent_token": "b",
        "child_token": "a",
    }
    json.dumps(as_json)


def test_threshold_and_layer_counts():
    maps = hand_made()
    lower = T.build_tree(maps, threshold=0.3)  # now b -> [SEP] (0.4) joins in layer 1
    assert (1, 2, 4) in [(e.layer, e.parent, e.child) for e in lower.edges]
    one = T.build_tree(maps[:1])  # a 1-layer model starts at its only layer
    assert one.edges and all(e.layer == 0 for e in one.edges)
    deeper = T.build_tree(maps[[0, 1, 1, 2]])  # 4 layers: walks layers 2, 1 (nothing new there), 0
    assert [(e.layer, e.parent, e.child) for e in deeper.edges] == [(2, 2, 1), (2, 2, 3), (0, 1, 4), (0, 4, 0)]
    assert T.build_tree(np.zeros((2, 3, 3))).edges == []
    with pytest.raises(ValueError, match=r"\[layers, T, T\]"):
        T.build_tree(np.zeros((3, 4)))


def test_svg_page_escapes_tokens(tmp_path):
    tokens = ["[CLS]", "a", EVIL, "c", "[SEP]"]
    tree = T.build_tree(hand_made())
    page = render_page(
        "tree.html.j2",
        tmp_path / "tree.html",
        {
            "idx": 0,
            "tokens": tokens,
            "label": "1",
            "prediction": "1",
            "target": "1",
            "section": drawing.section(tree, tokens, 0.4),
            "previous": None,
            "next": None,
        },
    )
    html = page.read_text()
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("<line ") == 4 and html.count("<circle ") == 5 and "<script" not in html
    again = T.tree_from_json(json.loads(json.dumps(tree.to_json(tokens))))
    assert again == tree


@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """One pipeline on a tiny BERT: trees of idx 3 and 1, the layer flow of idx 0 and 1, and a visualize job that
    puts them on the pages of an explanations file with idx 0, 1, 2."""
    from attexp.cli import main

    base = make_base(tmp_path_factory.mktemp("analysed") / "base", sizes=(30, 6, 8))
    explained = base / "explanations" / "t.explain"
    explained.mkdir(parents=True)
    records = [
        {
            "idx": i,
            "tokens": ["[CLS]", "good", "[SEP]"],
            "attributions": [0.0, 0.5, 0.0],
            "label": 1,
            "predictions": [0.3, 0.7],
            "target": 1,
        }
        for i in range(3)
    ]
    (explained / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (explained / "manifest.json").write_text(json.dumps({"job": "explain", "name": "t.explain", "status": "finished"}))
    (explained / "config.json").write_text("{}")
    models = {"model": "t.train", "data": "t.data", "max_length": 32}
    config = {
        "jobs": [
            {"job": "attribution_tree", "name": "t.tree", "instances": [3, 1], "steps": 3, **models},
            {
                "job": "layer_flow",
                "name": "t.flow",
                "limit": 2,
                **models,
                "iba": {"type": "iba", "steps": 2, "samples": 2, "prior_data": "t.data", "prior_size": 20},
            },
            {
                "job": "visualize",
                "name": "t.vis",
                "explanations": ["t.explain"],
                "trees": "t.tree",
                "layer_flow": "t.flow",
            },
        ]
    }
    path = base / "pipeline.json"
    path.write_text(json.dumps(config))
    assert main([str(path), "--base-dir", str(base)]) == 0
    return base


def test_attribution_tree_job_writes_edges_and_pages(analysed):
    out = analysed / "visualizations" / "t.tree"
    trees = [json.loads(line) for line in (out / "trees.jsonl").read_text().splitlines()]
    assert [t["idx"] for t in trees] == [1, 3]
    for record in trees:
        assert record["tokens"][0] == "[CLS]" and 0 < record["root"] < len(record["tokens"])
        assert all({"layer", "parent", "child", "weight"} <= set(e) for e in record["edges"])
        page = (out / "instances" / f"{record['idx']}.html").read_text()
        assert "<svg" in page and page.count("<line ") == len(record["edges"])
    assert 'href="instances/1.html"' in (out / "index.html").read_text()


def test_layer_flow_job_writes_heatmaps(analysed):
    out = analysed / "visualizations" / "t.flow"
    flows = [json.loads(line) for line in (out / "flow.jsonl").read_text().splitlines()]
    assert [f["idx"] for f in flows] == [0, 1]
    for flow in flows:
        scores = np.asarray(flow["scores"])
        assert scores.shape == (2, len(flow["tokens"]))  # layers x tokens
        assert np.allclose(scores.max(axis=1), 1.0) and np.allclose(scores.min(axis=1), 0.0)  # min-max per row
        assert (np.asarray(flow["capacity"]) >= 0).all()
        assert (out / "plots" / f"{flow['idx']}.png").is_file()
        page = (out / "instances" / f"{flow['idx']}.html").read_text()
        assert page.count('class="cell"') == scores.size and "data:image/png;base64," in page


def test_visualize_job_adds_trees_and_flows_to_instance_pages(analysed):
    pages = analysed / "visualizations" / "t.vis" / "instances"
    first, second, third = ((pages / f"{i}.html").read_text() for i in range(3))
    assert "<svg" not in first and 'class="flow"' in first  # flow only
    assert "<svg" in second and 'class="flow"' in second  # tree and flow
    assert "<svg" not in third and 'class="flow"' not in third  # neither


def test_layer_flow_matches_the_iba_explainer_at_each_layer(tmp_path):
    """Row l of the flow is exactly the `iba` explainer with its bottleneck after layer l (same seed)."""
    import torch
    from tiny import make_batch, tiny_bert, word_tokenizer

    from attexp.analyze.flow import layer_flow
    from attexp.explain.bottleneck import IBAConfig, InformationBottleneck

    tokenizer = word_tokenizer(["good", "bad", "movie"])
    model = tiny_bert(len(tokenizer), num_labels=2, layers=3)
    batch = make_batch(tokenizer, ["good movie", "bad"], [1, 0], num_labels=2)
    settings = IBAConfig(steps=2, samples=2)
    torch.manual_seed(0)
    scores, _ = layer_flow(model, tokenizer, batch, settings, {})
    torch.manual_seed(0)
    for layer in range(3):
        alone = InformationBottleneck(settings.model_copy(update={"layer": layer}), model, tokenizer, {})
        torch.testing.assert_close(scores[:, layer], alone.explain(batch).attributions)


def test_config_errors_exit_2(tmp_path, run_cli):
    config = {
        "job": "layer_flow",
        "name": "t.flow",
        "model": "t.train",
        "data": "t.data",
        "iba": {"type": "iba", "prior_data": "t.missing"},
    }
    base = make_base(tmp_path / "base", sizes=(4, 4, 4))
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 2 and "unknown upstream job 't.missing'" in err
    path = tmp_path / "tree.json"
    path.write_text(
        json.dumps({"job": "attribution_tree", "name": "t.t", "model": "t.train", "data": "t.data", "treshold": 0.3})
    )
    code, _, err = run_cli(path, "--base-dir", base)
    assert code == 2 and "Did you mean 'threshold'?" in err
    assert not (base / "visualizations").exists()


def test_attribution_trees_on_two_torchrun_ranks_equal_one_process(analysed, tmp_path):
    """Each rank builds the trees of a share of the instances; rank 0 merges them sorted by idx."""
    import os
    import socket
    import subprocess
    import sys

    from conftest import ROOT

    config = {"job": "attribution_tree", "name": "t.tree.two", "instances": [3, 1, 0, 2, 5], "steps": 3,
              "model": "t.train", "data": "t.data", "max_length": 32}  # fmt: skip
    one = dict(config, name="t.tree.one")
    for cfg in (one, config):
        (tmp_path / f"{cfg['name']}.json").write_text(json.dumps(cfg))
    from attexp.cli import main

    assert main([str(tmp_path / "t.tree.one.json"), "--base-dir", str(analysed)]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}", "run_job.py"]
    run = [*cmd, str(tmp_path / "t.tree.two.json"), "--base-dir", str(analysed)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(run, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    folder = analysed / "visualizations"
    a = [json.loads(line) for line in (folder / "t.tree.one" / "trees.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (folder / "t.tree.two" / "trees.jsonl").read_text().splitlines()]
    assert [r["idx"] for r in b] == [0, 1, 2, 3, 5] == [r["idx"] for r in a]
    for x, y in zip(a, b, strict=True):  # the same trees; weights to float noise (other batch compositions)
        assert (x["tokens"], x["root"]) == (y["tokens"], y["root"])
        assert [(e["layer"], e["parent"], e["child"]) for e in x["edges"]] == [
            (e["layer"], e["parent"], e["child"]) for e in y["edges"]
        ]
        assert [e["weight"] for e in x["edges"]] == pytest.approx([e["weight"] for e in y["edges"]], abs=1e-5)
    manifest = json.loads((folder / "t.tree.two" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["counts"]["instances"] == 5
    assert not list((folder / "t.tree.two").glob("*.partial"))


def _records(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / name).read_text().splitlines()]


def test_the_analyses_as_array_tasks_one_killed_and_rerun_equal_one_process(analysed, tmp_path, run_cli):
    """attribution_tree and layer_flow as a job array (`--shard I/N`, no rendezvous): task 1 first, task 0 killed
    once it has claimed its share and then rerun; the task that records the last share merges. Trees equal one
    process's; layer flow (IBA samples noise, seeded per share) equals the same array run in the other order."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT

    models = {"model": "t.train", "data": "t.data", "max_length": 32}
    jobs = {
        "tree": {"job": "attribution_tree", "instances": [3, 1, 0, 2, 5], "steps": 3, **models},
        "flow": {"job": "layer_flow", "instances": [0, 1, 4], "iba": {"type": "iba", "steps": 3}, **models},
    }
    for kind, job in jobs.items():
        for name in ("one", "arr", "rev"):
            (tmp_path / f"{kind}.{name}.json").write_text(json.dumps({**job, "name": f"t.{kind}.{name}"}))
    folder = analysed / "visualizations"
    code, _, err = run_cli(tmp_path / "tree.one.json", "--base-dir", analysed)
    assert code == 0, err

    for kind in jobs:
        config = tmp_path / f"{kind}.arr.json"
        out = folder / f"t.{kind}.arr"
        code, _, err = run_cli(config, "--base-dir", analysed, "--shard", "1/2")
        assert code == 0, err
        assert json.loads((out / "manifest.json").read_text())["shards_done"] == [1]
        cmd = [sys.executable, "run_job.py", str(config), "--base-dir", str(analysed), "--shard", "0/2"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "job.shard0.log").exists():
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "running" and manifest["shards_done"] == [1]
        code, _, err = run_cli(config, "--base-dir", analysed, "--shard", "0/2")  # the killed task, rerun
        assert code == 0, err
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "finished" and manifest["world_size"] == 2 and manifest["shards"] == 2
        assert manifest["counts"]["instances"] == len(jobs[kind]["instances"])
        assert not list(out.glob("*.partial")), "shards merged and removed"
        for task in ("0/2", "1/2"):  # the same array in the other order
            code, _, err = run_cli(tmp_path / f"{kind}.rev.json", "--base-dir", analysed, "--shard", task)
            assert code == 0, err

    one, arr = _records(folder / "t.tree.one", "trees.jsonl"), _records(folder / "t.tree.arr", "trees.jsonl")
    assert [r["idx"] for r in arr] == [0, 1, 2, 3, 5] == [r["idx"] for r in one]
    for x, y in zip(one, arr, strict=True):
        assert (x["tokens"], x["root"]) == (y["tokens"], y["root"])
        assert [(e["layer"], e["parent"], e["child"]) for e in x["edges"]] == [
            (e["layer"], e["parent"], e["child"]) for e in y["edges"]
        ]
        assert [e["weight"] for e in x["edges"]] == pytest.approx([e["weight"] for e in y["edges"]], abs=1e-5)
    arr, rev = _records(folder / "t.flow.arr", "flow.jsonl"), _records(folder / "t.flow.rev", "flow.jsonl")
    assert [r["idx"] for r in arr] == [0, 1, 4] == [r["idx"] for r in rev]
    for x, y in zip(arr, rev, strict=True):
        np.testing.assert_allclose(np.array(x["scores"]), np.array(y["scores"]), atol=1e-6)


def test_a_started_array_finished_by_one_process_merges_no_stale_share(analysed, tmp_path, run_cli):
    """A tree job started as an array (task 1 of 2 done) and then run as one process: the job keeps nothing of a
    partial run, so task 1's shard file is dropped rather than met as a second copy of its instances at the merge."""
    job = {"job": "attribution_tree", "name": "t.tree.mixed", "instances": [3, 1, 0], "steps": 3}
    config = tmp_path / "mixed.json"
    config.write_text(json.dumps({**job, "model": "t.train", "data": "t.data", "max_length": 32}))
    out = analysed / "visualizations" / "t.tree.mixed"
    assert run_cli(config, "--base-dir", analysed, "--shard", "1/2")[0] == 0
    assert (out / "trees.jsonl.rank1.partial").exists()
    code, _, err = run_cli(config, "--base-dir", analysed)
    assert code == 0, err
    assert [r["idx"] for r in _records(out, "trees.jsonl")] == [0, 1, 3]
    assert not list(out.glob("*.partial"))
