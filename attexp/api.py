"""The Python API: explain a classifier's predictions on a few texts, look at them, evaluate them, save them, all
from a notebook and through the same code the jobs run.

    import attexp
    exp = attexp.explain(model, tokenizer, ["a gorgeous, witty film", "a dull mess"], "lig", n_steps=20)
    exp.show()                                   # heatmaps, words merged (inline in a notebook)
    attexp.evaluate(exp, model, tokenizer)       # ERASER comprehensiveness/sufficiency against a random floor
    exp.save("explanations/my.lig")              # an explain job's artifact: evaluate/visualize jobs read it

`explain` validates its explainer settings with the explain job's config types (a typo gets the job's
did-you-mean message, as a `ConfigError`), seeds like the job, batches rows like the job and builds records in
the job's engine (`attexp.explain.batching.explain_rows`), so for the same model, texts and settings the records
equal an explain job's records (a test checks every registered explainer), except for the wall time in `seconds`.
`evaluate` runs the evaluate job's metrics and random floor (`attexp.evaluate.metric_table`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attexp import registry
from attexp.config.build import validate_object
from attexp.config.hashing import hash_config
from attexp.config.upstream import upstream_refs
from attexp.errors import AttexpError, ConfigError
from attexp.evaluate.metric_table import score_runs, with_floor
from attexp.evaluate.model_scorer import ModelScorer
from attexp.explain.artifact import RECORDS, save_records
from attexp.explain.batching import explain_rows, text_length
from attexp.explain.prompted import build_explainer
from attexp.io.artifacts import MANIFEST, find_artifact, new_manifest, read_manifest
from attexp.io.files import read_jsonl
from attexp.io.manifests import ExplanationsManifest
from attexp.io.records import EXPLANATIONS
from attexp.models.loading import label_names_of, load_classifier, resolve_device
from attexp.utils import seed_everything
from attexp.visualize.heatmap import Run
from attexp.visualize.render import render_fragment

__all__ = ["Evaluation", "Explanations", "evaluate", "explain"]


def explain(
    model: Any,
    tokenizer: Any = None,
    /,
    texts: str | Sequence[str] = (),
    explainer: str | Mapping[str, Any] = "lig",
    *,
    text_pairs: Sequence[str] | None = None,
    labels: Sequence[int] | None = None,
    target: str | int = "predicted",
    batch_size: int = 16,
    max_length: int = 128,
    device: str = "auto",
    precision: str | None = None,
    seed: int = 42,
    base_dir: str | Path | None = None,
    progress: bool = False,
    max_tokens_per_pass: int | None = None,
    **options: Any,
) -> Explanations:
    """Explain `model`'s predictions on `texts` (one string or many) with `explainer`.

    model, tokenizer: objects (a transformers sequence classifier, in any attention implementation, and its
        tokenizer), or a `save_pretrained` folder or hub name for either (tokenizer None: the model's own).
        The model is put in eval mode on `device` (`auto`: CUDA when there is one).
    explainer: a registered name (`attexp.registry.EXPLAINERS`, `run_job.py --list`) with its settings as
        keyword `options` (`n_steps=20`; `model` and `tokenizer` are positional-only, so `empirical`'s
        `model="<distill job>"` is an option too), or a config dict `{"type": "lig", ...}` as in a config file.
    text_pairs: second texts of sentence pairs. labels: gold labels (needed for `target="label"`).
    target: the class to explain, "predicted", "label" or a class id. batch_size, max_length: as in the explain
        job. precision: "bf16" or "fp16" autocast of the prediction forward (and of the empirical explainer);
        gradient explainers stay float32. seed: seeds torch like the job does (stochastic explainers).
    base_dir: where explainers that read an upstream artifact (`empirical`, `attexplainer`) find it.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise ConfigError("attexp.explain: no texts given; pass a string or a list of strings.")
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ConfigError(f"attexp.explain: {len(text_pairs)} text_pairs for {len(texts)} texts; give one per text.")
    if labels is not None and len(labels) != len(texts):
        raise ConfigError(f"attexp.explain: {len(labels)} labels for {len(texts)} texts; give one per text.")
    spec = {"type": explainer, **options} if isinstance(explainer, str) else {**dict(explainer), **options}
    config = validate_object(
        registry.JOBS.get("explain").config_type,  # the explain job's own config type
        {
            "name": "api",
            "model": "api",
            "data": "api",
            "explainer": spec,
            "target": target,
            "batch_size": batch_size,
            "max_length": max_length,
            "device": device,
            "precision": precision,
            "seed": seed,
            "progress": progress,
            "max_tokens_per_pass": max_tokens_per_pass,
        },
        "attexp.explain",
    )
    entry = registry.EXPLAINERS.get(config.explainer.type)
    torch_device = resolve_device(config.device)
    model, tokenizer, model_name = _classifier(model, tokenizer, getattr(entry.cls, "needs_attentions", False))
    model.to(torch_device).eval()
    upstream = _upstream(config.explainer, base_dir)
    rows = []
    for i, text in enumerate(texts):
        row: dict[str, Any] = {"idx": i, "text": text}
        if text_pairs is not None:
            row["text_pair"] = text_pairs[i]
        row["label"] = None if labels is None else int(labels[i])
        rows.append(row)
    rows.sort(key=text_length)  # the explain job's order
    seed_everything(config.seed)
    explainer_obj = build_explainer(entry.cls, config.explainer, model, tokenizer, upstream)
    records = [
        record
        for batch in explain_rows(
            explainer_obj,
            model,
            tokenizer,
            rows,
            batch_size=config.batch_size,
            max_length=config.max_length,
            target=config.target,
            device=torch_device,
            progress=config.progress,
            precision=config.precision,
            max_tokens_per_pass=config.max_tokens_per_pass,
        )
        for record in batch
    ]
    records.sort(key=lambda r: r["idx"])
    return Explanations(
        records,
        explainer=config.explainer.model_dump(mode="json"),
        label_names=label_names_of(model),
        settings={
            "target": config.target,
            "batch_size": config.batch_size,
            "max_length": config.max_length,
            "seed": config.seed,
            "model": model_name,
            "device": str(torch_device),
        },
    )


def _classifier(model: Any, tokenizer: Any, eager: bool) -> tuple[Any, Any, str]:
    """(model, tokenizer, a name for the manifest) from objects or names/folders."""
    name = getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    if isinstance(model, str | os.PathLike):
        where = Path(model).expanduser()
        looks_like_path = isinstance(model, os.PathLike) or str(model).startswith(("/", ".", "~"))
        if looks_like_path and not where.is_dir():
            raise ConfigError(
                f"attexp: model folder {where} does not exist. Pass a save_pretrained folder (config.json, weights, "
                "tokenizer), a hub name such as 'distilbert/distilbert-base-uncased-finetuned-sst-2-english', or a "
                "model object with its tokenizer."
            )
        model, loaded = load_classifier(where if where.is_dir() else str(model), eager_attention=eager)
        name = str(where if where.is_dir() else model.config._name_or_path)
        tokenizer = loaded if tokenizer is None else tokenizer
    if tokenizer is None:
        raise ConfigError("attexp.explain: a model object needs its tokenizer; pass it as the second argument.")
    if isinstance(tokenizer, str | os.PathLike):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tokenizer)
    return model, tokenizer, str(name)


