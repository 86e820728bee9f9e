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
             "machine that ran it read `<data>` (the catalogue's folder) and `<tmp>` (temporary files)."]
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
    (kernels' cell files, test runs' caches), the home folder by ``~``."""
    part = r"[^\s'\"<>&)/:]+"  # one folder or file name, in printed text or in HTML
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
