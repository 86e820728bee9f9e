"""The course site's pages: what each chapter was executed with, and where to run it.

``docs/build`` (Sphinx with MyST-NB) puts :func:`page_header` at the top of every chapter, so a reader
knows, before anything else on the page, which settings, weights and hardware made its numbers and
figures, and where to run the notebook for real (Colab, Kaggle) once the repository location is set
(:mod:`~cbir_tutorial.lessons.setup_cells`).
"""

from __future__ import annotations

import re
from typing import Mapping

#: The settings a site build executes the notebooks with (next to the test-run settings, test_run.env).
SITE_SETTINGS = "notebooks/site_run.env"
#: Settings that say nothing to a reader (logging, plotting back end, progress bars, the test run's strictness).
_QUIET = ("TF_CPP_MIN_LOG_LEVEL", "MPLBACKEND", "TQDM_DISABLE", "CBIR_TUTORIAL_STRICT")
#: The Keras backbones whose ImageNet weights need internet.
KERAS_BACKBONES = "VGG16, ResNet50 and Xception"


def site_url(repository: str | None) -> str | None:
    """The GitHub Pages address of ``repository`` (``"owner/name"``), or None while it is not set."""
    if not repository:
        return None
    owner, name = repository.split("/")
    return f"https://{owner.lower()}.github.io/{name}/"


def notebook_links(repository: str | None, notebook: str) -> str:
    """Markdown "Open in Colab / Kaggle" badges for ``notebooks/<notebook>`` of ``repository``, or how to run
    the notebook while the location is not set."""
    if not repository:
        return (f"*Run it yourself:* open `notebooks/{notebook}` of the repository in JupyterLab (after "
                "`pip install -e \".[dev]\"` there), or on Colab or Kaggle with the package's wheel uploaded beside it "
                "(the notebook's first cell installs it).")
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


def page_header(notebook: str, settings: Mapping[str, str], source: str, *, gpu: str | None = "",
                repository: str | None = None, test_run: bool = False) -> str:
    """The Markdown note atop a chapter page: executed with ``settings`` (the ones the notebook reads, from the
    file ``source``), on ``gpu`` (its name; ``""``: a CPU; None: not known, e.g. notebooks executed elsewhere),
    and the links to run ``notebook`` elsewhere. ``test_run``: the settings are the small test-run ones."""
    weights = settings.get("CBIR_NB_WEIGHTS")
    shown = ", ".join(f"`{name}={value}`" for name, value in settings.items()
                      if name not in _QUIET and not name.startswith("TF_"))
    hardware = "" if gpu is None else f" on {'a GPU (' + gpu + ')' if gpu else 'a CPU, without a GPU'}"
    lines = [f"**How this page was made.** This chapter ran top to bottom with the settings of `{source}`"
             f"{f' ({shown})' if shown else ''}, the notebook's defaults otherwise{hardware}. The parameters cell "
             "prints every value it used, and each result says which backbone and weights made it. Folders of the "
             "machine that ran it read `<data>` (the catalogue's folder), `<tmp>` (temporary files) and `<cache>` "
             "(the package's cache)."]
    if weights == "random":
        lines.append(f"The settings chose **random weights** for {KERAS_BACKBONES} (EfficientNet's ImageNet weights "
                     "install with the package; these three need a download): wherever they appear, their numbers "
                     "and pictures say nothing about those networks.")
    if settings.get("CBIR_TUTORIAL_SOLUTIONS", "").strip().lower() in ("1", "true", "yes", "on"):
        lines.append("The exercises were left blank and checked with the package's own answers "
                     "(`CBIR_TUTORIAL_SOLUTIONS=1`); the worked answer folded under each check is that answer.")
    if test_run:
        lines.append("These are the small test-run settings: the numbers show that every step runs, not how well "
                     "it works; a build with `notebooks/site_run.env` gives the representative ones.")
    return "\n".join([":::{note}", " ".join(lines), "", notebook_links(repository, notebook), ":::"])