def _upstream(explainer: Any, base_dir: str | Path | None) -> dict[str, Path]:
    """The artifact folders an explainer's config names (e.g. the distill job of `empirical`)."""
    names = [name for _, name, _ in upstream_refs(explainer)]
    if names and base_dir is None:
        raise ConfigError(
            f"attexp.explain: explainer {explainer.type!r} reads job(s) {', '.join(map(repr, names))}; pass "
            f"base_dir= (the base directory that holds them)."
        )
    found = {}
    for name in names:
        artifact = find_artifact(Path(base_dir), name)
        if artifact is None:
            raise ConfigError(f"attexp.explain: no artifact {name!r} in {base_dir}; run that job first.")
        found[name] = artifact.require_finished().dir
    return found


@dataclass
class Explanations:
    """The explanation records of one explainer on some texts: the fields of an explain job's records.jsonl.

    `records` are dicts (idx, text, tokens, word_ids, words, predictions, logits, target, attributions, cost ...),
    `explainer` the explainer's config, `label_names` the classes by id, `settings` target, batching and model.
    """

    records: list[dict]
    explainer: dict[str, Any]
    label_names: list[str] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records)

    def __getitem__(self, i: int) -> dict:
        return self.records[i]

    @property
    def title(self) -> str:
        return self.name or str(self.explainer.get("type"))

    def to_dataset(self) -> Any:
        """The records as a `datasets.Dataset` (one row per instance, the same columns)."""
        import datasets

        return datasets.Dataset.from_list(self.records)

    def save(self, folder: str | Path) -> Path:
        """Write the explain job's artifact into `folder` (records.jsonl, config.json, manifest.json). Saved as
        `<base>/explanations/<name>/`, evaluate and visualize jobs read it by name like any explain job's."""
        folder = Path(folder)
        name = self.name or folder.name
        config = {"job": "explain", "name": name, "explainer": self.explainer, **self.settings, "source": "attexp.api"}
        manifest = new_manifest(
            schema=EXPLANATIONS, stage="explain", config=config, config_hash=hash_config(None, config), upstream={}
        )
        manifest.explainer = self.explainer
        manifest.target = self.settings.get("target")
        manifest.label_names = self.label_names
        return save_records(folder, self.records, config, manifest)

    @classmethod
    def load(cls, folder: str | Path) -> Explanations:
        """An explain job's artifact (`explanations/<name>/`), or one written by `save`."""
        folder = Path(folder)
        manifest = read_manifest(folder / MANIFEST)
        EXPLANATIONS.check(manifest, str(folder))
        if not isinstance(manifest, ExplanationsManifest):
            manifest = EXPLANATIONS.read_manifest(manifest.to_json())
        return cls(
            read_jsonl(folder / RECORDS),
            explainer=manifest.explainer,
            label_names=manifest.label_names,
            settings={"target": manifest.target},
            name=manifest.name or folder.name,
        )

    def html(
        self,
        merge_subwords: bool = True,
        scale_specials: bool = True,
        max_instances: int | None = 20,
        page: bool = False,
    ) -> str:
        """The heatmaps (the report pages' rows) as HTML: escaped, self-contained, no script."""
        run = Run(self.title, str(self.explainer.get("type")), self.records, {})
        return render_fragment(run, self.label_names, merge_subwords, scale_specials, max_instances, page=page)

    def _repr_html_(self) -> str:
        return self.html()

    def show(self, path: str | Path | None = None, **options: Any) -> str:
        """Show the heatmaps: inline in a notebook; with `path`, also written there as a page. Returns the HTML.
        options: `merge_subwords` (True), `scale_specials` (True), `max_instances` (20)."""
        if path is not None:
            Path(path).write_text(self.html(page=True, **options), encoding="utf-8")
        fragment = self.html(**options)
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display

            if get_ipython() is not None:
                display(HTML(fragment))
        except ImportError:
            pass
        return fragment

    def to_ferret(self) -> list[Any]:
        """ferret `Explanation` objects (text, tokens, scores, explainer, target) when ferret is importable, else
        dicts with the same fields."""
        try:
            from ferret.explainers.explanation import Explanation as FerretExplanation
        except ImportError:
            FerretExplanation = None
        out = []
        for r in self.records:
            fields = {
                "text": r.get("text"),
                "tokens": r["tokens"],
                "scores": r["attributions"],
                "explainer": str(self.explainer.get("type")),
                "target": r["target"],
            }
            if FerretExplanation is None:
                out.append(fields)
                continue
            import inspect

            params = inspect.signature(FerretExplanation).parameters
            if "target_pos_idx" in params:  # ferret >= 0.5: the class id is target_pos_idx, target its name
                names = self.label_names or []
                fields["target_pos_idx"] = r["target"]
                fields["target"] = names[r["target"]] if r["target"] < len(names) else str(r["target"])
            out.append(FerretExplanation(**fields))
        return out


