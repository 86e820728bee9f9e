"""The course site's pages: what each chapter was executed with, and where to run it.

``docs/build`` (Sphinx with MyST-NB) puts :func:`page_header` at the top of every chapter, so a reader
knows, before anything else on the page, which settings, weights and hardware made its numbers and
figures, and where to run the notebook for real (Colab, Kaggle) once the repository location is set
(:mod:`~cbir_tutorial.lessons.setup_cells`).
"""

from __future__ import annotations

import functools
import re
from typing import Mapping

#: The settings a site build executes the notebooks with (next to the test-run settings, test_run.env).
SITE_SETTINGS = "notebooks/site_run.env"
#: Settings that say nothing to a reader (logging, plotting back end, progress bars, the test run's strictness).
_QUIET = ("TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND", "TQDM_DISABLE", "CBIR_TUTORIAL_STRICT")
#: The Keras backbones whose ImageNet weights need internet.
KERAS_BACKBONES = "VGG16, ResNet50 and Xception"


def site_repository(pyproject_repository: str | None, environ: Mapping[str, str]) -> str | None:
    """The ``owner/name`` whose Colab, Kaggle and repository links the site carries: pyproject.toml's
    ``Repository`` (``setup_cells --repository`` writes it), else the repository a GitHub Actions run builds
    (``GITHUB_REPOSITORY``, which GitHub sets in every workflow run: the published site always links), else None."""
    return pyproject_repository or environ.get("GITHUB_REPOSITORY") or None


def site_url(repository: str | None) -> str | None:
    """The GitHub Pages address of ``repository`` (``"owner/name"``), or None while it is not set."""
    if not repository:
        return None
    owner, name = repository.split("/")
    return f"https://{owner.lower()}.github.io/{name}/"


def notebook_links(repository: str | None, notebook: str) -> str:
    """Markdown "Open in Colab / Kaggle" badges for ``notebooks/<notebook>`` of ``repository``, or, while the
    location is not set, a download of the notebook (the site's ``notebooks/`` folder: ``docs/build`` copies
    them there) and how to run it."""
    if not repository:
        return (f"*Run it yourself:* {{download}}`download the notebook </notebooks/{notebook}>` (without its outputs) "
                "and open it in JupyterLab in a clone of the repository (after `pip install -e \".[dev]\"` there), or "
                "on Colab or Kaggle with the package's wheel uploaded beside it (`python -m build` in the repository "
                "root makes it in `dist/`; the notebook's first cell installs it).")
    path = f"{repository}/blob/main/notebooks/{notebook}"
    return (f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}) "
            f"[![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]"
            f"(https://kaggle.com/kernels/welcome?src=https://github.com/{path})")


def settings_read_by(code: str, settings: Mapping[str, str]) -> dict[str, str]:
    """The ``settings`` a notebook whose code cells are ``code`` reads: the ``CBIR_NB_<NAME>`` of the names in
    its ``notebook_parameters(...)`` call, and the package's own ``CBIR_TUTORIAL_*`` switches."""
    call = re.search(r"notebook_parameters\((.*?)\n\)", code, flags=re.S)
    names = set(re.findall(r"^\s*(\w+)=", call.group(1), flags=re.M)) if call else set()
    names = {f"CBIR_NB_{name.upper()}" for name in names}
    return {name: value for name, value in settings.items() if name in names or name.startswith("CBIR_TUTORIAL_")}


def small_run_note(repository: str | None = None, *, where: str = "page") -> str:
    """The line that opens every page of a site built with the test-run settings (``where``: ``"page"`` for a
    chapter, ``"site"`` for the index, which also says that the benchmark page's numbers are not the test run's):
    what its numbers mean, and where the representative ones are (the published site, once ``repository`` is set)."""
    published = site_url(repository)
    elsewhere = (f"the [published course]({published}) runs every chapter with `{SITE_SETTINGS}`" if published
                 else f"a build with `{SITE_SETTINGS}` (what the published course runs) gives representative ones")
    numbers = "in the chapters" if where == "site" else f"on this {where}"
    benchmarks = " The benchmark results come from full runs of the benchmark scripts." if where == "site" else ""
    return (f"**A test-run build: the numbers {numbers} show that every step runs, not how well it works.** "
            f"It ran with the small settings of the project's tests (`notebooks/test_run.env`); {elsewhere}."
            f"{benchmarks}")


