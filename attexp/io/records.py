"""The record schemas of every artifact, in one place, with their versions.

An artifact's manifest names its schema (`{"schema": {"name": ..., "version": ...}}`); the stage that writes it
declares it (`Job.schema`), and a stage that reads it asks for it through `Artifact.read` / `Artifact.records`,
which checks the manifest's schema name and version before reading a line and says which version it read. A
change to the fields of a record that an older reader could misread bumps its version here; the golden records
of each current version live in tests/fixtures/records/ and a test reads them.

The records themselves are JSON lines, one per instance, each with a stable integer `idx`:

- dataset (`data/<job>/{train,validation,test}.jsonl`): `idx, text, label` (+ `text_pair` for sentence pairs);
- explanations (`explanations/<job>/records.jsonl`): `idx, input_ids, tokens, label, predictions, target,
  attributions` (the fields Thermostat and ferret read), `text` (+ `text_pair`), `logits` (the classifier's raw
  outputs; `predictions` are their softmax), `word_ids` and `words` (which word each token belongs to, and each
  word as written; from fast tokenizers; read through `attexp.io.words`) and the record's cost `seconds,
  forward_passes, backward_passes, batch` (+ `extras`: per-instance scalars of the explainer); padding is never
  stored. Records written before `text`, `logits` and the words existed lack them (same version: nothing an
  older reader reads changed);
- evaluation (`logs/<job>/instances.jsonl`): `explanations, idx` and one value per metric column; the run-level
  results are `metrics.json` (with the table and each column's better direction, so that the visualize stage
  can mark it without importing a metric).

Readers of records have token strings and no tokenizer; `STRUCTURAL_TOKENS` are the strings of the structural
specials they leave out (`attexp.models.inputs.structural_ids` is the same notion by id, for code that has the
tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from attexp.errors import AttexpError
from attexp.io import manifests as M

PAD_TOKENS = frozenset({"[PAD]", "<pad>"})
"""Token strings of padding (records carry none; any that slip in are dropped before drawing)."""

STRUCTURAL_TOKENS = frozenset({"[CLS]", "[SEP]", "<s>", "</s>", "<cls>", "<sep>"}) | PAD_TOKENS
"""Token strings of structural specials: never content, never a word of their own text. [UNK] and [MASK] are
not structural: in a text they stand for real content."""


@dataclass(frozen=True)
class RecordSchema:
    """The schema of one kind of artifact: its name and version (written in the manifest), the file(s) of
    records it holds, the fields every record of them has (`required`) or may have (`optional`), and the typed
    manifest of its folder (`attexp.io.manifests`)."""

    name: str
    version: int
    files: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    manifest: type[M.Manifest] = M.Manifest

    def manifest_entry(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version}

    def read_manifest(self, data: Mapping[str, Any]) -> M.Manifest:
        """`data` (a manifest.json) as this schema's typed manifest."""
        return self.manifest.model_validate(dict(data))

    def check(self, manifest: Mapping[str, Any] | M.Manifest, where: str) -> int:
        """The schema version `manifest` declares; an error if it is another schema or a newer version.

        A manifest that declares no schema at all (written by hand, or by a tool that only knows the record
        format) is read as the current version.
        """
        if isinstance(manifest, M.Manifest):
            declared = manifest.schema_.model_dump() if manifest.schema_ is not None else {}
        else:
            declared = manifest.get("schema") or {}
        if not declared:
            return self.version
        name, version = declared.get("name"), declared.get("version")
        if name != self.name:
            raise AttexpError(
                f"{where}: the manifest declares schema {name!r}, but a {self.name!r} artifact (version "
                f"{self.version}) is expected here. Point the config at a job of the right stage."
            )
        if not isinstance(version, int) or version > self.version:
            raise AttexpError(
                f"{where}: {self.name} records of version {version!r}; this attexp reads version {self.version} "
                f"and older. Upgrade attexp, or rerun the job that wrote them with --force."
            )
        return version


DATASET = RecordSchema(
    "attexp.dataset",
    1,
    files=("train.jsonl", "validation.jsonl", "test.jsonl"),
    required=("idx", "text", "label"),
    optional=("text_pair",),
    manifest=M.DatasetManifest,
)
EXPLANATIONS = RecordSchema(
    "attexp.explanations",
    1,
    files=("records.jsonl",),
    required=("idx", "input_ids", "tokens", "label", "predictions", "target", "attributions"),
    optional=(
        "text",
        "text_pair",
        "word_ids",
        "words",
        "logits",
        "seconds",
        "forward_passes",
        "backward_passes",
        "batch",
        "extras",
    ),
    manifest=M.ExplanationsManifest,
)
EVALUATION = RecordSchema(
    "attexp.evaluation",
    1,
    files=("instances.jsonl", "metrics.json", "table.md"),
    required=("explanations", "idx"),
    manifest=M.EvaluationManifest,
)
CLASSIFIER = RecordSchema(
    "attexp.classifier", 1, files=("metrics.jsonl",), required=("epoch",), manifest=M.ClassifierManifest
)
EMPIRICAL_EXPLAINER = RecordSchema(
    "attexp.empirical_explainer",
    1,
    files=("metrics.jsonl",),
    required=("epoch",),
    manifest=M.EmpiricalExplainerManifest,
)
ATTEXPLAINER_AGENT = RecordSchema(
    "attexp.attexplainer_agent",
    1,
    files=("rewards.jsonl", "state/last.safetensors", "state/last.json"),
    required=("idx", "episode", "reward"),
    manifest=M.AgentManifest,
)
HEAD_PRUNING = RecordSchema(
    "attexp.head_pruning", 1, files=("records.jsonl", "metrics.json", "table.md"), manifest=M.AnalysisManifest
)
TRIGGERS = RecordSchema(
    "attexp.triggers", 1, files=("records.jsonl", "metrics.json", "table.md"), manifest=M.AnalysisManifest
)
ATTRIBUTION_TREE = RecordSchema(
    "attexp.attribution_tree",
    1,
    files=("trees.jsonl",),
    required=("idx", "tokens", "root", "edges"),
    manifest=M.PagesManifest,
)
LAYER_FLOW = RecordSchema(
    "attexp.layer_flow",
    1,
    files=("flow.jsonl",),
    required=("idx", "tokens", "scores", "capacity"),
    manifest=M.PagesManifest,
)
VISUALIZATION = RecordSchema("attexp.visualization", 1, files=("index.html",), manifest=M.PagesManifest)

SCHEMAS = {
    s.name: s
    for s in (
        DATASET,
        EXPLANATIONS,
        EVALUATION,
        CLASSIFIER,
        EMPIRICAL_EXPLAINER,
        ATTEXPLAINER_AGENT,
        HEAD_PRUNING,
        TRIGGERS,
        ATTRIBUTION_TREE,
        LAYER_FLOW,
        VISUALIZATION,
    )
}
