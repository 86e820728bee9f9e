"""The README's Python examples run as written, and its first two commands are install and test."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_opens_with_install_then_test_then_demo():
    first, *_ = code_blocks("bash")
    assert first.strip().splitlines() == ['python -m pip install -e ".[dev,scale]"', "python -m pytest"]
    assert code_blocks("bash")[1].strip() == "python -m cbir_tutorial demo"


def test_readme_python_examples_run(capsys):
    for block in code_blocks("python"):
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "rank" in out and "distance" in out and "map_at_k" in out