@dataclass
class Evaluation:
    """What the evaluate job writes: `table` (Markdown, with the statement against the random floor), `metrics`
    (metrics.json's content) and `instances` (instances.jsonl's rows)."""

    table: str
    metrics: dict[str, Any]
    instances: list[dict]

    def __str__(self) -> str:
        return self.table

    def _repr_markdown_(self) -> str:
        return self.table


def evaluate(
    explanations: Explanations | Iterable[Explanations] | Mapping[str, Explanations],
    model: Any,
    tokenizer: Any = None,
    metrics: Sequence[str | Mapping[str, Any]] = ("eraser",),
    reference: Explanations | str | None = None,
    *,
    random_floor: bool = True,
    batch_size: int = 64,
    device: str = "auto",
) -> Evaluation:
    """Score one or several `Explanations` with the evaluate job's metrics (names or config dicts) on `model`.

    reference: the explanations compared with by the agreement metrics (`mse`, `spearman`, ...), an
    `Explanations` or the name of one of `explanations`. random_floor: add the seeded random row and test each
    explainer against it, as the job does.
    """
    if isinstance(explanations, Explanations):
        runs_in = {explanations.title: explanations}
    elif isinstance(explanations, Mapping):
        runs_in = dict(explanations)
    else:
        runs_in = {}
        for exp in explanations:
            name, k = exp.title, 2
            while name in runs_in:
                name, k = f"{exp.title}.{k}", k + 1
            runs_in[name] = exp
    if not runs_in:
        raise ConfigError("attexp.evaluate: no explanations given.")
    ref_name = None
    if isinstance(reference, Explanations):
        ref_name = next((n for n, e in runs_in.items() if e is reference), reference.title)
    elif reference is not None:
        ref_name = str(reference)
    specs = [{"type": m} if isinstance(m, str) else dict(m) for m in metrics]
    config = validate_object(
        registry.JOBS.get("evaluate").config_type,  # the evaluate job's own config type
        {
            "name": "api",
            "explanations": list(runs_in),
            "reference": ref_name,
            "metrics": specs,
            "batch_size": batch_size,
            "random_floor": random_floor,
            "device": device,
        },
        "attexp.evaluate",
    )
    metric_objs = [registry.METRICS.get(m.type).cls(m) for m in config.metrics]
    reference_records = None
    if ref_name is not None:
        ref = reference if isinstance(reference, Explanations) else runs_in.get(ref_name)
        if ref is None:
            raise ConfigError(f"attexp.evaluate: reference {ref_name!r} is none of {list(runs_in)}.")
        reference_records = ref.records
    model, tokenizer, _ = _classifier(model, tokenizer, eager=False)
    torch_device = resolve_device(config.device)
    model.to(torch_device).eval()
    scorer = None
    if any(m.needs_model for m in metric_objs):
        scorer = ModelScorer(model, tokenizer, torch_device, batch_size=config.batch_size)
    runs = [(name, str(exp.explainer.get("type")), exp.records) for name, exp in runs_in.items()]
    if config.random_floor:
        runs = with_floor(runs, metric_objs, tokenizer)
    try:
        scores = score_runs(runs, metric_objs, reference_records, scorer)
    except KeyError as err:
        raise AttexpError(f"attexp.evaluate: a record lacks field {err}; pass records made by attexp.explain.") from err
    cost = (
        {"forward_passes": scorer.forward_passes, "rows": scorer.rows, "seconds": round(scorer.seconds, 3)}
        if scorer
        else {}
    )
    return Evaluation(
        scores.table, json.loads(json.dumps(scores.metrics_json(ref_name, None, cost))), scores.instances()
    )
