"""The config hash: which keys enter it, declared on the config types, and the job's code version.

A key marked `NeutralDefault` leaves the hash as it was while it is at its default (a finished artifact written
before the key existed is still skipped), `NotHashed` keys never enter it, and a job's `version` enters it from 2 on.
"""

from __future__ import annotations

import json

import pytest

from attexp import registry
from attexp.config.hashing import config_hash, hash_config
from attexp.config.schema import NeutralDefault, marker

EXPLAIN = {"job": "explain", "name": "e", "model": "t", "data": "d", "explainer": {"type": "lig", "n_steps": 5}}


def neutral_keys() -> list[tuple[str, str, object]]:
    """(job or component type, key, default) of every NeutralDefault field of a registered config type."""
    found = []
    for reg in (registry.JOBS, *registry.BY_KIND.values()):
        for entry in reg.entries():
            for key, info in entry.config_type.model_fields.items():
                if marker(info.metadata, NeutralDefault) is not None:
                    found.append((entry.name, key, info.get_default(call_default_factory=True)))
    return found


def test_the_keys_added_after_artifacts_existed_are_declared_neutral_on_their_config_types():
    declared = {(owner, key) for owner, key, _ in neutral_keys()}
    for owner, key in [
        ("explain", "precision"),
        ("evaluate", "paper"),
        ("distill", "mode"),
        ("distill", "correlation_weight"),
        ("head_pruning", "taylor"),
        ("train_agent", "eval_size"),
        ("train_agent", "continue_from"),
        ("lig", "mixed_precision"),
        ("lig", "seed"),
        ("distill", "features"),
    ]:
        assert (owner, key) in declared, (owner, key)


@pytest.mark.parametrize("owner,key,default", neutral_keys(), ids=lambda v: str(v))
def test_a_neutral_key_at_its_default_leaves_the_hash_and_any_other_value_changes_it(owner, key, default):
    if owner in registry.JOBS:
        job = {"job": owner, "name": "j"}
        at_default, without = {**job, key: default}, job
    else:  # a component: inside an explain job's explainer block (or a metric of an evaluate job)
        kind = next(k for k, reg in registry.BY_KIND.items() if owner in reg)
        if kind == "explainer":
            block = {"type": owner}
            without = {**EXPLAIN, "explainer": block}
            at_default = {**EXPLAIN, "explainer": {**block, key: default}}
        elif kind == "metric":
            without = {"job": "evaluate", "name": "e", "metrics": [{"type": owner}]}
            at_default = {**without, "metrics": [{"type": owner, key: default}]}
        elif kind == "model source":  # a train job's model (tiny), else an explain job's classifier
            block = {
                "type": owner,
                **{"local": {"path": "m"}, "hub": {"name": "m"}, "peft": {"path": "m"}}.get(owner, {}),
            }
            job = {"job": "train", "name": "t", "data": "d"} if owner == "tiny" else EXPLAIN
            without = {**job, "model": block}
            at_default = {**job, "model": {**block, key: default}}
        else:
            pytest.skip(f"no neutral keys expected on a {kind}")
    default = default.model_dump(mode="json") if hasattr(default, "model_dump") else default
    assert config_hash(json.loads(json.dumps(at_default, default=str))) == config_hash(without)
    other = "not the default" if default != "not the default" else "other"
    changed = json.loads(json.dumps(at_default, default=str))
    if owner in registry.JOBS:
        changed[key] = other
    elif isinstance(changed.get("model"), dict):
        changed["model"][key] = other
    elif "explainer" in changed:
        changed["explainer"][key] = other
    else:
        changed["metrics"][0][key] = other
    assert config_hash(changed) != config_hash(without)


def test_wandb_and_device_never_enter_the_hash_but_results_settings_do():
    assert config_hash({**EXPLAIN, "device": "cuda", "wandb": {"enabled": True}}) == config_hash(EXPLAIN)
    assert config_hash({**EXPLAIN, "batch_size": 3}) != config_hash(EXPLAIN)
    assert config_hash({**EXPLAIN, "explainer": {"type": "lig", "n_steps": 6}}) != config_hash(EXPLAIN)


def test_the_code_version_enters_the_hash_from_version_two():
    cls = registry.JOBS.get("explain").config_type
    assert hash_config(cls, EXPLAIN, 1) == config_hash(EXPLAIN)
    assert hash_config(cls, EXPLAIN, 2) != hash_config(cls, EXPLAIN, 1) != hash_config(cls, EXPLAIN, 3)


def test_a_job_whose_version_was_bumped_refuses_the_artifact_of_its_older_code(tmp_path, run_cli, monkeypatch):
    """A finished artifact of version 1 is skipped by the same code, and refused (exit 2, nothing changed) once the
    job's version is 2: its results came from the older code."""
    from attexp.io.files import read_json

    rows = tmp_path / "rows.csv"
    rows.write_text("text,label\n" + "".join(f"sentence {i} {'good' if i % 2 else 'bad'},{i % 2}\n" for i in range(40)))
    config = tmp_path / "d.json"
    source = {"type": "local", "files": {"all": str(rows)}}
    config.write_text(json.dumps({"job": "download", "name": "v.download", "source": source}))
    base = tmp_path / "base"
    assert run_cli(config, "--base-dir", base)[0] == 0
    manifest = base / "data" / "v.download" / "manifest.json"
    before = manifest.read_bytes()
    assert read_json(manifest)["code_version"] == 1
    code, out, _ = run_cli(config, "--base-dir", base)
    assert code == 0 and manifest.read_bytes() == before  # skipped
    monkeypatch.setattr(registry.JOBS.get("download").cls, "version", 2)
    code, _, err = run_cli(config, "--base-dir", base)
    assert code == 2 and "already finished with a different config" in err
    assert manifest.read_bytes() == before
