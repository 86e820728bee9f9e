"""The course site (docs/build): a page for every notebook, each saying what it ran with; the workflow that
publishes it; and the built site in headless Chromium (``--site DIR``: CI builds it from the notebooks its
colab session executed, then runs this file; without a built site those tests skip, saying how to build one)."""

from __future__ import annotations

import builtins
import dis
import functools
import http.server
import json
import os
import re
import tempfile
import threading
import types
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from cbir_tutorial.lessons.exercises import LESSONS
from cbir_tutorial.lessons.site import (benchmarks_page, blank_missing_cells, folded_explanation, folded_solution,
                                        heading_anchor, linked_results, notebook_links, page_header, section_anchors,
                                        settings_read_by, shown_paths, site_repository, site_url, streams_as_shown,
                                        small_run_note, without_empty_columns)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(path.stem for path in (ROOT / "notebooks").glob("*.ipynb"))
CHROMIUM = "/usr/bin/chromium"
#: A predict-then-run question's check in a code cell (docs/build folds its answer).
PREDICTION = re.compile(r"\bquestions\.nb\d\d\.p\d+\.check\(")
#: site.js's test for a printed table's line (a gap of two spaces or more, not numpy's padding before a "]"; or
#: box-drawing characters), as a JavaScript expression of ``line``.
TABLE_LINE_JS = "(/\\S {2,}[^\\s\\]]/.test(line) || /[\\u2502-\\u257f]/.test(line))"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def toctree_entries(text: str) -> list[str]:
    """The entries of every ``{toctree}`` block of a MyST page."""
    entries = []
    for block in re.findall(r"```\{toctree\}\n(.*?)```", text, flags=re.S):
        entries += [line.strip() for line in block.splitlines() if line.strip() and not line.startswith(":")]
    return entries


def test_every_notebook_has_a_page_in_order():
    entries = toctree_entries((ROOT / "docs" / "index.md").read_text(encoding="utf-8"))
    chapters = [entry.removeprefix("chapters/") for entry in entries if entry.startswith("chapters/")]
    assert chapters == NOTEBOOKS, ("docs/index.md's toctree must list every notebook of notebooks/, in order, as "
                                   f"chapters/<name>: it lists {chapters}")
    assert {"api", "benchmarks"} <= set(entries)


def test_a_page_header_says_what_ran_and_where_to_run_it():
    code = 'params = notebook_parameters(\n    catalogue="auto",\n    weights="random",  # or imagenet\n)\n'
    settings = {"CBIR_NB_CATALOGUE": "sample", "CBIR_NB_WEIGHTS": "random", "CBIR_NB_GALLERY_ROWS": "10000",
                "CBIR_TUTORIAL_STRICT": "1", "MPLBACKEND": "Agg"}
    read = settings_read_by(code, settings)
    assert read == {"CBIR_NB_CATALOGUE": "sample", "CBIR_NB_WEIGHTS": "random", "CBIR_TUTORIAL_STRICT": "1"}
    offline = page_header("06_evaluation.ipynb", read, "notebooks/test_run.env")
    assert "`notebooks/test_run.env` (`CBIR_NB_CATALOGUE=sample`, `CBIR_NB_WEIGHTS=random`)" in offline
    assert "STRICT" not in offline  # the test run's strictness says nothing to a reader
    assert "**Random weights** for VGG16, ResNet50 and Xception" in offline and "without a GPU" in offline
    assert "package's own answers" not in offline and "test-run settings" not in offline
    assert "MPLBACKEND" not in offline and "colab.research.google.com" not in offline
    assert "setup_cells --repository" not in offline and "Run it yourself" in offline  # a maintainer's step
    assert "{download}`download the notebook </notebooks/06_evaluation.ipynb>`" in offline  # docs/build copies them
    online = page_header("06_evaluation.ipynb", {"CBIR_NB_WEIGHTS": "imagenet"}, "notebooks/site_run.env",
                         gpu="Tesla T4", repository="me/cbir-tutorial")
    assert "random" not in online and "on a GPU (Tesla T4)" in online
    tested = page_header("06_evaluation.ipynb", {"CBIR_TUTORIAL_SOLUTIONS": "1"}, "notebooks/test_run.env", gpu=None,
                         test_run=True)
    assert "checked with the package's own answers" in tested and "small settings of the project's tests" in tested
    assert "GPU" not in tested and "CPU" not in tested  # executed elsewhere: the machine is not known
    # what a reader needs first opens the note; the settings in full are folded below the links
    assert tested.startswith("::::{note}\n**A test-run build: the numbers on this page show that every step runs")
    assert "a build with `notebooks/site_run.env` (what the published course runs)" in tested
    assert "[published course](https://me.github.io/cbir/) runs every chapter" in small_run_note("me/cbir")
    index = small_run_note(where="site")  # the index has no numbers of its own; the benchmark page's are full runs
    assert "the numbers in the chapters show" in index and "benchmark results come from full runs" in index
    assert "CBIR_NB_WEIGHTS=random" not in offline.partition(":::{dropdown}")[0]  # the settings in full are folded
    assert tested.index("Run it yourself") < tested.index(":::{dropdown} How this page was made") < \
        tested.index("CBIR_TUTORIAL_SOLUTIONS=1") and tested.endswith(":::\n::::")
    assert "A test-run build" not in online and online.index("on a GPU") < online.index(":::{dropdown}")
    assert "VGG16" not in page_header("02_cnns.ipynb", {}, "notebooks/site_run.env")  # builds no Keras backbone
    assert ("https://colab.research.google.com/github/me/cbir-tutorial/blob/main/notebooks/06_evaluation.ipynb"
            in online)
    assert notebook_links("me/cbir-tutorial", "06_evaluation.ipynb") in online
    assert site_url("Me/cbir-tutorial") == "https://me.github.io/cbir-tutorial/" and site_url(None) is None
    # the published site links to its repository: pyproject.toml's, else the GitHub Actions run's
    assert site_repository("me/cbir", {"GITHUB_REPOSITORY": "fork/cbir"}) == "me/cbir"
    assert site_repository(None, {"GITHUB_REPOSITORY": "fork/cbir"}) == "fork/cbir"
    assert site_repository(None, {}) is None and site_repository(None, {"GITHUB_REPOSITORY": ""}) is None


