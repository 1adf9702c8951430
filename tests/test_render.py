"""The report pages in a real browser: headless Chromium renders them, tokens stay text, the table sorts.

Chromium (Debian's `chromium` package; CI installs it with apt) loads the pages from the file system with
networking off. `--dump-dom` gives the DOM after the page's scripts ran, `--screenshot` a PNG of what a
reader sees. A token like `<img src=x onerror=alert(1)>` must reach the DOM as a text node, never as an
element.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from attexp.plots import cost_plots, curve_plots
from attexp.visualize.heatmap import Run
from attexp.visualize.report import render_report
from attexp.visualize.summary import render_summary

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed: `apt-get update && apt-get install -y chromium` (CI installs it)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EVIL = "<img src=x onerror=alert(1)>"


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # a fresh profile per run
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class Dom(HTMLParser):
    """Elements (tag, attributes) and text nodes of a dumped DOM; text of token spans and table cells apart."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.texts: list[str] = []
        self.tokens: list[str] = []
        self.first_cells: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self._cell = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        self._stack.append((tag, attrs))
        if tag == "tr":
            self._cell = 0
        if tag == "td":
            self._cell += 1

    def handle_endtag(self, tag):
        while self._stack and self._stack.pop()[0] != tag:
            pass

    def handle_data(self, data):
        self.texts.append(data)
        tag, attrs = self._stack[-1] if self._stack else ("", {})
        if tag == "span" and attrs.get("class") == "tok":
            self.tokens.append(data)
        if tag == "td" and self._cell == 1 and any(t == "tbody" for t, _ in self._stack):
            self.first_cells.append(data)


def dom(html: str) -> Dom:
    parser = Dom()
    parser.feed(html)
    return parser


def record(idx: int, tokens: list[str], scores: list[float]) -> dict:
    return {
        "idx": idx,
        "input_ids": list(range(len(tokens))),
        "tokens": tokens,
        "label": 1,
        "predictions": [0.3, 0.7],
        "target": 1,
        "attributions": scores,
        "seconds": 0.2,
        "forward_passes": 9,
        "backward_passes": 8,
        "batch": 0,
    }


@pytest.fixture
def report(tmp_path) -> Path:
    tokens = ["[CLS]", "a", EVIL, "great", "movie", "[SEP]"]
    runs = [
        Run("lig <b>", "lig", [record(0, tokens, [0.0, 0.1, -0.6, 0.9, 0.2, 0.0])], {"seconds": 0.2}),
        Run("random", "random", [record(0, tokens, [0.0, 0.5, 0.4, 0.1, 0.3, 0.0])], {"seconds": 0.0}),
    ]
    out = tmp_path / "report"
    render_report(out, runs, summary_href="summary.html")
    rows = [
        {"explanations": "lig <b>", "explainer": "lig", "comprehensiveness": 0.31, "forward_passes": 9.0},
        {"explanations": EVIL, "explainer": "random", "comprehensiveness": 0.12, "forward_passes": 0.0},
        {"explanations": "empirical", "explainer": "empirical", "comprehensiveness": 0.25, "forward_passes": 1.0},
    ]
    curves = {
        "lig <b>": {"comprehensiveness": {"x": [1, 5, 10, 20, 50], "y": [0.1, 0.2, 0.3, 0.4, 0.5]}},
        EVIL: {"comprehensiveness": {"x": [1, 5, 10, 20, 50], "y": [0.0, 0.05, 0.1, 0.15, 0.2]}},
    }
    plots = curve_plots(curves, tmp_path / "plots", {EVIL: "random"}) + cost_plots(rows, tmp_path / "plots")
    columns = ["explanations", "explainer", "comprehensiveness", "forward_passes"]
    render_summary(
        out,
        columns,
        [[row[c] for c in columns] for row in rows],
        [(p.stem, p.read_bytes()) for p in plots],
        title=f"test {EVIL}",
    )
    return out


def test_instance_page_shows_the_token_as_text_and_renders(report, tmp_path):
    page = (report / "instances" / "0.html").resolve()
    shown = dom(chromium(tmp_path, page.as_uri(), "--dump-dom").stdout)
    assert shown.tokens.count(EVIL) == 2, "the token is a text node in each explainer's row"
    assert not [a for tag, a in shown.elements if tag == "img"], "no element was made from the token"
    assert "lig <b>" in " ".join(shown.texts) and not [t for t, _ in shown.elements if t == "b"]

    screenshot = tmp_path / "instance.png"
    chromium(tmp_path, page.as_uri(), f"--screenshot={screenshot}", "--window-size=1000,700")
    image = Image.open(io.BytesIO(screenshot.read_bytes())).convert("RGB")
    assert image.size == (1000, 700)
    colours = image.getcolors(maxcolors=1_000_000)
    assert len(colours) > 20, "a blank page has one colour; the heatmap has many"
    reds = sum(count for count, (r, g, b) in colours if r > 150 and g < 120 and b < 120)
    assert reds > 50, "the top token's red background is painted"


