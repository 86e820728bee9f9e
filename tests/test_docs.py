"""What the docs name exists: every ``cbir_tutorial.…`` path, Sphinx role and ``from cbir_tutorial… import …``
line in the package's docstrings and comments, the README, ``docs/api.md`` and the notebooks' text, and the
public API page lists exactly the names the package root exports."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

import cbir_tutorial

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cbir_tutorial"
API_PAGE = ROOT / "docs" / "api.md"

DOTTED = re.compile(r"(?<![\w/])cbir_tutorial(?:\.[A-Za-z_]\w*)+")
FILE_PATH = re.compile(r"(?<![\w.])cbir_tutorial(?:/\w+)+\.py")
ROLE = re.compile(r":(?:mod|func|class|meth|data|attr|exc):`~?(\.?[\w.]+)`")
FROM_IMPORT = re.compile(r"from (cbir_tutorial(?:\.\w+)*) import ([\w, ]+)")


def texts() -> dict[str, tuple[str, str]]:
    """``{where: (module the text belongs to, text)}`` for every place the docs live."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[str(path.relative_to(ROOT))] = (module, path.read_text(encoding="utf-8"))
    for path in [ROOT / "README.md", API_PAGE, ROOT / "data" / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        out[str(path.relative_to(ROOT))] = ("cbir_tutorial", text)
    return out


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module of the package or an attribute reachable from one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                target = getattr(target, name)
        except AttributeError:
            return False
        return True
    return False


def absolute(reference: str, module: str, is_package: bool) -> str | None:
    """A role's target as an absolute dotted path (``None``: not the package's, e.g. ``numpy.ndarray``)."""
    if reference.startswith("."):
        package = module if is_package else module.rpartition(".")[0]
        return package + reference
    if reference.startswith("cbir_tutorial"):
        return reference
    return None


def broken_references() -> list[str]:
    broken = []
    for where, (module, text) in texts().items():
        is_package = where.endswith("__init__.py")
        for dotted in set(DOTTED.findall(text)):
            if not resolves(dotted.rstrip(".")):
                broken.append(f"{where}: {dotted}")
        for path in set(FILE_PATH.findall(text)):
            if not (ROOT / path).is_file():
                broken.append(f"{where}: {path}")
        if where.endswith(".py"):
            for reference in set(ROLE.findall(text)):
                target = absolute(reference, module, is_package)
                if target is not None and not resolves(target):
                    broken.append(f"{where}: :role:`{reference}`")
        for module_name, names in FROM_IMPORT.findall(text):
            for name in (n.split(" as ")[0].strip() for n in names.split(",") if n.strip()):
                if not resolves(f"{module_name}.{name}"):
                    broken.append(f"{where}: from {module_name} import {name}")
    return sorted(broken)


def test_every_path_the_docs_name_exists():
    assert not broken_references(), "names in the docs that do not exist:\n" + "\n".join(broken_references())


def test_the_reference_checker_catches_a_wrong_path():
    assert resolves("cbir_tutorial.search.engine.SearchEngine.build")
    assert not resolves("cbir_tutorial.widgets.SearchExplorer")
    assert absolute(".backends.make_index", "cbir_tutorial.search.engine", False) == "cbir_tutorial.search.backends.make_index"


def test_the_api_page_lists_exactly_the_public_names():
    listed = set(re.findall(r"^\| `(\w+)` \|", API_PAGE.read_text(encoding="utf-8"), flags=re.M))
    assert listed == set(cbir_tutorial.__all__), (f"missing from docs/api.md: {sorted(set(cbir_tutorial.__all__) - listed)}; "
                                                  f"not exported: {sorted(listed - set(cbir_tutorial.__all__))}")


@pytest.mark.parametrize("name", sorted(cbir_tutorial.__all__))
def test_every_public_name_imports_and_has_a_docstring(name):
    value = getattr(cbir_tutorial, name)
    if callable(value):
        assert (value.__doc__ or "").strip(), f"cbir_tutorial.{name} has no docstring"