def folded_solution(lesson: str, question: str) -> str:
    """A folded MyST dropdown holding the worked answer of exercise ``question`` (``"q2"``) of ``lesson``
    (``"nb08"``): shown on the site under the exercise's check, closed until the reader opens it."""
    import inspect
    import textwrap

    from . import solutions
    from .exercises import LESSONS

    names = LESSONS[lesson]
    number = int(question.lstrip("q"))
    if not 1 <= number <= len(names):
        raise ValueError(f"{lesson} has exercises q1 to q{len(names)}, not {question}")
    source = textwrap.dedent(inspect.getsource(getattr(solutions, names[number - 1]))).strip()
    return "\n".join(["::::{dropdown} A worked answer (open it once you have tried)", "```python", source, "```",
                      "::::"])


def shown_paths(text: str, data: str | None, temporary: str, home: str) -> str:
    """``text`` with the build machine's folders replaced by what a reader can map to their own: the data
    folder ``data`` by ``<data>``, a file under the temporary folder by ``<tmp>/…/<its last two parts>``
    (kernels' cell files, test runs' caches), the home folder by ``~``, and the package's cache folder in the
    ``cache`` row of the environment summary (a table or its printed form; pandas cuts it short) by ``<cache>``."""
    part = r"[^\s'\"<>&)/:]+"  # one folder or file name, in printed text or in HTML
    text = re.sub(r"(<th\b[^>]*>\s*cache\s*</th>\s*<td\b[^>]*>)\s*(?:/|~|[A-Za-z]:\\)[^<]*(</td>)", r"\1<cache>\2",
                  text)
    text = re.sub(r"(?m)^(cache[ \t]+)(?:/|~|[A-Za-z]:\\)\S*[ \t]*$", r"\1<cache>", text)
    if data:
        text = re.sub(re.escape(data.rstrip("/")) + r"(?![\w.-])", "<data>", text)
    text = re.sub(re.escape(temporary.rstrip("/")) + rf"(?:/{part})+?((?:/{part}){{2}})(?!/?{part})", r"<tmp>/…\1",
                  text)
    text = re.sub(re.escape(temporary.rstrip("/")) + r"(?=/)", "<tmp>", text)
    return re.sub(re.escape(home.rstrip("/")) + r"(?=/)", "~", text) if home not in ("", "/") else text


def linked_results(markdown: str, target: str = "../benchmarks.md") -> str:
    """``markdown`` with each mention of ``benchmarks/RESULTS.md`` (plain or as code, not already a link)
    made a link to the site's benchmark page ``target``."""
    return re.sub(r"(?<![\[/])(?<!\]\()(`?)benchmarks/RESULTS\.md\1(?![\]`(])",
                  lambda found: f"[{found.group(0)}]({target})", markdown)


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


def heading_anchor(title: str) -> str:
    """The anchor GitHub and MyST (``myst_heading_anchors``, GitHub-style slugs) give a Markdown heading
    ``title``: its text (code and links as their text) lower-cased, spaces as ``-``, other punctuation dropped."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", text.lower().replace(" ", "-"))


def benchmarks_page(results: str) -> str:
    """The site's benchmark page, made from ``benchmarks/RESULTS.md`` (its text ``results``) for a reader
    rather than as a lab log: the title and the opening paragraph (what is measured, on what machine), then the
    ``## Targets`` section (each "section N" in it a link), then a list of links to the other sections after the
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
    opening, notes = paragraphs[:1], paragraphs[1:]

    numbered = {}  # "2", "4b": the anchor of the heading "## 2. ..." or "### 4b. ..."
    for section in sections:
        for line in section:
            found = re.match(r"#{2,3} (\d+[a-z]?)\. ", line)
            if found:
                numbered.setdefault(found.group(1), heading_anchor(line.lstrip("#").strip()))

    def linked(found: re.Match) -> str:
        anchor = numbered.get(found.group(2))
        return f"[{found.group(0)}](#{anchor})" if anchor else found.group(0)

    targets_text = re.sub(r"(?<![\[#])\b([Ss]ection) (\d+[a-z]?)\b(?![\]\w])", linked, "\n".join(targets))
    contents = [f"- [{title}](#{heading_anchor(title)})" for title in titles]
    page = [preface[start], "", *[paragraph + "\n" for paragraph in opening], targets_text.rstrip(), "",
            "## The sections", "", *[note + "\n" for note in notes], *contents, ""]
    return "\n".join(page + ["\n".join(section) for section in sections]).rstrip() + "\n"
