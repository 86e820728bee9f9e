"""The package's imports run down the pipeline only, with no cycle, and importing it loads no TensorFlow.

Layers, bottom to top: ``paths``/``_lazy``/``_version`` → ``data`` → ``models`` → ``search`` → ``evaluation`` →
``training`` → ``ui`` → ``lessons`` → ``cli``. Every import is read, at module level and inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cbir_tutorial"
LAYERS = [("paths", "_lazy", "_version"), ("data",), ("models",), ("search",), ("evaluation",), ("training",), ("ui",),
          ("lessons",), ("cli", "__main__")]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its code (a package counts as its ``__init__``)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def layer_of(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    return len(LAYERS)  # the package's own __init__: above everything


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def test_every_folder_of_the_package_has_a_layer(graph):
    unplaced = sorted(m for m in graph if m != "cbir_tutorial" and layer_of(m) == len(LAYERS))
    assert not unplaced, f"modules in no layer: {unplaced}: add their folder to LAYERS"


def test_no_import_runs_up_the_layers(graph):
    upward = [f"{m} imports {t}" for m, targets in sorted(graph.items()) for t in sorted(targets)
              if m != "cbir_tutorial" and layer_of(t) > layer_of(m)
              and not (t == "cbir_tutorial" and m.count(".") == 0)]
    assert not upward, "imports that run up the layers:\n" + "\n".join(upward)


def test_no_import_cycle(graph):
    cycles, state = [], {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_layer_reader_sees_relative_imports_at_module_level_and_inside_functions(graph):
    assert "cbir_tutorial.models.runtime" in graph["cbir_tutorial.models.backbones"]
    assert "cbir_tutorial.data.images" in graph["cbir_tutorial.models.features"]


@pytest.mark.parametrize("code", ["import cbir_tutorial.search, cbir_tutorial.data, cbir_tutorial.training\n"
                                  "import cbir_tutorial.training.protocols, cbir_tutorial.training.sampler\n"
                                  "from cbir_tutorial import SearchEngine, evaluate, load_catalogue, map_at_k",
                                  "from cbir_tutorial.cli import main\n"
                                  "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"])
def test_importing_the_package_or_asking_the_cli_for_help_loads_no_tensorflow(code):
    check = f"{code}\nimport sys\nprint(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