def test_the_build_machines_folders_are_shown_as_a_reader_can_map_them():
    text = ("Catalogue('/data/fashion-sample'): /data/fashion-sample/images/1.jpg\n"
            "/tmp/ipykernel_4/29.py:17: Warning\n(/tmp/pytest-of-me/pytest-3/run/cache/milvus/nb09.db)\n"
            "/home/me/.cache/x /data/fashion-sample-2/y /tmpdir/z\n"
            "'/tmp/pytest-of-me/pytest-3/run/cache/trained/fashion-46' ~/.cache/cbir_tutorial/features/a.npz")
    # the package's cache shows as <cache>, wherever it lay (site review 14: a test run's under /tmp read <tmp>)
    assert shown_paths(text, "/data/fashion-sample/", "/tmp", "/home/me") == (
        "Catalogue('<data>'): <data>/images/1.jpg\n"
        "<tmp>/ipykernel_4/29.py:17: Warning\n(<cache>/milvus/nb09.db)\n"
        "~/.cache/x /data/fashion-sample-2/y /tmpdir/z\n"
        "'<cache>/trained/fashion-46' <cache>/features/a.npz")
    assert shown_paths("/home/me/.cache/cbir_tutorial/data/x.csv", None, "/tmp", "/home/me") == "<cache>/data/x.csv"
    assert shown_paths("/data/x", None, "/tmp", "/") == "/data/x"
    # the environment summary's cache row, printed or as a table, cut short by pandas: the package's cache
    summary = ("internet                  False\n"
               "cache                     /tmp/pytest-of-me/pytest-7/notebooks-sampl...\n"
               "<tr>\n  <th>cache</th>\n  <td>/tmp/pytest-of-me/pytest-7/notebooks-sampl...</td>\n</tr>")
    assert shown_paths(summary, None, "/tmp", "/home/me") == (
        "internet                  False\ncache                     <cache>\n"
        "<tr>\n  <th>cache</th>\n  <td><cache></td>\n</tr>")
    assert shown_paths("cache hits: 3 of 4", None, "/tmp", "/home/me") == "cache hits: 3 of 4"