def test_summary_page_sorts_escapes_and_embeds_plots(report, tmp_path):
    page = (report / "summary.html").resolve()
    shown = dom(chromium(tmp_path, page.as_uri(), "--dump-dom").stdout)
    assert shown.first_cells == ["lig <b>", EVIL, "empirical"], "unsorted: the order of the table"
    images = [a for tag, a in shown.elements if tag == "img"]
    assert [a["alt"] for a in images] == ["curve_comprehensiveness", "cost_vs_comprehensiveness"]
    assert all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert EVIL in shown.texts and f"Summary: test {EVIL}" in shown.texts

    by_comprehensiveness = dom(chromium(tmp_path, page.as_uri() + "#sort=comprehensiveness", "--dump-dom").stdout)
    assert by_comprehensiveness.first_cells == ["lig <b>", "empirical", EVIL], "descending by default"
    by_cost = dom(chromium(tmp_path, page.as_uri() + "#sort=forward_passes:asc", "--dump-dom").stdout)
    assert by_cost.first_cells == [EVIL, "empirical", "lig <b>"]

    screenshot = tmp_path / "summary.png"
    chromium(tmp_path, page.as_uri(), f"--screenshot={screenshot}", "--window-size=1000,1400")
    image = Image.open(screenshot).convert("RGB")
    assert len(image.getcolors(maxcolors=1_000_000)) > 20


def test_index_links_to_the_summary(report):
    index = (report / "index.html").read_text()
    assert 'href="summary.html"' in index and "<script" not in index


def test_attribution_tree_and_layer_flow_pages_render(tmp_path):
    """The attribution tree (inline SVG) and the IBA layer x token heatmap, as a reader sees them."""
    import numpy as np

    from attexp import plots
    from attexp.analyze.trees import build_tree
    from attexp.visualize import flow, tree
    from attexp.visualize.render import render_page

    tokens = ["[CLS]", "a", EVIL, "great", "movie", "[SEP]"]
    maps = np.zeros((3, 6, 6))  # head-summed attributions [layers, T, T] of a hand-made instance
    maps[2, 3, 4] = 3.0
    maps[1, 3, 1], maps[1, 3, 2], maps[1, 3, 4] = 1.0, 0.6, 0.8
    maps[0, 2, 5], maps[0, 4, 0] = 1.0, 0.7
    built = build_tree(maps)
    context = {"idx": 7, "tokens": tokens, "label": "1", "prediction": "1", "target": "1", "previous": None}
    context.update(section=tree.section(built, tokens, 0.4), next=None)
    page = render_page("tree.html.j2", tmp_path / "tree.html", context).resolve()
    shown = dom(chromium(tmp_path, page.as_uri(), "--dump-dom").stdout)
    assert [t for t, _ in shown.elements].count("line") == len(built.edges) >= 4
    assert not [a for tag, a in shown.elements if tag == "img"], "no element was made from the token"
    assert EVIL in shown.texts, "the token is a text node (in the SVG and the edge table)"
    screenshot = tmp_path / "tree.png"
    chromium(tmp_path, page.as_uri(), f"--screenshot={screenshot}", "--window-size=1000,700")
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    blues = sum(count for count, (r, g, b) in colours if b > 140 and r < 110 and g < 150)
    reds = sum(count for count, (r, g, b) in colours if r > 180 and g < 90 and b < 80)
    assert blues > 300, "the nodes and edges are painted"
    assert reds > 100, "the root node is painted red"

    values = np.linspace(0, 1, 18).reshape(3, 6)  # [layers, T]
    png = plots.flow_plot(values, tokens, tmp_path / "flow.png", "instance 7", "score")
    context = {"idx": 7, "tokens": tokens, "label": "1", "prediction": "1", "target": "1", "previous": None}
    context.update(section=flow.section(values, tokens, "score", png), next=None)
    page = render_page("flow.html.j2", tmp_path / "flow.html", context).resolve()
    shown = dom(chromium(tmp_path, page.as_uri(), "--dump-dom").stdout)
    assert EVIL in shown.texts and [a["alt"] for tag, a in shown.elements if tag == "img"] == ["layer x token heatmap"]
    assert len([t for t, a in shown.elements if t == "td" and a.get("class") == "cell"]) == 18
    screenshot = tmp_path / "flow.png"
    chromium(tmp_path, page.as_uri(), f"--screenshot={screenshot}", "--window-size=1000,900")
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1_000_000)
    assert len(colours) > 50, "the heatmap table and the plot have many colours"
    assert sum(count for count, (r, g, b) in colours if r > 150 and g < 120 and b < 120) > 500, "red cells"
