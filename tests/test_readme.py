"""The README's and the API page's Python examples run as written, and the README's first two commands are
install and test."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
API_PAGE = ROOT / "docs" / "api.md"


def code_blocks(language: str, page: Path = README) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


def test_readme_opens_with_install_then_test_then_demo():
    first, *_ = code_blocks("bash")
    assert first.strip().splitlines() == ['python -m pip install -e ".[dev,scale]"', "python -m pytest"]
    assert code_blocks("bash")[1].strip() == "python -m cbir_tutorial demo"


def test_readme_python_examples_run(capsys):
    for block in code_blocks("python"):
        exec(compile(block, str(README), "exec"), {})
    out = capsys.readouterr().out
    assert "rank" in out and "distance" in out and "map_at_k" in out


def test_api_page_example_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    block, = code_blocks("python", API_PAGE)
    exec(compile(block, str(API_PAGE), "exec"), {})
    out = capsys.readouterr().out
    assert "map_at_k" in out and "description" in out and (tmp_path / "my-engine" / "engine.json").is_file()