def test_mentions_of_the_benchmark_results_link_to_the_section_they_cite():
    text = ("see benchmarks/RESULTS.md section 4 and `benchmarks/RESULTS.md` (`benchmarks/RESULTS.md`, section 4b: "
            "+0.01); benchmarks/RESULTS.md section 12 has no heading; [RESULTS](../benchmarks/RESULTS.md) stays")
    anchors = section_anchors(RESULTS.replace("## 2. Ranking", "## 4. Ranking"))
    assert anchors == {"4": "4-ranking-bench_rankingpy---profile",
                       "4b": "4b-recipes-past-the-baseline-bench_qualitypy---recipes-only"}
    assert linked_results(text, anchors=anchors) == (
        "see [benchmark results, section 4](../benchmarks.md#4-ranking-bench_rankingpy---profile) and "
        "[benchmark results](../benchmarks.md) ([benchmark results, section 4b](../benchmarks.md"
        "#4b-recipes-past-the-baseline-bench_qualitypy---recipes-only): +0.01); "
        "[benchmark results](../benchmarks.md) section 12 has no heading; [RESULTS](../benchmarks/RESULTS.md) stays")
    # where the file is (the repository, not the package) says nothing on the site, which links to it
    assert linked_results("(`benchmarks/RESULTS.md`, section 4, in the tutorial's GitHub repository; the benchmarks "
                          "are not installed with the package), then `benchmarks/RESULTS.md` in the repository (not "
                          "installed with the package), and `benchmarks/RESULTS.md` on GitHub; the benchmarks are not "
                          "installed with the package)", anchors=anchors) == (
        "([benchmark results, section 4](../benchmarks.md#4-ranking-bench_rankingpy---profile)), then "
        "[benchmark results](../benchmarks.md), and [benchmark results](../benchmarks.md))")
    broken = "(benchmarks/RESULTS.md section 4, in the\n  tutorial's GitHub repository, has"  # over a line break
    assert linked_results(broken, anchors=anchors) == \
        "([benchmark results, section 4](../benchmarks.md#4-ranking-bench_rankingpy---profile), has"
    real = section_anchors((ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8"))
    cited = {number for path in (ROOT / "notebooks").glob("*.ipynb")
             for number in re.findall(r"RESULTS\.md`?,? section (\d+[a-z]?)\b", path.read_text(encoding="utf-8"))}
    assert cited and cited <= set(real), f"notebooks cite sections {sorted(cited - set(real))} RESULTS.md lacks"


def test_a_missing_value_in_an_output_table_is_an_empty_cell():
    html = ('<table class="dataframe"><thead><tr><th></th><th>NaN</th></tr></thead><tbody><tr><th>0</th>'
            '<td>NaN</td><td>&lt;NA&gt;</td><td class="data row0 col2" >nan</td><td> NaT </td><td>1.5</td>'
            '<td>NaN loss</td><td>None</td></tr></tbody></table>')
    assert blank_missing_cells(html) == (
        '<table class="dataframe"><thead><tr><th></th><th></th></tr></thead><tbody><tr><th>0</th>'
        '<td></td><td></td><td class="data row0 col2" ></td><td></td><td>1.5</td>'
        '<td>NaN loss</td><td>None</td></tr></tbody></table>')
    assert blank_missing_cells("<p>NaN</p> <code>&lt;NA&gt;</code>") == "<p>NaN</p> <code>&lt;NA&gt;</code>"


def test_a_column_empty_in_every_row_is_left_out_of_an_output_table():
    import pandas as pd

    results = pd.DataFrame({"rank": [1, 2], "brand": ["", ""], "description": ["a shirt", "a bag"],
                            "price": [float("nan")] * 2, "category": ["shirt", ""]})
    tidy = without_empty_columns(blank_missing_cells(results.to_html()))
    headers = re.findall(r"<th>(\w*)</th>", tidy.split("<tbody>")[0])
    assert headers == ["", "rank", "description", "category"]  # the index's header cell, then the columns kept
    assert re.findall(r"<td>([^<]*)</td>", tidy) == ["1", "a shirt", "shirt", "2", "a bag", ""]  # one blank: kept
    styled = without_empty_columns(blank_missing_cells(results.style.to_html()))
    assert "brand" not in styled and "price" not in styled and "a shirt" in styled
    whole = results.assign(brand=["Gucci", ""]).to_html()
    assert without_empty_columns(whole) == whole  # every column has a value somewhere
    spanned = results.set_index(["category", "rank"]).to_html().replace("<th>", '<th rowspan="1">', 1)
    assert without_empty_columns(spanned) == spanned  # not a plain grid: left as it is
    assert without_empty_columns("<p>no table</p>") == "<p>no table</p>"


RESULTS = """# Benchmark results

What is measured, on what machine ([Targets](#targets)).

Latest run: today. Lab notes.

## Machine and software

| | |
|---|---|
| CPU | two cores |

## Commands

```bash
## not a heading: a comment in a fence
python benchmarks/bench_ranking.py
```

## Targets

| target | measured | met? |
|---|---|---|
| fast | 2x | **no** (section 2); see section 4b and section 9 |

## 2. Ranking (`bench_ranking.py --profile`)

Ranking.

### 4b. Recipes: past the baseline (`bench_quality.py --recipes-only`)

Recipes.
"""


def test_the_benchmark_page_opens_with_what_is_measured_then_the_targets():
    assert heading_anchor("2. Ranking (`bench_ranking.py --profile`)") == "2-ranking-bench_rankingpy---profile"
    assert heading_anchor("Search time, 2026-11-29 05:27 (x = speed)") == "search-time-2026-11-29-0527-x--speed"
    page = benchmarks_page(RESULTS)
    lines = page.splitlines()
    assert lines[:3] == ["# Benchmark results", "", "What is measured, on what machine ([Targets](#targets))."]
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## Targets", "## The sections", "## Machine and software", "## Commands",
                        "## not a heading: a comment in a fence", "## 2. Ranking (`bench_ranking.py --profile`)"]
    assert "**no** ([section 2](#2-ranking-bench_rankingpy---profile)); see " \
           "[section 4b](#4b-recipes-past-the-baseline-bench_qualitypy---recipes-only) and section 9 |" in page
    sections = page.split("## The sections\n")[1].split("## Machine and software")[0]
    assert sections.index("Latest run: today. Lab notes.") < sections.index("- [Machine and software](#machine-and")
    assert "- [2. Ranking (`bench_ranking.py --profile`)](#2-ranking-bench_rankingpy---profile)" in sections
    assert "## not a heading" not in sections and page.count("python benchmarks/bench_ranking.py") == 1
    with pytest.raises(ValueError, match="no '## Targets' section"):
        benchmarks_page(RESULTS.replace("## Targets", "## Aims"))
    real = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    real_page = benchmarks_page(real)
    assert sorted(line for line in real.splitlines() if line.startswith("#")) == sorted(
        line for line in real_page.splitlines() if line.startswith("#") and line != "## The sections")
    assert real_page.index("## Targets") < real_page.index("## Machine and software")


def test_a_folded_solution_holds_the_worked_answer():
    folded = folded_solution("nb06", "q2")
    assert folded.startswith("::::{dropdown} A worked answer") and "def ap_at_k(" in folded
    blank = folded_solution("nb06", "q2", blank=True)
    assert blank.startswith("*On this page the exercise cell was left blank: the check above ran the package's")
    assert blank.endswith(folded)
    with pytest.raises(ValueError, match="nb06 has exercises q1 to q3, not q9"):
        folded_solution("nb06", "q9")


@pytest.mark.parametrize("lesson", sorted(LESSONS))
def test_every_folded_answer_runs_pasted_alone_into_a_fresh_namespace(lesson):
    for number, name in enumerate(LESSONS[lesson], start=1):
        folded = folded_solution(lesson, f"q{number}")
        code = folded.split("```python\n", 1)[1].rsplit("\n```", 1)[0]
        namespace = {}
        exec(compile(code, f"{lesson} q{number}", "exec"), namespace)  # a NameError here: an import is missing
        assert callable(namespace[name]), f"{lesson} q{number}'s folded answer does not define {name}"
        unbound = sorted(global_names(namespace[name].__code__) - set(namespace) - set(dir(builtins)))
        assert not unbound, f"{lesson} q{number}'s folded answer calls {unbound}, which it neither defines nor imports"


def global_names(code) -> set[str]:
    """The global names ``code`` (and the functions and comprehensions inside it) reads."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    return names.union(*(global_names(c) for c in code.co_consts if isinstance(c, types.CodeType)))


def test_the_text_after_a_prediction_is_folded_up_to_its_first_heading():
    text = "The answer is (b): see\n\n```python\n# not a heading\n```\n\n## Summary\n\nThe numbers:"
    folded = folded_explanation(text)
    assert folded.startswith("::::{dropdown} The answer explained (predict first)\nThe answer is (b): see\n")
    assert folded.endswith("# not a heading\n```\n::::\n\n## Summary\n\nThe numbers:")
    assert folded_explanation("The answer is (c).") == ("::::{dropdown} The answer explained (predict first)\n"
                                                        "The answer is (c).\n::::")
    assert folded_explanation("## Summary\n\nThe numbers:") == "## Summary\n\nThe numbers:"


def test_printed_output_is_shown_as_jupyter_shows_it_in_place_with_progress_bars_finished():
    bar = "1/1 ━━ 0s 4s/step - loss: 10.8" + "\x08" * 30 + "\r1/1 ━━ 5s 5s/step - loss: 10.8 - val_map: 0.9\n"
    outputs = [{"output_type": "stream", "name": "stdout", "text": "caption:\n"},
               {"output_type": "display_data", "data": {"text/html": "<table></table>"}},
               {"output_type": "stream", "name": "stdout", "text": "Epoch 1/2\n"},
               {"output_type": "stream", "name": "stdout", "text": bar},
               {"output_type": "stream", "name": "stderr", "text": "a warning\r\n"}]
    shown = streams_as_shown(outputs)
    assert [o["output_type"] for o in shown] == ["stream", "display_data", "stream", "stream"]
    assert shown[0]["text"] == "caption:\n"  # still above its table
    assert shown[2]["text"] == "Epoch 1/2\n1/1 ━━ 5s 5s/step - loss: 10.8 - val_map: 0.9\n"
    assert shown[3] == {"output_type": "stream", "name": "stderr", "text": "a warning\r\n"}


def test_the_workflow_builds_the_site_with_docs_build_and_deploys_it_to_pages():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "site.yml").read_text(encoding="utf-8"))
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    commands = "\n".join(step.get("run", "") for step in build["steps"])
    assert "docs/build" in commands and 'pip install -e ".[dev]"' in commands
    assert any(step.get("uses", "").startswith("actions/upload-pages-artifact") and
               step["with"]["path"] == "docs/_build/html" for step in build["steps"])
    assert deploy["needs"] == "build" and any(step.get("uses", "").startswith("actions/deploy-pages")
                                              for step in deploy["steps"])


# --- the built site, in a browser -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def site(pytestconfig) -> Path:
    folder = pytestconfig.getoption("site")
    if not folder:
        pytest.skip("no built site given: build one (docs/build, or docs/build --executed DIR for notebooks executed "
                    "already) and run pytest tests/test_site.py --site docs/_build/html")
    folder = Path(folder)
    assert (folder / "index.html").is_file(), f"{folder} holds no built site (no index.html)"
    return folder


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on a free localhost port (the search page loads its index with a script)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def draws(notebook: Path) -> bool:
    """Whether the executed notebook has a picture among its outputs."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return any("image/png" in output.get("data", {}) for cell in cells for output in cell.get("outputs", []))


def predictions(notebook: Path) -> int:
    """How many predict-then-run questions the notebook checks (``questions.nbNN.pN.check(``)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(bool(PREDICTION.search("".join(cell["source"]))) for cell in cells if cell["cell_type"] == "code")


def explanations(notebook: Path) -> int:
    """How many predictions the notebook follows with text before a heading (docs/build folds it with the answer)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return sum(PREDICTION.search("".join(cell["source"])) is not None
               and after["cell_type"] == "markdown" and not "".join(after["source"]).startswith("#")
               for cell, after in zip(cells, cells[1:]) if cell["cell_type"] == "code")


def broken_links(site: Path, page: Path, hrefs: list[str]) -> list[str]:
    """The internal links of ``page`` whose file, or anchor in it, does not exist."""
    broken = []
    for href in hrefs:
        parsed = urlparse(href)
        if parsed.scheme or href.startswith(("mailto:", "//")):
            continue
        target = (page.parent / unquote(parsed.path)).resolve() if parsed.path else page.resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file() or not target.is_relative_to(site.resolve()):
            broken.append(href)
        elif parsed.fragment and target.suffix == ".html" and \
                f'id="{unquote(parsed.fragment)}"' not in target.read_text(encoding="utf-8"):
            broken.append(href)
    return broken


#: The coloured spans of printed output whose contrast with the box behind them is below 4.5:1 (WCAG AA), as
#: ``[text, contrast]``; computed in the page, as a reader's browser shows them.
PALE_COLOURS = """() => {
    const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
    const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const back = (node) => { for (; node; node = node.parentElement) {
        const c = rgb(getComputedStyle(node).backgroundColor);
        if (c.length >= 3 && (c.length < 4 || c[3] > 0)) return c; } return [255, 255, 255]; };
    return [...document.querySelectorAll('.cell_output span[style*="color"]')].map((span) => {
        const [a, b] = [lum(rgb(getComputedStyle(span).color)), lum(back(span.parentElement))].sort((x, y) => y - x);
        return [span.textContent.trim(), Math.round((a + 0.05) / (b + 0.05) * 100) / 100]; })
        .filter(([text, ratio]) => text && ratio < 4.5); }"""


@pytest.mark.browser
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_chapter_page_shows_its_outputs_without_errors_or_broken_links(site, served, browser, name,
                                                                         sample_dir):
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    try:
        page.goto(f"{served}/chapters/{name}.html", wait_until="load")
        assert "How this page was made" in page.locator("main").inner_text()
        if draws(site / "_sources" / "chapters" / f"{name}.ipynb"):
            images = page.locator(".cell_output img")
            assert images.count() >= 1, f"{name}: the notebook draws, its page shows no picture"
            assert page.evaluate("() => [...document.querySelectorAll('.cell_output img')]"
                                 ".every(img => img.complete && img.naturalWidth > 0)"), f"{name}: a picture is broken"
            squeezed = page.evaluate("() => [...document.querySelectorAll('.cell_output img')].filter(img => "
                                     "img.naturalWidth > 600 && img.getBoundingClientRect().width < 600).length")
            assert squeezed == 0, f"{name}: {squeezed} wide pictures shrunk below 600 px on a phone (site.js)"
            uncued = page.evaluate("() => [...document.querySelectorAll('img.cbir-wide')].filter(img => "
                                   "!img.closest('.cbir-scrolls').previousElementSibling?.classList.contains("
                                   "'cbir-scroll-cue') || img.closest('.cbir-scrolls').querySelectorAll('img')"
                                   ".length !== 1).length")
            unlinked = page.evaluate("() => [...document.querySelectorAll('.cell_output img')].filter(img => "
                                     "img.naturalWidth > 1.25 * img.getBoundingClientRect().width && "
                                     "img.closest('a')?.getAttribute('href') !== img.getAttribute('src')).length")
            assert unlinked == 0, f"{name}: {unlinked} pictures shown small without a link to their full size"
            assert uncued == 0, f"{name}: {uncued} wide pictures without the line saying they scroll right above them"
        uncued_tables = page.evaluate("() => [...document.querySelectorAll('article table')].filter(table => "
                                      "table.scrollWidth > table.parentElement.clientWidth + 1 && !table.parentElement"
                                      ".previousElementSibling?.classList.contains('cbir-scroll-cue')).length")
        assert uncued_tables == 0, f"{name}: {uncued_tables} tables wider than a phone, no line saying they scroll"
        cut = page.evaluate("() => [...document.querySelectorAll('.cell_output pre')].filter(pre => pre.scrollWidth"
                            " > pre.clientWidth + 1 && !pre.previousElementSibling?.classList.contains("
                            "'cbir-scroll-cue')).map(pre => pre.textContent.slice(0, 60))")
        assert not cut, f"{name}: printed output cut at a phone's edge, neither wrapped nor cued: {cut}"
        long_lines = page.evaluate("() => [...document.querySelectorAll('.cell_output pre:not(.cbir-wrap)')]"
                                   ".filter(pre => pre.scrollWidth > pre.clientWidth + 1).flatMap(pre => "
                                   "pre.textContent.split('\\n')).filter(line => line.length > 60 && "
                                   f"!{TABLE_LINE_JS}).map(line => line.slice(0, 60))")
        assert not long_lines, f"{name}: printed sentences that do not wrap beside a printed table: {long_lines}"
        kept = page.evaluate("() => [...document.querySelectorAll('.cell_output .cbir-keep')].map(span => "
                             f"span.textContent).filter(line => !{TABLE_LINE_JS}).map(line => line.slice(0, 60))")
        assert not kept, f"{name}: sentences kept on one line as if table rows (site.js tableLine): {kept}"
        pale = page.evaluate(PALE_COLOURS)
        assert not pale, f"{name}: coloured printed text below 4.5:1 contrast (site.js readableColours): {pale[:5]}"
        cramped = page.evaluate("() => [...document.querySelectorAll('.cell_output table[id^=T_] td')].filter(cell => "
                                "parseFloat(getComputedStyle(cell).paddingLeft) < 2).length")
        assert cramped == 0, f"{name}: {cramped} table cells without padding (their numbers run together)"
        assert page.locator(".output.traceback, .output.error").count() == 0, f"{name}: an error output"
        asked = predictions(site / "_sources" / "chapters" / f"{name}.ipynb")
        folded = page.locator("details.below-input:not([open])").count()
        assert folded >= asked, f"{name}: {asked} predictions, {folded} folded answers (the reader predicts first)"
        explained = page.locator("details.sd-dropdown:not([open])", has_text="The answer explained").count()
        assert explained == explanations(ROOT / "notebooks" / f"{name}.ipynb"), f"{name}: an answer's explanation shows"
        raw_math = page.evaluate("""() => { const main = document.querySelector('main').cloneNode(true);
            main.querySelectorAll('.math, pre, code, .cell_output').forEach(node => node.remove());
            return (main.innerText.match(/\\\\[(\\[]/g) || []).length; }""")
        assert raw_math == 0, f"{name}: LaTeX shown as text, not as math"
        text = page.locator("main").inner_text()
        assert "Traceback (most recent call last)" not in text
        machine = [folder for folder in (tempfile.gettempdir() + "/", str(Path.home()) + "/", str(sample_dir))
                   if folder in text]
        assert not machine, f"{name}: the build machine's folders {machine} are shown (conf.py hides them)"
        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
        assert not broken_links(site, site / "chapters" / f"{name}.html", hrefs)
        off_screen = page.evaluate("() => [...document.querySelectorAll('.prev-next-area a, .prev-next-area svg')]"
                                   ".filter(a => a.getBoundingClientRect().right > window.innerWidth + 0.5).length")
        assert off_screen == 0, f"{name}: the previous/next links run past a phone's screen (site.css)"
        wide = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 1, f"{name}: the page is {wide} px wider than a phone's screen"
        wrapping = page.evaluate("() => [...document.querySelectorAll('.cell_output pre:not(.cbir-wrap)')].filter("
                                 "pre => getComputedStyle(pre).whiteSpace !== 'pre' || "
                                 "getComputedStyle(pre).overflowX !== 'auto').length")
        assert wrapping == 0, f"{name}: {wrapping} printed tables wrap their lines instead of scrolling (site.css)"
        missing = page.evaluate("() => [...document.querySelectorAll('.cell_output table :is(td, th)')]"
                                ".map(cell => cell.textContent.trim()).filter(text => ['NaN', 'nan', '<NA>', 'NaT']"
                                ".includes(text))")
        assert not missing, f"{name}: output tables show {sorted(set(missing))} for empty cells (conf.py blanks them)"
        controls = page.evaluate("() => [...document.querySelectorAll('.cell_output pre')].filter(pre => "
                                 "/[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]/.test(pre.textContent)).length")
        assert controls == 0, f"{name}: {controls} outputs show control characters (docs/build streams_as_shown)"
        if name == "04_architectures":  # a printed line that introduces a table stays right above it (conf.py)
            after = page.evaluate("""() => { const pre = [...document.querySelectorAll('.cell_output .stream')]
                .find(o => o.textContent.trimEnd().endsWith('with their parameters:'));
                return pre?.nextElementSibling?.className || 'no such line'; }""")
            assert "text_html" in after, f"{name}: the VGG16 table's caption is followed by {after}, not the table"
        if name == "07_explore":  # the explorer needs a kernel: its page shows a still picture of it
            still = page.locator(".cbir-explorer-still")
            assert still.count() == 1 and "need a running kernel" in still.inner_text()
            assert still.locator(".cbir-result img").count() >= 1
        if name == NOTEBOOKS[0]:
            (ROOT / "artifacts").mkdir(exist_ok=True)
            page.screenshot(path=str(ROOT / "artifacts" / "site-chapter.png"))
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.parametrize("name", ["index", "api", "benchmarks"])
def test_the_other_pages_render_with_their_tables_and_links(site, served, browser, name):
    page = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        page.goto(f"{served}/{name}.html", wait_until="load")
        assert len(page.locator("main").inner_text()) > 500
        if name != "index":
            assert page.locator("main table").count() >= 3
        else:  # a test-run build says so on the landing page as on every chapter
            chapter = (site / "chapters" / f"{NOTEBOOKS[0]}.html").read_text(encoding="utf-8")
            assert ("A test-run build" in page.locator("main").inner_text()) == ("A test-run build" in chapter)
        uncued = page.evaluate("() => [...document.querySelectorAll('article table')].filter(table => table.scrollWidth"
                               " > table.parentElement.clientWidth + 1 && !table.parentElement.previousElementSibling"
                               "?.classList.contains('cbir-scroll-cue')).length")
        assert uncued == 0, f"{name}: {uncued} tables wider than a phone, no line saying they scroll"
        if name == "api":  # prose tables fit a phone: their code names break after a dot or an underscore
            wide = page.evaluate("() => [...document.querySelectorAll('article table')].filter(table => "
                                 "table.scrollWidth > table.parentElement.clientWidth + 1).length")
            assert wide == 0, f"{wide} of the API page's tables wider than a phone (site.js breakableNames)"
        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))")
        assert not broken_links(site, site / f"{name}.html", hrefs)
        assert page.evaluate("() => [...document.querySelectorAll('main img')].every(img => img.naturalWidth > 0)")
        if name == "benchmarks":  # for a reader: what is measured and where, then the targets, then the sections
            article = page.locator("article")
            opening = article.locator("p").first.inner_text()
            assert "measured" in opening and "CPU cores" in opening and "GPU" in opening, opening
            headers = article.locator("table").first.locator("th").all_inner_texts()
            assert [header.strip() for header in headers[:3]] == ["target", "measured", "met?"], headers
            assert article.locator("section").nth(1).locator("h2").inner_text().startswith("Targets")
            listed = page.evaluate("() => [...document.querySelectorAll('article section a[href^=\"#\"]')]"
                                   ".map(a => a.getAttribute('href'))")
            sections = page.evaluate("() => [...document.querySelectorAll('article > section > section')]"
                                     ".map(section => section.id)")
            assert {"targets", "machine-and-software", "commands", "gpu"} <= set(sections) and len(sections) >= 12
            unlisted = [anchor for anchor in sections if anchor != "the-sections" and f"#{anchor}" not in listed]
            assert not unlisted, f"the benchmark page links to no section {unlisted}"
    finally:
        page.close()


