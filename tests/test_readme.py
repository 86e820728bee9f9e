"""What a reader of the README relies on: its Python example runs on the sample and prints what its comments
say; every command it shows exists and takes the options shown (read by the command line's own argparse
parser); every file it names exists; its tables name exactly the package's modules, the notebooks and the
test markers. The API page's example runs too."""

from __future__ import annotations

import ast
import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cbir_tutorial import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
API_PAGE = ROOT / "docs" / "api.md"
PACKAGE = ROOT / "cbir_tutorial"
SUBCOMMAND = re.compile(r"python -m cbir_tutorial\s+([a-z][\w-]*)")


def code_blocks(language: str, page: Path = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def inline_code(page: Path = README) -> list[str]:
    """The text of every inline code span outside the fenced blocks."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"`([^`\n]+)`", text)


def table(heading: str) -> list[list[str]]:
    """The rows of the README table whose header row starts with ``| heading |``, as cells (a cell's text
    may hold ``|`` inside code, so a row is cut at its first ``|`` after the first cell)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {heading} |"))
    rows = []
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:]):
        first, rest = line.strip().strip("|").split("|", 1)
        rows.append([first.strip().strip("`"), rest.rsplit("|", 1)[0].strip() if rest.endswith("|") else rest.strip()])
    return rows


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11 reads pyproject.toml with tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# The examples


def test_readme_python_example_runs_and_prints_what_it_says(capsys):
    """Five products for a catalogue photo, nearest first (the photo itself first), then the leave-one-out
    scores at K=10: the baseline's MAP@10 on the sample over all categories, then one row per category."""
    block, = code_blocks("python")
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert "EfficientNet-Lite0" in block and namespace["engine"].extractor.backbone == "efficientnet_lite0"
    start = next(i for i, words in enumerate(lines) if words[:1] == ["rank"])
    assert {"brand", "price", "distance"} <= set(lines[start])  # pandas may hide the middle columns behind "..."
    ranks, distances = zip(*((int(words[1]), float(words[-1])) for words in lines[start + 1:start + 6]))
    assert ranks == (1, 2, 3, 4, 5) and list(distances) == sorted(distances) and distances[0] < 1e-3
    header = next(words for words in lines[start + 6:] if "map_at_k" in words)
    rows = lines[lines.index(header) + 1:lines.index(header) + 4]
    from_end = len(header) - header.index("map_at_k")  # category names may hold spaces: count from the right
    assert rows[0][1] == "(all)" and [words[-1] for words in rows] == ["10"] * 3  # k
    assert float(rows[0][-from_end]) == pytest.approx(0.732, abs=0.002)  # the baseline's MAP@10 on the sample


def test_api_page_example_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block, = code_blocks("python", API_PAGE)
    exec(compile(block, str(API_PAGE), "exec"), {})
    out = capsys.readouterr().out
    assert "map_at_k" in out and "description" in out and (tmp_path / "my-engine" / "engine.json").is_file()


# --------------------------------------------------------------------------------------------------
# The commands


