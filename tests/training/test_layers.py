"""The training package sits above data, models, search and evaluation: nothing there imports it, and
importing it (or the CLI's parser) does not load TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "cbir_tutorial"
BELOW = ("data", "models", "search", "evaluation")
ABOVE = ("ui", "lessons", "cli")


def imported_modules(path: Path) -> set[str]:
    """Every ``cbir_tutorial`` sub-package a module imports, at any depth of the file (absolute names)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            names = [name] + [f"{name}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("cbir_tutorial.") and n.count(".") >= 1}
    return found


def test_nothing_below_imports_training():
    for stage in BELOW:
        for path in (PACKAGE / stage).rglob("*.py"):
            assert "training" not in imported_modules(path), path


def test_training_imports_nothing_above_it():
    for path in (PACKAGE / "training").rglob("*.py"):
        assert not imported_modules(path) & set(ABOVE), path


def test_the_reader_of_a_trained_model_is_below_training():
    assert imported_modules(PACKAGE / "models" / "trained.py") <= {"models", "choices", "paths", "data"}


def test_importing_training_does_not_load_tensorflow():
    code = ("import sys, cbir_tutorial.training, cbir_tutorial.training.protocols, cbir_tutorial.training.sampler\n"
            "from cbir_tutorial.cli import _parser\n_parser()\nprint('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "False"