@pytest.mark.browser
def test_the_site_search_finds_map_at_k(site, served, browser):
    page = browser.new_page()
    try:
        page.goto(f"{served}/search.html?q=MAP%40K", wait_until="load")
        results = page.locator("#search-results li")
        results.first.wait_for(timeout=30_000)
        assert results.count() >= 3
        hrefs = page.evaluate("() => [...document.querySelectorAll('#search-results li a')].map(a => a.href)")
        assert "06_evaluation" in hrefs[0], f"the chapter that teaches MAP@K is not listed first: {hrefs}"
        pages = [href.split("#")[0] for href in hrefs]
        assert len(pages) == len(set(pages)), f"a page listed twice: {hrefs}"
        # each result's snippet is the page's own text, not the theme's tool bar or navigation (site.js)
        results.locator("p.context").first.wait_for(timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll('#search-results li p.context').length >= 3",
                               timeout=30_000)
        snippet = results.first.locator("p.context").inner_text(timeout=30_000)  # the page's text, not its index mark
        assert "MAP@K" in snippet or "Precision@K" in snippet, snippet
        marked = page.evaluate("() => [...document.querySelectorAll('#search-results .highlighted')]"
                               ".map(mark => mark.textContent.toLowerCase())")
        assert marked and "k" not in marked, f"a one-letter term highlighted in the snippets: {marked[:20]}"
        for snippet in page.locator("#search-results li p.context").all_inner_texts():
            chrome = [word for word in ("System", "Settings", "Light", "Dark", "Skip to main content",
                                        "Back to top", "Print to PDF", "Fullscreen", "Ctrl+K", "Contents")
                      if word in snippet]
            assert not chrome, f"a search snippet shows the theme's chrome {chrome}: {snippet!r}"
            boilerplate = [words for words in ("Author", "Date created:", "Last modified:", "How this page was made")
                           if words in snippet]
            assert not boilerplate, f"a search snippet shows a chapter's metadata {boilerplate}: {snippet!r}"
        page.goto(f"{served}/search.html?q=Kaggle", wait_until="load")
        page.wait_for_function("() => document.querySelectorAll('#search-results li p.context').length >= 3",
                               timeout=30_000)
        folded = [snippet for snippet in page.locator("#search-results li p.context").all_inner_texts()
                  if "code cell source" in snippet or "start without this tutorial's package" in snippet]
        assert not folded, f"search snippets show the folded install cell: {folded[:2]}"
        page.goto(f"{served}/search.html?q=FAISS", wait_until="load")
        page.locator("#search-results li").first.wait_for(timeout=30_000)
        first = page.evaluate("() => document.querySelector('#search-results li a').href")
        assert "09_scaling_up" in first, f"the chapter that teaches FAISS is not listed first: {first}"
    finally:
        page.close()


