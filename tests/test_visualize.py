"""HTML report: files written, tokens escaped, every run on every page, links resolve, subwords merge."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from attexp.errors import AttexpError
from attexp.visualize.heatmap import Run, heatmap_row
from attexp.visualize.heatmap import merge_words as merge_wordpieces
from attexp.visualize.report import render_report

EVIL = "<img src=x onerror=alert(1)>"


def record(idx, tokens, attributions, label=1, predictions=(0.2, 0.8), seconds=0.5):
    return {
        "idx": idx,
        "input_ids": list(range(len(tokens))),
        "tokens": list(tokens),
        "label": label,
        "predictions": list(predictions),
        "target": 1,
        "attributions": list(attributions),
        "seconds": seconds,
        "forward_passes": 21,
        "backward_passes": 20,
        "batch": 0,
    }


@pytest.fixture
def runs() -> list[Run]:
    tokens = {
        0: ["[CLS]", "the", "play", "##ing", "was", "great", "[SEP]"],
        1: ["[CLS]", EVIL, "bad", "[SEP]"],
        2: ["[CLS]", "fine", "[SEP]"],
    }
    lig = Run(
        "lig-20",
        "lig",
        [record(i, t, [0.1 * (k - 2) for k in range(len(t))]) for i, t in tokens.items()],
        {"seconds": 0.5, "forward_passes": 21.0, "backward_passes": 20.0},
    )
    # the learned explainer lacks idx 2 and has its records in another order
    emp = Run(
        "empirical <b>",
        "empirical",
        [record(i, tokens[i], [-0.3] * len(tokens[i]), predictions=(0.6, 0.4), seconds=0.01) for i in (1, 0)],
        {"seconds": 0.01, "forward_passes": 1.0, "backward_passes": 0.0},
    )
    return [lig, emp]


class Links(HTMLParser):
    """Collects hrefs, tag names and the text of token spans."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.tags: list[str] = []
        self.token_texts: list[str] = []
        self._in_token = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "a":
            self.hrefs.append(attrs["href"])
        self._in_token = tag == "span" and attrs.get("class") == "tok"

    def handle_endtag(self, tag):
        self._in_token = False

    def handle_data(self, data):
        if self._in_token:
            self.token_texts.append(data)


def parse(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_writes_index_and_pages_for_common_instances(tmp_path, runs):
    written = render_report(tmp_path, runs, label_names=["negative", "positive"])
    assert written == [tmp_path / "index.html", tmp_path / "instances/0.html", tmp_path / "instances/1.html"]
    assert all(p.is_file() for p in written)
    assert not (tmp_path / "instances/2.html").exists()  # idx 2 is not in every run

    index = (tmp_path / "index.html").read_text()
    assert "1 (positive)" in index  # label with its class name
    assert "lig-20" in index and "empirical &lt;b&gt;" in index  # cost table names every run, escaped
    assert "0.01" in index and "21" in index  # mean seconds and passes
    assert '<td class="disagree"' in index  # the two runs predict different classes

    # every link of the index resolves to a written file, and every page links back
    hrefs = parse(tmp_path / "index.html").hrefs
    assert set(hrefs) == {"instances/0.html", "instances/1.html"}
    for href in hrefs:
        page = tmp_path / href
        assert page.is_file()
        for link in parse(page).hrefs:
            assert (page.parent / link).resolve().is_file(), link


def test_every_run_on_each_instance_page(tmp_path, runs):
    render_report(tmp_path, runs, label_names=["negative", "positive"])
    for idx in (0, 1):
        html = (tmp_path / f"instances/{idx}.html").read_text()
        for run in runs:
            assert html.count(f"<h2>{run.name.replace('<', '&lt;').replace('>', '&gt;')} ") == 1
            assert f"({run.explainer})" in html
        assert "0 (negative)" in html and "1 (positive)" in html  # the two runs' predictions
        assert "0.01 s" in html and "21 forward" in html  # each run's cost for this instance
        assert "[PAD]" not in html


def test_tokens_are_escaped(tmp_path, runs):
    render_report(tmp_path, runs)
    for path in tmp_path.rglob("*.html"):
        html = path.read_text()
        assert "<img" not in html and "<b>" not in html
        assert "img" not in parse(path).tags
    page = tmp_path / "instances/1.html"
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.read_text()
    assert EVIL in parse(page).token_texts  # shown as text, once per run
    assert parse(page).token_texts.count(EVIL) == 2


def test_self_contained(tmp_path, runs):
    render_report(tmp_path, runs)
    for path in tmp_path.rglob("*.html"):
        html = path.read_text()
        assert "<script" not in html and "http://" not in html and "https://" not in html
        assert "<style>" in html


def test_merge_subwords(tmp_path, runs):
    render_report(tmp_path, runs, merge_subwords=True)
    texts = parse(tmp_path / "instances/0.html").token_texts
    assert "playing" in texts and "##ing" not in texts and "play" not in texts

    render_report(tmp_path / "raw", runs)
    raw = parse(tmp_path / "raw/instances/0.html").token_texts
    assert "play" in raw and "##ing" in raw

    words, scores, pieces = merge_wordpieces(["[CLS]", "play", "##ing", "##s", "now", "[SEP]"], [0, 1, 2, 3, 4, 5])
    assert words == ["[CLS]", "playings", "now", "[SEP]"]
    assert scores == [0, 6, 4, 5] and pieces[1] == "play ##ing ##s"


def test_heatmap_row_normalises_and_drops_padding():
    row, scale = heatmap_row(["[CLS]", "good", "bad", "[PAD]", "[PAD]"], [0.0, 2.0, -1.0, 9.0, 9.0])
    assert [t.text for t in row] == ["[CLS]", "good", "bad"]
    assert scale == 2.0  # the padding's 9.0 does not set the scale
    alpha = [float(re.search(r"rgba\((\d+), (\d+), (\d+), ([\d.]+)\)", t.style).group(4)) for t in row]
    assert alpha == [0.0, 1.0, 0.5]
    assert "rgba(215, 48, 39" in row[1].style and "rgba(33, 102, 172" in row[2].style  # red +, blue -
    assert row[2].title == "-1.0000"
    zero, zero_scale = heatmap_row(["a"], [0.0])
    assert zero_scale == 0.0 and "0.000)" in zero[0].style


def test_max_instances_and_errors(tmp_path, runs):
    written = render_report(tmp_path, runs, max_instances=1)
    assert [p.name for p in written] == ["index.html", "0.html"]
    assert "instances/1.html" not in (tmp_path / "index.html").read_text()

    with pytest.raises(AttexpError, match="no runs"):
        render_report(tmp_path, [])
    with pytest.raises(AttexpError, match="unique"):
        render_report(tmp_path, [runs[0], runs[0]])
    other = Run("other", "lig", [record(9, ["a"], [1.0])], {})
    with pytest.raises(AttexpError, match="no instance idx is present in every run"):
        render_report(tmp_path, [runs[0], other])
    broken = Run("broken", "lig", [record(0, ["a", "b"], [1.0])], {})
    with pytest.raises(AttexpError, match="2 tokens but 1 attributions"):
        render_report(tmp_path, [broken])


def test_direction_controls_in_label_names_are_shown_not_obeyed():
    from attexp.visualize.text import class_name, preview

    shown = class_name(1, ["negative", "posi\u202etive"])
    assert "\u202e" not in shown and "\\u202e" in shown and shown.startswith("1 (posi")
    assert "\u2066" not in preview(["[CLS]", "a", "\u2066b", "[SEP]"])