def page_header(notebook: str, settings: Mapping[str, str], source: str, *, gpu: str | None = "",
                repository: str | None = None, test_run: bool = False) -> str:
    """The Markdown note atop a chapter page: executed with ``settings`` (the ones the notebook reads, from the
    file ``source``), on ``gpu`` (its name; ``""``: a CPU; None: not known, e.g. notebooks executed elsewhere),
    and the links to run ``notebook`` elsewhere. ``test_run``: the settings are the small test-run ones.

    What a reader needs first comes first, in one line each: whether the numbers are representative, the
    hardware and the weights; the settings in full are folded."""
    weights = settings.get("CBIR_NB_WEIGHTS")
    shown = ", ".join(f"`{name}={value}`" for name, value in settings.items()
                      if name not in _QUIET and not name.startswith("TF_"))
    lines = []
    if test_run:
        lines.append(small_run_note(repository))
    hardware = "" if gpu is None else f" on {'a GPU (' + gpu + ')' if gpu else 'a CPU, without a GPU'}"
    networks = any(name in settings for name in ("CBIR_NB_WEIGHTS", "CBIR_NB_BACKBONE", "CBIR_NB_BACKBONES"))
    lines.append(f"This chapter ran top to bottom{hardware}"
                 f"{'; each result says which backbone and weights made it' if networks else ''}.")
    if weights == "random":
        lines.append(f"**Random weights** for {KERAS_BACKBONES}, chosen by this build's settings (their ImageNet "
                     "weights are a download; EfficientNet's come with a dependency the package installs): wherever "
                     "they appear, their numbers and pictures say nothing about those networks.")
    details = [f"Settings: those of `{source}`{f' ({shown})' if shown else ''}, the notebook's defaults otherwise; "
               "the parameters cell prints every value it used. Folders of the machine that ran it read `<data>` "
               "(the catalogue's folder), `<tmp>` (temporary files) and `<cache>` (the package's cache)."]
    if settings.get("CBIR_TUTORIAL_SOLUTIONS", "").strip().lower() in ("1", "true", "yes", "on"):
        details.append("The exercises were left blank and checked with the package's own answers "
                       "(`CBIR_TUTORIAL_SOLUTIONS=1`); the worked answer folded under each check is that answer.")
    return "\n".join(["::::{note}", " ".join(lines), "", notebook_links(repository, notebook), "",
                      ":::{dropdown} How this page was made", " ".join(details), ":::", "::::"])


def folded_solution(lesson: str, question: str, *, blank: bool = False) -> str:
    """A folded MyST dropdown holding the worked answer of exercise ``question`` (``"q2"``) of ``lesson``
    (``"nb08"``): shown on the site under the exercise's check, closed until the reader opens it. ``blank``: the
    page ran with the exercise left blank (solutions mode), so a line above it says whose answer the check passed."""
    from . import solutions
    from .exercises import LESSONS, pasteable_source

    names = LESSONS[lesson]
    number = int(question.lstrip("q"))
    if not 1 <= number <= len(names):
        raise ValueError(f"{lesson} has exercises q1 to q{len(names)}, not {question}")
    source = pasteable_source(getattr(solutions, names[number - 1])).strip()  # runs pasted alone, as solution()
    caption = (["*On this page the exercise cell was left blank: the check above ran the package's answer, the "
                "one folded here.*", ""] if blank else [])
    return "\n".join([*caption, "::::{dropdown} A worked answer (open it once you have tried)", "```python", source,
                      "```", "::::"])


