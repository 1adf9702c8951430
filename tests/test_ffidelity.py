"""F-Fidelity (attexp.train.augment): random masking during fine-tuning, a train job continuing another
(`trained` model source), and an evaluate job measuring deletion on the masked copy (`deletion_model`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny import word_tokenizer

from attexp.errors import AttexpError
from attexp.models.loading import load_classifier
from attexp.models.sources.trained import TrainedModel, TrainedModelConfig
from attexp.train.augment import MaskAugment, mask_randomly, masked_loss

FIXTURES = Path(__file__).parent / "fixtures"


def test_masking_replaces_the_drawn_fraction_of_content_tokens_only():
    tokenizer = word_tokenizer(["a", "b", "c", "d", "e", "f", "g", "h"])
    batch = tokenizer(["a b c d e f g h", "a b c", "d"], padding=True, return_tensors="pt")
    ids, attention = batch["input_ids"], batch["attention_mask"]
    specials = {tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id}
    torch.manual_seed(0)
    for rate in (0.1, 0.5, 1.0):
        out = mask_randomly(ids, attention, specials, [rate], tokenizer.mask_token_id)
        for row in range(3):
            n = int(attention[row].sum()) - 2  # content tokens
            changed = (out[row] != ids[row]).nonzero().flatten().tolist()
            assert len(changed) == min(n, math.ceil(rate * n))
            assert all(out[row, p] == tokenizer.mask_token_id for p in changed)
            assert 0 not in changed and int(attention[row].sum()) - 1 not in changed  # [CLS], [SEP] kept
            assert torch.equal(out[row, attention[row] == 0], ids[row, attention[row] == 0])  # padding kept
    # 0.3 of 50 content tokens is 15, not 16 (a float32 0.3 is slightly above 0.3)
    fifty = word_tokenizer(["w"])(" ".join(["w"] * 50), return_tensors="pt")
    out = mask_randomly(fifty["input_ids"], fifty["attention_mask"], specials, [0.3], 4)
    assert int((out != fifty["input_ids"]).sum()) == 15
    # a rate per text, drawn from the list: over many draws both rates occur
    counts = {
        (mask_randomly(ids[:1], attention[:1], specials, [0.25, 1.0], 4) != ids[:1]).sum().item() for _ in range(50)
    }
    assert counts == {2, 8}


def test_the_masked_loss_shows_the_model_masked_texts():
    tokenizer = word_tokenizer(["a", "b", "c", "d"])
    batch = dict(tokenizer(["a b c d", "b c"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([0, 1])
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
            seen.append(input_ids.clone())
            return type("Out", (), {"loss": torch.tensor(0.0)})()

    masked_loss(MaskAugment(rates=[1.0]), tokenizer)(Recorder(), batch)
    (ids,) = seen
    content = batch["attention_mask"].bool() & (batch["input_ids"] > 4)
    assert torch.all(ids[content] == tokenizer.mask_token_id)
    with pytest.raises(AttexpError, match="has no pad token"):
        masked_loss(MaskAugment(token="pad"), type("T", (), {"pad_token_id": None})())
    with pytest.raises(ValueError, match=r"fractions in \(0, 1\]"):
        MaskAugment(rates=[0.0])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from attexp.cli import main

    base = tmp_path_factory.mktemp("ffidelity")
    assert main([str(FIXTURES / "configs" / "pipeline.ffidelity.small.jsonnet"), "--base-dir", str(base)]) == 0
    return base


def test_the_ffidelity_pipeline_measures_deletion_on_the_masked_copy(base):
    masked = json.loads((base / "models" / "rt.train.small.masked" / "config.json").read_text())
    assert (masked["model"]["type"], masked["model"]["job"]) == ("trained", "rt.train.small")
    assert masked["mask_augment"]["rates"] == [0.01, 0.05, 0.1, 0.2, 0.5]
    original = json.loads((base / "logs" / "rt.evaluate.small.ffidelity.original" / "metrics.json").read_text())
    on_copy = json.loads((base / "logs" / "rt.evaluate.small.ffidelity.masked" / "metrics.json").read_text())
    assert original["model"] == "rt.train.small" and on_copy["model"] == "rt.train.small.masked"
    lig = "rt.explain.lig.small.ffidelity"
    for metrics in (original, on_copy):
        for key in ("eraser.comprehensiveness", "naopc.naopc_comprehensiveness", "soft.soft_comprehensiveness"):
            assert math.isfinite(metrics["results"][lig][key])
    # the same explanations, another model: the deletion numbers differ
    assert original["results"][lig]["eraser.comprehensiveness"] != on_copy["results"][lig]["eraser.comprehensiveness"]
    page = (base / "visualizations" / "rt.visualize.small.ffidelity" / "summary.html").read_text()
    assert "<h2>Rankings</h2>" in page and 'id="rank-tau"' in page and "naopc_comprehensiveness" in page
    table = (base / "logs" / "rt.evaluate.small.ffidelity.masked" / "table.md").read_text()
    assert "Kendall's tau between the columns' rankings" in table
    assert "soft_comprehensiveness" in on_copy["rankings"]["columns"]


def test_a_trained_source_continues_the_job_it_names(base):
    source = TrainedModel(TrainedModelConfig(job="rt.train.small"))
    model, tokenizer = source.load(2, ["negative", "positive"], [], base / ".cache", 0, root=base)
    reference, _ = load_classifier(base / "models" / "rt.train.small" / "model")
    encoded = tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(**encoded).logits, reference(**encoded).logits)
    with pytest.raises(AttexpError, match="has the classes"):
        source.load(2, ["neg", "pos"], [], base / ".cache", 0, root=base)


def test_a_deletion_model_that_is_not_a_masked_copy_is_refused(base, tmp_path, run_cli):
    config = {
        "jobs": [
            {
                "job": "evaluate",
                "name": "rt.evaluate.wrong",
                "explanations": ["rt.explain.lig.small.ffidelity"],
                "deletion_model": "rt.train.small",  # the original itself, not a masked copy
                "metrics": [{"type": "eraser"}],
            }
        ]
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(path, "--base-dir", base)
    assert code != 0 and "must be a copy of the explained classifier" in err
    assert not (base / "logs" / "rt.evaluate.wrong" / "metrics.json").exists()
