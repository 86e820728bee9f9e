"""The tests against other versions of the dependencies than a fresh install resolves: ``nox -s NAME``.

- ``colab`` (what ``nox`` alone runs, as CI does beside the README's two commands): Colab's versions of
  what it preinstalls (:data:`COLAB`, ipywidgets 7.7.1 among them) with the Python nox runs on. The
  package is not installed (pytest, run as ``python -m pytest`` from the checkout, imports it from there for the
  tests' own helpers): the first notebook's first cell installs it from the wheel beside it, with
  the dependencies the session's environment lacks, as on a learner's Colab (there, those Colab lacks);
  then every notebook on the sample, each checking that no pinned package changed, and the widget tests.
  The executed notebooks are kept in ``docs/_build/executed/sample/``, from which CI builds the course
  site (``docs/build --executed``).
- ``widgets7``: the widget tests and notebook 07 (on the sample) with ipywidgets 7.7.1 and everything else as
  ``pip install -e ".[dev,scale]"`` resolves it: a quicker check of the 7.x code paths while editing the
  explorer (``colab`` runs the same tests on 7.7.1, so CI leaves it out).
"""

from __future__ import annotations

from pathlib import Path

import nox

#: uv, where nox finds it (on the PATH, or installed beside nox 2024.4.15 or later: ``pip install uv``, as CI
#: does), fills a session's environment in seconds where pip takes a minute (TensorFlow alone is 1.8 GB
#: unpacked); else the standard library's venv and pip.
nox.options.default_venv_backend = "uv|venv"
nox.options.sessions = ["colab"]

#: What Colab preinstalls today, at its versions (Python aside).
COLAB = {"tensorflow": "2.20.0", "keras": "3.13.2", "numpy": "2.1.3", "pandas": "2.2.3", "pillow": "11.3.0",
         "matplotlib": "3.10.0", "ipywidgets": "7.7.1", "ipykernel": "6.17.1"}
#: The test tools a session needs beside the package: pytest with the plugins pyproject.toml's options name
#: (``--dist loadgroup``: pytest-xdist; ``timeout``: pytest-timeout), what the widget and notebook tests import
#: (filelock, nbclient), and setuptools for the notebook test's ``pip wheel --no-build-isolation``.
TEST_TOOLS = ["pytest>=7.4,<9.2", "pytest-xdist>=3.5", "pytest-timeout>=2.2", "filelock>=3.12", "nbclient>=0.9",
              "setuptools>=68"]
#: uv, unlike pip, byte-compiles what it installs only when asked (``UV_COMPILE_BYTECODE=1``): where
#: PYTHONDONTWRITEBYTECODE is set (as on CI's machine), every kernel would otherwise compile TensorFlow's modules
#: again (10 against 4.5 CPU-s for ``import tensorflow``).
COMPILED = {"UV_COMPILE_BYTECODE": "1"}
WIDGET_TESTS = ["tests/ui/test_widget_compat.py", "tests/ui/test_widgets.py"]
PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider"]


#: Where the colab session leaves the notebooks it executed (``sample/<name>.ipynb``), for docs/build --executed.
EXECUTED = Path(__file__).resolve().parent / "docs" / "_build" / "executed"
#: The notebooks, in order.
NOTEBOOKS = tuple(sorted(path.name for path in Path("notebooks").glob("*.ipynb")))


def notebook_tests(*names: str) -> list[str]:
    """The pytest arguments of the notebook runs on the sample, of ``names`` (default: every notebook)."""
    names = names or NOTEBOOKS
    node = "tests/test_notebooks_run.py::test_the_notebook_runs_alone_from_the_wheel"
    return ["--notebook-data", "sample", *(f"{node}[sample-{name}]" for name in names)]


@nox.session
def widgets7(session: nox.Session) -> None:
    """The widget tests and notebook 07 under ipywidgets 7.7.1."""
    session.install("pip", "-e", ".[dev,scale]", "ipywidgets==7.7.1", env=COMPILED)  # pip: see colab
    session.run("python", "-c", "import ipywidgets; assert ipywidgets.__version__ == '7.7.1', ipywidgets.__version__")
    session.run(*PYTEST, "-n", "auto", *WIDGET_TESTS, *notebook_tests("07_explore.ipynb"))


@nox.session
def colab(session: nox.Session) -> None:
    """The notebooks and the widget tests on Colab's versions, the package installed by the first cell."""
    pins = [f"{name}=={version}" for name, version in COLAB.items()]
    # pip: a venv made by uv has none, and the test's wheel build and the notebooks' %pip install need it
    session.install("pip", *pins, *TEST_TOOLS, env=COMPILED)
    pinned = [option for pin in pins for option in ("--pinned", pin)]
    keep = ["--executed-notebooks", str(EXECUTED)]  # docs/build --executed renders them (CI's site step)
    # one notebook first, alone: its first cell installs the package (two at once would race in pip)
    session.run(*PYTEST, "--first-cell-installs", *pinned, *keep, *notebook_tests("01_setup_and_data.ipynb"))
    session.run(*PYTEST, "-n", "auto", "--first-cell-installs", *pinned, *keep, *WIDGET_TESTS,
                *notebook_tests(*NOTEBOOKS[1:]))