_ERASED = re.compile(r"[^\n]\x08")  # a character and the backspace that erases it
_OVERWRITTEN = re.compile(r"[^\n]*\r(?=[^\n])")  # a line a carriage return sends the cursor back over


def streams_as_shown(outputs: list) -> list:
    """A cell's ``outputs`` with each run of adjacent stream outputs of one name merged into one, and the backspaces
    and carriage returns in it applied as Jupyter shows them (a progress bar's last state, e.g. Keras's ``fit``).

    Written here because neither tool fits: nbconvert's ``CoalesceStreamsPreprocessor`` leaves backspaces in (a
    browser draws them as boxes), MyST-NB's ``nb_merge_streams`` moves every printed line of a cell ahead of its
    tables and figures. Changes the stream outputs in place."""
    shown: list = []
    for output in outputs:
        last = shown[-1] if shown else None
        if (output.get("output_type") == "stream" and last is not None and last.get("output_type") == "stream"
                and last.get("name") == output.get("name")):
            last["text"] += output["text"]
        else:
            shown.append(output)
    for output in shown:
        if output.get("output_type") == "stream":
            text = output["text"]
            while (erased := _ERASED.sub("", text)) != text:
                text = erased
            output["text"] = _OVERWRITTEN.sub("", text.replace("\x08", ""))
    return shown


def folded_explanation(markdown: str) -> str:
    """``markdown``, the cell after a prediction's check, with its text up to its first heading folded in a closed
    MyST dropdown: on the site, where the whole page shows at once, that text explains the answer, and the reader
    predicts before opening it. A cell that opens with a heading comes back unchanged."""
    lines, fenced = markdown.split("\n"), False
    for end, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6} ", line):
            break
    else:
        end = len(lines)
    explanation, rest = "\n".join(lines[:end]).strip(), "\n".join(lines[end:])
    if not explanation:
        return markdown
    return "\n".join(["::::{dropdown} The answer explained (predict first)", explanation, "::::",
                      *(["", rest] if rest else [])])


#: The package's cache sub-folders (``paths.cache_dir(name)``): a path through one of them is in the cache.
CACHE_FOLDERS = ("data", "features", "milvus", "trained", "weights")


def shown_paths(text: str, data: str | None, temporary: str, home: str) -> str:
    """``text`` with the build machine's folders replaced by what a reader can map to their own: the data
    folder ``data`` by ``<data>``, a file under the temporary folder by ``<tmp>/…/<its last two parts>``
    (kernels' cell files), the home folder by ``~``, and the package's cache folder by ``<cache>``: in the ``cache``
    row of the environment summary (a table or its printed form; pandas cuts it short), and before one of its
    sub-folders (:data:`CACHE_FOLDERS`) in any path."""
    part = r"[^\s'\"<>&)/:]+"  # one folder or file name, in printed text or in HTML
    # a file in the package's cache, wherever the build kept it (a test run's cache folder under the temporary
    # folder, ~/.cache/cbir_tutorial): <cache>/its sub-folder/...
    text = re.sub(rf"(?<![\w.~-])(?:~|[A-Za-z]:)?(?:[/\\]{part})*?[/\\](?:cache|cbir_tutorial)"
                  rf"(?=[/\\](?:{'|'.join(CACHE_FOLDERS)})[/\\])", "<cache>", text)
    text = re.sub(r"(<th\b[^>]*>\s*cache\s*</th>\s*<td\b[^>]*>)\s*(?:/|~|[A-Za-z]:\\)[^<]*(</td>)", r"\1<cache>\2",
                  text)
    text = re.sub(r"(?m)^(cache[ \t]+)(?:/|~|[A-Za-z]:\\)\S*[ \t]*$", r"\1<cache>", text)
    if data:
        text = re.sub(re.escape(data.rstrip("/")) + r"(?![\w.-])", "<data>", text)
    text = re.sub(re.escape(temporary.rstrip("/")) + rf"(?:/{part})+?((?:/{part}){{2}})(?!/?{part})", r"<tmp>/…\1",
                  text)
    text = re.sub(re.escape(temporary.rstrip("/")) + r"(?=/)", "<tmp>", text)
    return re.sub(re.escape(home.rstrip("/")) + r"(?=/)", "~", text) if home not in ("", "/") else text


