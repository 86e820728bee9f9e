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


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolved(base: str, level: int, package: str) -> str:
    """The absolute name of ``base`` imported ``level`` dots up from ``package`` (``level`` 0: absolute)."""
    if not level:
        return base
    anchor = package.split(".")
    anchor = anchor[:len(anchor) - level + 1]
    return ".".join(anchor + ([base] if base else []))


def relative_level(name: str) -> tuple[str, int]:
    """``("module", dots)`` of a module name written as a string, e.g. ``".engine"`` → ``("engine", 1)``."""
    stripped = name.lstrip(".")
    return stripped, len(name) - len(stripped)


def import_statements(path: Path, modules: set[str], root: Path = ROOT) -> list[tuple[str, list[str]]]:
    """``[(imported module, [names taken from it])]`` for every way ``path`` imports from the package: ``import``
    and ``from ... import`` anywhere in its code, the lazy ``_EXPORTS`` tables (``{name: ".module"}``) and
    ``importlib.import_module("literal", ...)`` calls (``root``: the folder holding the package)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = resolved(node.module or "", node.level, package)
            for alias in node.names:
                whole = f"{base}.{alias.name}"
                found.append((whole, []) if whole in modules else (base, [alias.name]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets):
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.append((resolved(*relative_level(value.value), package), [key.value]))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            anchor = node.args[1] if len(node.args) > 1 else None  # import_module(".name", "package")
            anchor = anchor.value if isinstance(anchor, ast.Constant) and isinstance(anchor.value, str) else package
            found.append((resolved(*relative_level(node.args[0].value), anchor), []))
    return found


def in_package(target: str, modules: set[str]) -> str:
    """The package module ``target`` names, or its closest parent that is one (``""``: none)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target


def imported_modules(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The package's modules that ``path`` imports anywhere in its code (a package counts as its ``__init__``)."""
    name = module_name(path, root)
    found = {in_package(target, modules) for target, _ in import_statements(path, modules, root)}
    return found - {"", name}


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


def test_the_layer_reader_sees_lazy_export_tables_and_literal_import_module_calls(tmp_path):
    package = tmp_path / "cbir_tutorial"
    (package / "ui").mkdir(parents=True)
    init = package / "ui" / "__init__.py"
    init.write_text('_EXPORTS = {"SearchExplorer": ".widgets", "EngineShelf": ".shelf"}\n'
                    'def late():\n    import importlib\n    return importlib.import_module("cbir_tutorial.cli")\n'
                    'from importlib import import_module\nimport_module(".lessons", "cbir_tutorial")\n')
    modules = {"cbir_tutorial.ui", "cbir_tutorial.ui.widgets", "cbir_tutorial.ui.shelf", "cbir_tutorial.cli",
               "cbir_tutorial.lessons"}
    found = imported_modules(init, modules, root=tmp_path)
    assert found == {"cbir_tutorial.ui.widgets", "cbir_tutorial.ui.shelf", "cbir_tutorial.cli", "cbir_tutorial.lessons"}


def test_no_module_imports_another_module_s_private_name():
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    private = [f"{module_name(path)} takes {name} from {target}" for path in paths
               for target, names in import_statements(path, modules) for name in names
               if name.startswith("_") and not name.startswith("__") and f"{target}.{name}" not in modules]
    assert not private, ("private names imported from another module (make them public, or move the code):\n"
                         + "\n".join(private))


@pytest.mark.parametrize("code", ["import cbir_tutorial.search, cbir_tutorial.data, cbir_tutorial.training\n"
                                  "import cbir_tutorial.training.protocols, cbir_tutorial.training.sampler\n"
                                  "from cbir_tutorial import SearchEngine, evaluate, load_catalogue, map_at_k",
                                  "from cbir_tutorial.cli import main\n"
                                  "try:\n    main(['--help'])\nexcept SystemExit:\n    pass"])
def test_importing_the_package_or_asking_the_cli_for_help_loads_no_tensorflow(code):
    check = f"{code}\nimport sys\nprint(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