@pytest.mark.browser
def test_the_article_headers_sidebar_buttons_open_the_chapter_list_and_contents(site, served, browser):
    """The ☰ and contents buttons a reader sees work (site.js passes their clicks to the themes' handlers)."""
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone: the sidebars are drawers
    try:
        page.goto(f"{served}/chapters/{NOTEBOOKS[0]}.html", wait_until="load")
        drawer = page.locator("#pst-primary-sidebar-modal")
        assert not drawer.evaluate("dialog => dialog.open")
        page.locator(".bd-header-article .primary-toggle").click()
        page.wait_for_function("() => document.querySelector('#pst-primary-sidebar-modal').open", timeout=5_000)
        chapters = drawer.locator("a[href*='chapters/'], a[href$='.html']")
        assert chapters.count() >= len(NOTEBOOKS), "the chapter list opened without the chapters"
        assert drawer.locator(f"a[href*='{NOTEBOOKS[-1]}']").first.is_visible()
        page.keyboard.press("Escape")
        page.wait_for_function("() => !document.querySelector('#pst-primary-sidebar-modal').open", timeout=5_000)
        page.locator(".bd-header-article .secondary-toggle").click()
        page.wait_for_function("() => document.querySelector('#pst-secondary-sidebar-modal').open", timeout=5_000)
        section = page.locator("#pst-secondary-sidebar-modal a[href^='#']").nth(1)
        target = section.get_attribute("href")
        section.click()  # a section of the contents: the page goes there and the drawer closes (site.js)
        page.wait_for_function("() => !document.querySelector('#pst-secondary-sidebar-modal').open", timeout=5_000)
        page.wait_for_function(f"() => Math.abs(document.getElementById({target[1:]!r}).getBoundingClientRect().top)"
                               " < 150", timeout=5_000)  # the section at the top of the screen
        page.wait_for_timeout(800)  # a tooltip shows after a short delay
        assert page.evaluate("() => document.querySelector('header.bd-header')?.getBoundingClientRect().height || 0") \
            == 0, "an empty bar above the article's tool bar"
        assert page.locator(".tooltip.show").count() == 0, "a button's tooltip stays over the page after the tap"
    finally:
        page.close()
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # a desktop: the button hides the sidebar
    try:
        page.goto(f"{served}/chapters/{NOTEBOOKS[0]}.html", wait_until="load")
        page.locator(".bd-header-article .primary-toggle").click()
        assert "pst-sidebar-hidden" in page.locator("#pst-primary-sidebar").get_attribute("class")
    finally:
        page.close()
