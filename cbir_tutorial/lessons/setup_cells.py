"""The notebooks' setup cell and the one place that says where this repository lives.

The repository's GitHub location has one source: ``Repository = "https://github.com/OWNER/NAME"``
under ``[project.urls]`` in ``pyproject.toml``, absent while the tutorial is unpublished. From there,
this command writes it into the setup cell of every notebook (its ``REPOSITORY = ...`` line) and into
the README's "open in Colab / Kaggle" links::

    python -m cbir_tutorial.lessons.setup_cells --repository OWNER/NAME   # set it everywhere
    python -m cbir_tutorial.lessons.setup_cells --unset                   # back to unpublished
    python -m cbir_tutorial.lessons.setup_cells                           # rewrite from pyproject.toml
    python -m cbir_tutorial.lessons.setup_cells --check                   # exit 1 if anything disagrees

Run it from the repository root (or pass ``--root``). The setup cell itself must work before the
package is installed, so it is self-contained: :func:`setup_cell_source` is its text.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from .site import site_url

#: ``owner/name`` as GitHub spells repositories.
REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
URLS_SECTION = "[project.urls]"
README_START = "<!-- open-in-cloud: written by cbir_tutorial.lessons.setup_cells -->"
README_END = "<!-- /open-in-cloud -->"
FIRST_NOTEBOOK = "notebooks/01_setup_and_data.ipynb"
#: A line of the setup cell that no other cell has.
SETUP_CELL_MARK = 'importlib.util.find_spec("cbir_tutorial")'

_SETUP_CELL = '''\
# Colab and Kaggle start without this tutorial's package: this cell installs it there, and of its
# dependencies only those missing (the platform's TensorFlow, Keras, numpy... stay as they are).
# Locally it does nothing: `pip install -e ".[dev]"` in the repository installed the package.
%matplotlib inline
import glob, importlib, importlib.util, re
from importlib import metadata

REPOSITORY = {repository}  # GitHub "owner/name", written by `python -m cbir_tutorial.lessons.setup_cells`

if importlib.util.find_spec("cbir_tutorial") is None:
    wheels = sorted(glob.glob("cbir_tutorial-*.whl") + glob.glob("/kaggle/input/*/cbir_tutorial-*.whl"))
    source = wheels[-1] if wheels else f"git+https://github.com/{{REPOSITORY}}" if REPOSITORY else ""
    if not source:
        raise RuntimeError(
            "cbir_tutorial is not installed and this notebook does not know where to get it. Either\\n"
            "  1. set REPOSITORY above to the tutorial's GitHub location (owner/name), or\\n"
            "  2. build a wheel in a clone of the repository (`python -m build`), upload\\n"
            "     dist/cbir_tutorial-*.whl next to this notebook (on Kaggle: as a dataset), and run this cell again.")
    %pip install --quiet --no-deps "{{source}}"
    importlib.invalidate_caches()
    if importlib.util.find_spec("cbir_tutorial") is None:
        raise RuntimeError(f"pip could not install {{source}} (its message is above). On Kaggle, switch "
                           "Internet on in the notebook's settings; elsewhere check the connection.")
    name = lambda requirement: re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement)[0]).lower()
    have = {{name(d.metadata["Name"] or "_") for d in metadata.distributions()}}
    missing = " ".join(f'"{{r}}"' for r in metadata.requires("cbir-tutorial") or []
                       if "extra ==" not in r and name(r) not in have)
    if missing:
        %pip install --quiet {{missing}}
'''


def setup_cell_source(repository: str | None) -> str:
    """The setup cell's code with ``REPOSITORY`` set to ``repository`` (``None``: unset, written ``""``)."""
    return _SETUP_CELL.format(repository=json.dumps(check_repository(repository) or ""))


def check_repository(repository: str | None) -> str | None:
    """``repository`` (``"owner/name"``) if valid, ``None`` for ``None``/``""``; ValueError otherwise."""
    if not repository:
        return None
    if not REPOSITORY_PATTERN.fullmatch(repository):
        raise ValueError(f"repository {repository!r}: expected the GitHub location as owner/name, "
                         "e.g. your-name/cbir-tutorial")
    return repository


def repository_from_url(url: str | None) -> str | None:
    """``"https://github.com/owner/name"`` (``.git`` or a trailing ``/`` allowed) → ``"owner/name"``; else ``None``."""
    match = re.fullmatch(r"\s*https://github\.com/([^/\s]+/[^/\s]+?)(?:\.git)?/?\s*", url or "")
    return match.group(1) if match and REPOSITORY_PATTERN.fullmatch(match.group(1)) else None


# --------------------------------------------------------------------------------------------------
# pyproject.toml


def _urls_section(text: str) -> tuple[int, int]:
    """Start and end offsets of the ``[project.urls]`` table's body in pyproject.toml's text."""
    start = text.find(URLS_SECTION + "\n")
    if start < 0:
        raise ValueError(f"pyproject.toml has no {URLS_SECTION} table: add one (it may stay empty)")
    body = start + len(URLS_SECTION) + 1
    following = re.search(r"^\[", text[body:], flags=re.M)
    return body, body + following.start() if following else len(text)


