"""Every notebook, copied alone into an empty folder, runs under nbval with the package installed from a
wheel: on the sample, and with ``catalogue="auto"`` on a Farfetch-layout dataset under a Kaggle input root.

Nothing but ``CBIR_TUTORIAL_DATA`` and ``CBIR_TUTORIAL_KAGGLE_INPUT`` tells the notebooks where data is:
no ``../shared``, no repository checkout on ``sys.path``, the kernel's working folder holds only
notebooks. Settings: ``notebooks/test_run.env`` (the same as a run in place through notebooks/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from farfetch_layout import build_farfetch_layout

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
SETTINGS = ROOT / "notebooks" / "test_run.env"
#: The Farfetch run: every notebook with catalogue="auto", on 300 listings, small indexes.
FARFETCH_SETTINGS = {"CBIR_NB_CATALOGUE": "auto", "CBIR_NB_N_IMAGES": "150"}
FARFETCH_LISTINGS = 300

#: Runs nbval in the wheel's environment and writes, per notebook, its failures and printed output.
RUNNER = '''
import json, sys
from pathlib import Path
import pytest

class Record:
    def __init__(self):
        self.results = {}

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        entry = self.results.setdefault(Path(str(item.path)).name, {"cells": 0, "failures": [], "output": ""})
        if report.when == "call":
            entry["cells"] += 1
            outputs = getattr(item, "test_outputs", None) or []
            entry["output"] += "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
        if report.failed:
            entry["failures"].append(f"{item.name} ({report.when}): {report.longreprtext[-4000:]}")

record = Record()
status = pytest.main(sys.argv[2:], plugins=[record])
Path(sys.argv[1]).write_text(json.dumps(record.results))
sys.exit(int(status))
'''


def settings_from(path: Path = SETTINGS) -> dict[str, str]:
    """``NAME=value`` lines of ``path`` (``#`` comments and blank lines skipped), as notebooks/conftest.py reads them."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def clean_environment(**settings: str) -> dict[str, str]:
    """This process's environment without anything pointing into the repository, plus ``settings``."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "CBIR_TUTORIAL_KAGGLE_INPUT") and not name.startswith("CBIR_NB_")}
    env.update(settings)
    return env


@pytest.fixture(scope="session")
def wheel_environment(tmp_path_factory) -> dict[str, str]:
    """Variables under which this Python imports ``cbir_tutorial`` from a wheel built now, not the checkout.

    The wheel goes into a private folder put first on ``PYTHONPATH``; everything else comes from the
    running interpreter as it is (base Python, venv, conda or user site alike), so the notebooks see
    exactly the packages the user installed.
    """
    folder = tmp_path_factory.mktemp("wheel")
    source = folder / "source"  # a clean copy: no stale build/ of the checkout ends up in the wheel
    shutil.copytree(ROOT / "cbir_tutorial", source / "cbir_tutorial", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    run_checked([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                 "--disable-pip-version-check", "--wheel-dir", str(folder / "dist"), str(source)], cwd=folder)
    wheel, = (folder / "dist").glob("cbir_tutorial-*.whl")
    target = folder / "site"
    run_checked([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                 "--target", str(target), str(wheel)], cwd=folder)
    env = {"PYTHONPATH": str(target)}
    where = run_checked([sys.executable, "-c", "import cbir_tutorial, nbval; print(cbir_tutorial.__file__)"],
                        cwd=folder, **env).strip()
    assert Path(where).is_relative_to(target), f"cbir_tutorial imported from {where}, not from the wheel"
    return env


def run_checked(command: list[str], cwd: Path, **settings: str) -> str:
    """``command``'s standard output; a failure ends the test with the command's own output and exit code."""
    run = subprocess.run(command, cwd=cwd, env=clean_environment(**settings), capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n"
                    f"{run.stderr[-3000:]}", pytrace=False)
    return run.stdout


#: The two runs, started together: on 2 cores one run's single-threaded stretches (kernel start-up, imports,
#: plotting, photo decoding) overlap the other's model calls.
DATASETS = ("sample", "farfetch")


@pytest.fixture(scope="session")
def notebook_runs(wheel_environment, sample_dir, tmp_path_factory) -> dict[str, dict]:
    """Every notebook run once per dataset, both runs at the same time: ``{dataset: run}`` (see :func:`finished`)."""
    started = {}
    try:
        for dataset in DATASETS:
            started[dataset] = started_run(dataset, wheel_environment, sample_dir, tmp_path_factory)
        return {dataset: finished(*started[dataset]) for dataset in DATASETS}
    finally:  # an interrupted session leaves no run behind
        for _, _, _, process, _ in started.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def started_run(dataset: str, wheel_environment: dict[str, str], sample_dir: Path, tmp_path_factory):
    """``(dataset, folder, results file, process, log file)``: nbval started on copies of the notebooks in an
    empty folder."""
    base = tmp_path_factory.mktemp(f"run-{dataset}")
    folder = base / "notebooks"
    folder.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    settings = {**settings_from(), "CBIR_TUTORIAL_DATA": str(sample_dir)}
    if dataset == "farfetch":
        kaggle_input = base / "kaggle-input"
        build_farfetch_layout(kaggle_input / "farfetch-listings", sample_dir, n_listings=FARFETCH_LISTINGS)
        settings.update(FARFETCH_SETTINGS, CBIR_TUTORIAL_KAGGLE_INPUT=str(kaggle_input))
    (base / "runner.py").write_text(RUNNER)
    results = base / "results.json"
    command = [sys.executable, str(base / "runner.py"), str(results), "--nbval-lax", "--nbval-current-env",
               "-p", "no:cacheprovider", "-q", *NOTEBOOKS]
    log = open(base / "log.txt", "w+", encoding="utf-8")  # a file, not a pipe: nothing blocks on a full buffer
    process = subprocess.Popen(command, cwd=folder, env=clean_environment(**settings, **wheel_environment),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    return dataset, folder, results, process, log


def finished(dataset: str, folder: Path, results: Path, process: subprocess.Popen, log) -> dict:
    """``{"dataset", "results": {notebook: {cells, failures, output}}, "log"}`` once ``process`` has ended, or
    ``{"dataset", "error"}`` when nbval did not run (each dataset's tests then fail with it)."""
    with log:
        code = process.wait()
        log.seek(0)
        output = log.read()
    if code not in (0, 1) or not results.is_file():  # 1: some cell failed; anything else: no run
        return {"dataset": dataset, "error": f"nbval did not run (exit {code}):\n{output[-6000:]}"}
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".ipynb") == NOTEBOOKS
    return {"dataset": dataset, "results": json.loads(results.read_text()), "log": output[-2000:]}


@pytest.fixture(params=DATASETS)
def notebook_run(request, notebook_runs) -> dict:
    """The run on one dataset: ``{"dataset": ..., "results": {notebook: {cells, failures, output}}}``."""
    run = notebook_runs[request.param]
    if "error" in run:
        pytest.fail(run["error"], pytrace=False)
    return run


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_runs_outside_the_repository(notebook_run, notebook):
    result = notebook_run["results"].get(notebook)
    assert result and result["cells"] > 0, f"{notebook} was not run:\n{notebook_run['log']}"
    assert not result["failures"], "\n\n".join(result["failures"])
    if notebook_run["dataset"] == "farfetch":
        assert "load_farfetch('cutout'): kept" in result["output"], f"{notebook} did not use the Farfetch listings"
    else:
        assert "load_farfetch" not in result["output"]


def test_farfetch_layout_is_what_kaggle_mounts(tmp_path, sample_dir, capsys):
    from cbir_tutorial import load_catalogue
    from cbir_tutorial.data.images import ImageError, load_rgb
    from farfetch_layout import COLUMNS, NO_CATEGORY

    import pandas as pd

    root = build_farfetch_layout(tmp_path / "input" / "farfetch-listings", sample_dir, n_listings=120)
    raw = pd.read_csv(root / "current_farfetch_listings.csv", dtype=str, keep_default_na=False)
    assert len(raw.columns) == 23 and list(raw.columns) == ["Unnamed: 0", *COLUMNS]
    assert raw["priceInfo.formattedFinalPrice"].str.fullmatch(r"€\d{1,3}(,\d{3})*").all()
    assert (raw["priceInfo.formattedFinalPrice"].str.len() > 4).any()  # some prices have a thousands separator

    catalogue = load_catalogue("auto", kaggle_input=tmp_path / "input")
    assert catalogue.name == "farfetch-cutout" and "load_farfetch('cutout'): kept" in capsys.readouterr().out
    assert catalogue.n_dropped > 0 and len(catalogue) == len(raw) - catalogue.n_dropped
    table = catalogue.table
    assert set(NO_CATEGORY) <= set(table["description"]) and (table["category"] == "").sum() >= len(NO_CATEGORY)
    assert table["price"].str.startswith("€").all() and table["brand"].ne("").all()
    unreadable = []
    for path in table["path"]:
        try:
            load_rgb(path, 32)
        except ImageError:
            unreadable.append(path)
    assert len(unreadable) == 3
    model = load_catalogue(str(root), photos="model")
    assert len(model) == len(catalogue) and set(model.table["id"]) == set(table["id"])


def test_a_runner_that_cannot_start_fails_with_its_own_output_and_exit_code(tmp_path):
    command = [sys.executable, "-c", "import sys; print('no module named nbval'); sys.exit(4)"]
    with pytest.raises(pytest.fail.Exception, match=r"(?s)failed \(exit 4\):\nno module named nbval"):
        run_checked(command, cwd=tmp_path)


def test_the_wheel_environment_keeps_this_interpreter_s_packages(wheel_environment, tmp_path):
    code = "import cbir_tutorial, nbval, tensorflow; print(cbir_tutorial.__file__)"
    where = Path(run_checked([sys.executable, "-c", code], cwd=tmp_path, **wheel_environment).strip())
    assert where.is_relative_to(wheel_environment["PYTHONPATH"]) and not where.is_relative_to(ROOT)