def section_anchors(results: str) -> dict[str, str]:
    """The anchor of each numbered section of ``benchmarks/RESULTS.md`` (its text ``results``): ``{"2": ...,
    "4b": ...}`` for the headings ``## 2. ...`` and ``### 4b. ...`` (the benchmark page keeps them as they are)."""
    anchors: dict[str, str] = {}
    for line in results.splitlines():
        found = re.match(r"#{2,3} (\d+[a-z]?)\. ", line)
        if found:
            anchors.setdefault(found.group(1), heading_anchor(line.lstrip("#").strip()))
    return anchors


def linked_results(markdown: str, target: str = "../benchmarks.md", anchors: Mapping[str, str] | None = None) -> str:
    """``markdown`` with each mention of ``benchmarks/RESULTS.md`` (plain or as code, not already a link) made a
    link to the site's benchmark page ``target``, named "benchmark results"; a mention followed by "section N"
    ("benchmarks/RESULTS.md section 4", "`benchmarks/RESULTS.md`, section 4b") links to that section's anchor
    (``anchors``, :func:`section_anchors`) and names it. Where the notebook says the file is in the repository,
    not installed with the package, the site's link says enough: those words go."""
    anchors = anchors or {}

    def link(found: re.Match) -> str:
        section = found.group(3)
        if section and section in anchors:
            return f"[benchmark results, section {section}]({target}#{anchors[section]})"
        return f"[benchmark results]({target}){found.group(2) or ''}"

    # what the notebook says for its reader (the file is in the repository, not installed), over line breaks too
    where = (r"(?:,?\s+(?:on GitHub|in the\s+(?:tutorial's\s+GitHub\s+)?repository))?"
             r"(?:[;,]\s+the benchmarks are not installed with the package|\s+\(not installed with the package\))?")
    return re.sub(r"(?<![\[/])(?<!\]\()(`?)benchmarks/RESULTS\.md\1(?![\]`(])(,? section (\d+[a-z]?)\b)?" + where,
                  link, markdown)


#: A table cell (``<td>``, ``<th>``) holding only pandas' mark of a missing value: ``NaN`` (a float), ``<NA>``
#: (pandas' NA, escaped in HTML), ``NaT`` (a time), ``nan`` (a Styler's NaN).
_MISSING_CELL = re.compile(r"(<t([dh])\b[^>]*>)\s*(?:NaN|nan|&lt;NA&gt;|<NA>|NaT)\s*(</t\2\s*>)")


def blank_missing_cells(html: str) -> str:
    """The HTML of an output (a DataFrame's table) with each cell that holds only a missing value's mark
    (``NaN``, ``<NA>``, ``NaT``) left empty: a reader takes a blank for "not measured", a ``NaN`` for a bug.
    Only whole cells change: a ``NaN`` in a longer text, or outside a table, stays."""
    if "<t" not in html:
        return html
    return _MISSING_CELL.sub(lambda found: found.group(1) + found.group(3), html)


_TABLE = re.compile(r"<table\b.*?</table\s*>", flags=re.S | re.I)
_ROW = re.compile(r"<tr\b[^>]*>.*?</tr\s*>", flags=re.S | re.I)
_CELL = re.compile(r"<t([dh])\b[^>]*>(.*?)</t\1\s*>", flags=re.S | re.I)