_REPOSITORY_LINE = re.compile(r'^Repository\s*=\s*"([^"]*)"\s*\n', flags=re.M)


def pyproject_repository(text: str) -> str | None:
    """The ``owner/name`` of ``Repository`` under ``[project.urls]`` in pyproject.toml's ``text``; ``None`` if
    absent."""
    body, end = _urls_section(text)
    line = _REPOSITORY_LINE.search(text[body:end])
    if line is None:
        return None
    repository = repository_from_url(line.group(1))
    if repository is None:
        raise ValueError(f"pyproject.toml: Repository = {line.group(1)!r} is not https://github.com/owner/name")
    return repository


def with_pyproject_repository(text: str, repository: str | None) -> str:
    """pyproject.toml's ``text`` with ``Repository`` set to ``repository`` (``None``: removed)."""
    body, end = _urls_section(text)
    section = _REPOSITORY_LINE.sub("", text[body:end])
    if check_repository(repository):
        section = f'Repository = "https://github.com/{repository}"\n' + section
    return text[:body] + section + text[end:]


# --------------------------------------------------------------------------------------------------
# Notebooks and README


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def with_setup_cell(notebook_text: str, repository: str | None) -> str:
    """A notebook's JSON text with its setup cell rewritten for ``repository`` (other cells untouched)."""
    notebook = json.loads(notebook_text)
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code" and SETUP_CELL_MARK in "".join(c["source"])]
    if len(cells) != 1:
        raise ValueError(f"expected one setup cell (a code cell with {SETUP_CELL_MARK}), found {len(cells)}")
    cells[0]["source"] = _lines(setup_cell_source(repository).rstrip("\n"))
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def cloud_links(repository: str | None) -> str:
    """The README's "open in Colab / Kaggle" paragraph for ``repository`` (``None``: how to go without)."""
    if not check_repository(repository):
        return (
            "This repository's GitHub location is not set yet, so there are no *Open in Colab / Kaggle*\n"
            "links. Until it is: build a wheel (`python -m build`, in the repository root), open a notebook\n"
            "on Colab (*File → Upload notebook*) or Kaggle (*File → Import notebook*) and upload\n"
            "`dist/cbir_tutorial-*.whl` beside it (Colab: the *Files* pane; Kaggle: *Add Input → Upload*, as\n"
            "a dataset). The notebook's first cell installs the wheel. Maintainers publish the location with\n"
            "`python -m cbir_tutorial.lessons.setup_cells --repository owner/name` (it writes\n"
            "`pyproject.toml`, every notebook's first cell and these links, the course site's among them)."
        )
    page = f"github.com/{repository}/blob/main/{FIRST_NOTEBOOK}"
    colab = f"https://colab.research.google.com/github/{repository}/blob/main/{FIRST_NOTEBOOK}"
    kaggle = f"https://kaggle.com/kernels/welcome?src=https://{page}"
    return (
        f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})\n"
        f"[![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]({kaggle})\n\n"
        f"Read the course without running it: [the course site]({site_url(repository)}), every chapter executed "
        "with its figures and tables (built by `docs/build`, published by `.github/workflows/site.yml`)."
    )


def with_cloud_links(readme_text: str, repository: str | None) -> str:
    """README text with the part between :data:`README_START` and :data:`README_END` rewritten."""
    start, end = readme_text.find(README_START), readme_text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"README.md lacks the lines {README_START} ... {README_END}")
    return readme_text[:start + len(README_START)] + "\n" + cloud_links(repository) + "\n" + readme_text[end:]


def sync(root: str | Path = ".", repository: str | None | bool = False, *, check: bool = False) -> list[Path]:
    """Write the repository location into pyproject.toml, the notebooks' setup cells and the README.

    ``repository``: ``"owner/name"``, ``None`` to unset, ``False`` to keep pyproject.toml's. Returns the
    files that changed (with ``check``: that would change; nothing is written).
    """
    root = Path(root)
    pyproject = root / "pyproject.toml"
    wanted: dict[Path, str] = {}
    text = pyproject.read_text(encoding="utf-8")
    if repository is False:
        repository = pyproject_repository(text)
    else:
        wanted[pyproject] = with_pyproject_repository(text, check_repository(repository))
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        wanted[path] = with_setup_cell(path.read_text(encoding="utf-8"), repository)
    readme = root / "README.md"
    wanted[readme] = with_cloud_links(readme.read_text(encoding="utf-8"), repository)
    changed = [path for path, new in wanted.items() if path.read_text(encoding="utf-8") != new]
    if not check:
        for path in changed:
            path.write_text(wanted[path], encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cbir_tutorial.lessons.setup_cells",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".", help="the repository root (default: the current folder)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--repository", metavar="OWNER/NAME", help="set the GitHub location everywhere")
    which.add_argument("--unset", action="store_true", help="remove the location (unpublished tutorial)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file disagrees")
    args = parser.parse_args(argv)
    repository = None if args.unset else args.repository if args.repository is not None else False
    try:
        changed = sync(args.root, repository, check=args.check)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"{'disagrees' if args.check else 'rewrote'}: {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