def readme_commands() -> list[list[str]]:
    """Every ``python -m cbir_tutorial SUBCOMMAND ...`` line of the README's shell blocks, as argv lists after
    the module: optional ``[...]`` parts included, each ``a|b`` alternative giving its own command."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if not SUBCOMMAND.match(line.strip()):
                continue
            words = [word.strip("[]") for word in shlex.split(line)[3:]]
            choices = [word.split("|") if "|" in word else [word] for word in words if word]
            commands.extend(list(argv) for argv in itertools.product(*choices))
    return commands


def named_subcommands() -> set[str]:
    """Every subcommand the README names: in its commands, and in ``demo | search | ...`` lists."""
    text = README.read_text(encoding="utf-8")
    names = set(SUBCOMMAND.findall(text))
    for listing in re.findall(r"python -m cbir_tutorial ([a-z]+(?: \| [a-z]+)+)", text):
        names.update(listing.split(" | "))
    return names


def test_the_readme_opens_with_install_then_test_then_demo():
    install, test = code_blocks("bash")[0].strip().splitlines()
    assert install.startswith("python -m pip install -e ") and test.startswith("python -m pytest")
    extras = re.search(r'"\.\[([\w,-]+)\]"', install).group(1).split(",")
    declared = pyproject()["project"]["optional-dependencies"]
    assert set(extras) <= set(declared), f"{install}: no extra {sorted(set(extras) - set(declared))}"
    if " -n " in f"{test} ":  # pytest-xdist's option: the extras must bring it
        assert any(r.startswith("pytest-xdist") for extra in extras for r in declared[extra])
    assert "python -m cbir_tutorial demo" in [block.strip() for block in code_blocks("bash")]


def test_help_lists_every_subcommand_the_readme_names():
    shown = subprocess.run([sys.executable, "-m", "cbir_tutorial", "--help"], capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
    assert shown.returncode == 0, shown.stderr
    listed = set(re.search(r"\{([\w,-]+)\}", shown.stdout).group(1).split(","))
    named = named_subcommands()
    assert {"demo", "search", "evaluate", "train"} <= named  # the parsing above found them
    assert named <= listed, f"the README names {sorted(named - listed)}, which --help does not list"


@pytest.mark.parametrize("argv", readme_commands(), ids=" ".join)
def test_every_readme_command_line_is_accepted_by_its_parser(argv, monkeypatch, capsys):
    from cbir_tutorial.data.loaders import FORMATS
    from cbir_tutorial.models.backbones import BACKBONES
    from cbir_tutorial.models.weights import weights_from_word
    from cbir_tutorial.search.recipes import RECIPES

    parsed = []
    monkeypatch.setattr(cli, f"run_{argv[0]}", parsed.append)  # the command is parsed, not run
    try:
        status = cli.main(argv)
    except SystemExit as exit:
        pytest.fail(f"python -m cbir_tutorial {' '.join(argv)}: refused by its parser (exit {exit.code}):\n"
                    f"{capsys.readouterr().err}")
    assert status == 0 and len(parsed) == 1
    args = parsed[0]
    assert getattr(args, "format", "auto") in FORMATS and getattr(args, "backbone", None) in (None, *BACKBONES)
    weights_from_word(getattr(args, "weights", "imagenet"))
    trained = {cmd[cmd.index("--out") + 1] for cmd in readme_commands() if cmd[0] == "train" and "--out" in cmd}
    if hasattr(args, "recipe"):
        assert args.recipe in RECIPES or args.recipe in trained, f"--recipe {args.recipe}: neither a recipe nor " \
                                                                 "the --out of a train command shown"


def test_options_the_prose_gives_a_subcommand_are_in_its_help(capsys):
    """``--recipe`` (of ``evaluate``, ``search`` and ``demo``), ``train --out DIR``..."""
    claims = set()
    text = README.read_text(encoding="utf-8")
    for option, owners in re.findall(r"`(--[\w-]+)` \(of ((?:`[a-z]+`(?:, | and )?)+)\)", text):
        claims.update((owner, option) for owner in re.findall(r"`([a-z]+)`", owners))
    for span in inline_code():
        words = span.split()
        if words[0] in named_subcommands():
            claims.update((words[0], word) for word in words[1:] if word.startswith("--"))
    assert ("search", "--query") in claims and ("train", "--out") in claims  # the parsing above found them
    for command, option in sorted(claims):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert re.search(rf"(?<![\w-]){option}(?![\w-])", capsys.readouterr().out), f"{command} has no {option}"


def test_module_commands_take_the_options_shown():
    """``python -m cbir_tutorial.lessons.setup_cells --repository owner/name``: the module runs and takes them."""
    commands = re.findall(r"python -m (cbir_tutorial\.[\w.]+)((?: --?[\w-]+(?: [^\s`-][^\s`]*)?)*)",
                          README.read_text(encoding="utf-8"))
    assert commands
    for module, options in commands:
        shown = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT,
                               timeout=60)
        assert shown.returncode == 0, f"python -m {module} --help: {shown.stderr}"
        for option in re.findall(r"--[\w-]+", options):
            assert option in shown.stdout, f"python -m {module} has no {option}"


def test_nox_sessions_shown_exist_with_the_versions_said():
    noxfile = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    sessions = {node.name for node in noxfile.body if isinstance(node, ast.FunctionDef)
                and any("session" in ast.unparse(d) for d in node.decorator_list)}
    shown = set(re.findall(r"nox -s ([\w-]+)", README.read_text(encoding="utf-8")))
    assert shown and shown <= sessions, f"no nox session {sorted(shown - sessions)}"
    colab = next(ast.literal_eval(node.value) for node in noxfile.body
                 if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COLAB")
    said = re.search(r"`nox -s colab` installs Colab's versions\s*\(([^)]*)\)", README.read_text(encoding="utf-8"))
    if said:
        versions = dict(re.findall(r"([A-Za-z]+) (\d[\w.]*)", said.group(1)))
        assert {name.lower(): version for name, version in versions.items()} == colab


# --------------------------------------------------------------------------------------------------
# The files, modules, notebooks and markers it names


def test_every_file_the_readme_links_or_names_exists():
    text = README.read_text(encoding="utf-8")
    links = [target for target in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in target]
    assert links and [link for link in links if not (ROOT / link.split("#")[0]).exists()] == []
    top = {path.name for path in ROOT.iterdir()} - {"dist", "build", "runs"}  # not what a command writes
    named = {word.rstrip(".,;:)") for span in inline_code() + code_blocks("bash") for word in span.split()}
    paths = {word for word in named if "/" in word or re.search(r"\.(py|md|ipynb|env|toml)$", word)}
    checked = {path for path in paths if path.split("/")[0] in top and "*" not in path
               and "_build" not in path.split("/")}  # docs/_build/...: what docs/build writes
    assert {"tests/test_layers.py", "notebooks/test_run.env"} <= checked  # the parsing above found them
    assert sorted(path for path in checked if not (ROOT / path).exists()) == []


def module_mentions(cell: str) -> set[str]:
    """The modules a folder's cell names: ``name``: at the start of a ``;`` part, or a list of names after a
    colon (``... : `a` (…), `b` (…) and `c` (…)``); parenthesised remarks are left out first."""
    outside, depth, code = [], 0, False
    for char in cell:
        code = not code if char == "`" else code
        if not code and char == "(":
            depth += 1
        elif not code and char == ")":
            depth -= 1
        elif depth == 0:
            outside.append(char)
    names = set()
    for part in "".join(outside).split(";"):
        part = part.strip()
        if head := re.match(r"((?:`\w+`(?:,\s*|\s+and\s+)?)+):", part):
            names.update(re.findall(r"`(\w+)`", head.group(1)))
        elif listing := re.search(r":\s*((?:`\w+`\s*(?:,|\band\b)?\s*)+)$", part):
            names.update(re.findall(r"`(\w+)`", listing.group(1)))
    return names


def package_modules(folder: Path) -> set[str]:
    return {path.stem for path in folder.glob("*.py") if not path.stem.startswith("_")}


def test_the_module_table_names_every_module_and_only_those():
    rows = dict(table("folder / module"))
    folders = {name.rstrip("/"): cell for name, cell in rows.items() if name.endswith("/")}
    assert set(folders) == {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    problems = []
    for folder, cell in folders.items():
        named, present = module_mentions(cell), package_modules(PACKAGE / folder)
        problems += [f"{folder}/ names {name}, which is not a module there" for name in sorted(named - present)]
        problems += [f"{folder}/{name}.py is not in the table" for name in sorted(present - named)]
    top = {name for name in rows if not name.endswith("/")}
    problems += [f"{name}: no such module" for name in sorted(top - package_modules(PACKAGE))]
    problems += [f"cbir_tutorial/{name}.py is not in the table" for name in sorted(package_modules(PACKAGE) - top)]
    assert not problems, "the README's folder / module table:\n" + "\n".join(problems)


def test_the_notebook_table_lists_every_notebook():
    listed = [name for name, _ in table("notebook")]
    assert listed == sorted(f"notebooks/{path.name}" for path in (ROOT / "notebooks").glob("*.ipynb"))


def test_the_marker_table_lists_the_declared_markers():
    declared = {line.split(":")[0].strip() for line in pyproject()["tool"]["pytest"]["ini_options"]["markers"]}
    assert {name for name, _ in table("marker")} == declared
    for expression in re.findall(r'-m "([^"]+)"', README.read_text(encoding="utf-8")):
        words = set(re.findall(r"\w+", expression)) - {"not", "and", "or"}
        assert words <= declared, f'-m "{expression}": no marker {sorted(words - declared)}'