def _without_empty_columns(table: str) -> str:
    """One ``<table>`` without the columns whose every body cell is empty (as it was when its shape is not a
    plain grid: spans, a row of another length, no body)."""
    if re.search(r"\b(?:col|row)span\b", table, flags=re.I) or "<tbody" not in table.lower():
        return table
    head, body = re.split(r"(?i)<tbody\b", table, maxsplit=1)
    rows = [(row, [(cell.group(1), cell.group(2)) for cell in _CELL.finditer(row)]) for row in _ROW.findall(body)]
    widths = {len(cells) for _, cells in rows} | {len(_CELL.findall(row)) for row in _ROW.findall(head)}
    if not rows or len(widths) != 1:
        return table
    empty = [j for j in range(widths.pop()) if all(cells[j][0].lower() == "d" and not cells[j][1].strip()
                                                    for _, cells in rows)]
    if not empty:
        return table

    def dropped(row: re.Match) -> str:
        cells = list(_CELL.finditer(row.group(0)))
        text = row.group(0)
        for j in reversed(empty):
            text = text[:cells[j].start()] + text[cells[j].end():]
        return re.sub(r"\n\s*\n", "\n", text)

    return _ROW.sub(dropped, table)


def without_empty_columns(html: str) -> str:
    """The HTML of an output with each table's columns that are empty in every row dropped (a catalogue without
    brands or prices, as the sample is: an empty column reads as a broken page)."""
    return _TABLE.sub(lambda found: _without_empty_columns(found.group(0)), html) if "<table" in html else html


def heading_anchor(title: str) -> str:
    """The anchor GitHub and MyST (``myst_heading_anchors``, GitHub-style slugs) give a Markdown heading
    ``title``: its text (code and links as their text) lower-cased, spaces as ``-``, other punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", text.lower().replace(" ", "-"))


def benchmarks_page(results: str) -> str:
    """The site's benchmark page, made from ``benchmarks/RESULTS.md`` (its text ``results``) for a reader
    rather than as a lab log: the title and the opening paragraph (what is measured, on what machine) with the
    list that follows it (the findings), then the
    ``## Targets`` section (each "section N" in these a link), then a list of links to the other sections after the
    rest of the opening (the notes on the runs), then those sections, as written and in their order."""
    parts: list[list[str]] = [[]]
    fenced = False
    for line in results.splitlines():
        fenced = fenced != line.lstrip().startswith("```")
        if line.startswith("## ") and not fenced:
            parts.append([])
        parts[-1].append(line)
    preface, sections = parts[0], parts[1:]
    titles = [section[0][3:].strip() for section in sections]
    if "Targets" not in titles:
        raise ValueError("benchmarks/RESULTS.md has no '## Targets' section: the benchmark page opens with it")
    targets = sections.pop(titles.index("Targets"))
    titles.remove("Targets")
    start = next((i for i, line in enumerate(preface) if line.startswith("# ")), None)
    if start is None:
        raise ValueError("benchmarks/RESULTS.md has no '# ' title")
    paragraphs = [part.strip() for part in "\n".join(preface[start + 1:]).split("\n\n") if part.strip()]
    lists = next((i for i, paragraph in enumerate(paragraphs[1:], 1) if not paragraph.startswith(("- ", "* "))),
                 len(paragraphs))
    opening, notes = paragraphs[:lists], paragraphs[lists:]  # the opening paragraph and the list right after it

    numbered = section_anchors("\n".join(line for section in sections for line in section))

    def linked(found: re.Match) -> str:
        anchor = numbered.get(found.group(2))
        return f"[{found.group(0)}](#{anchor})" if anchor else found.group(0)

    sections_linked = functools.partial(re.sub, r"(?<![\[#])\b([Ss]ection) (\d+[a-z]?)\b(?![\]\w])", linked)
    targets_text = sections_linked("\n".join(targets))
    opening = [sections_linked(paragraph) for paragraph in opening]
    contents = [f"- [{title}](#{heading_anchor(title)})" for title in titles]
    page = [preface[start], "", *[paragraph + "\n" for paragraph in opening], targets_text.rstrip(), "",
            "## The sections", "", *[note + "\n" for note in notes], *contents, ""]
    return "\n".join(page + ["\n".join(section) for section in sections]).rstrip() + "\n"
