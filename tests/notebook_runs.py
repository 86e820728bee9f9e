"""Every notebook, copied alone into an empty folder, run under nbval with the package installed from a wheel,
as Colab or Kaggle sees it: on the sample, and with ``catalogue="auto"`` on a Farfetch-layout dataset under
a Kaggle input root.

Nothing but ``CBIR_TUTORIAL_DATA`` and ``CBIR_TUTORIAL_KAGGLE_INPUT`` tells the notebooks where data is: no
``../shared``, no repository checkout on ``sys.path``, the kernel's working folder holds only notebooks.
Settings: ``notebooks/test_run.env`` (the same as a run in place through notebooks/conftest.py).

The runs start with the test session (``tests/conftest.py``) and work in the background while the unit
tests run; ``tests/test_notebooks_run.py`` waits for them and reports each notebook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from background import in_background
from farfetch_layout import build_farfetch_layout

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
SETTINGS = ROOT / "notebooks" / "test_run.env"
#: The two runs, started together.
DATASETS = ("sample", "farfetch")
#: The Farfetch run: every notebook with catalogue="auto", on 300 listings, small indexes; of the random-weight
#: Keras backbones that 04 and 06 build (the sample run builds all three, on the same photos), ResNet50 alone.
FARFETCH_SETTINGS = {"CBIR_NB_CATALOGUE": "auto", "CBIR_NB_N_IMAGES": "150", "CBIR_NB_BACKBONES": "resnet50"}
FARFETCH_LISTINGS = 300
#: One thread per numeric library in each run's kernels: the two runs and the unit tests share CI's two
#: cores, where threads that spin waiting for each other only take time from the other processes.
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
              "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

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
        entry = self.results.setdefault(Path(str(item.path)).name,
                                        {"cells": 0, "failures": [], "output": "", "seconds": {}})
        if report.when == "call":
            entry["cells"] += 1
            entry["seconds"][item.name] = report.duration
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


def run_checked(command: list[str], cwd: Path, **settings: str) -> str:
    """``command``'s standard output; a failure ends the test with the command's own output and exit code."""
    run = subprocess.run(command, cwd=cwd, env=clean_environment(**settings), capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n"
                    f"{run.stderr[-3000:]}", pytrace=False)
    return run.stdout


def wheel_environment(folder: Path) -> dict[str, str]:
    """Variables under which this Python imports ``cbir_tutorial`` from a wheel built now in ``folder``, not
    from the checkout.

    The wheel goes into a private folder put first on ``PYTHONPATH``; everything else comes from the
    running interpreter as it is (base Python, venv, conda or user site alike), so the notebooks see
    exactly the packages the user installed.
    """
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


def started_run(dataset: str, base: Path, wheel_settings: dict[str, str], sample_dir: Path):
    """``(dataset, folder, results file, process, log file)``: nbval started on copies of the notebooks in an
    empty folder under ``base``, with a cache folder of its own (the runs overlap, and Milvus Lite opens a
    database file in one process at a time)."""
    folder = base / "notebooks"
    folder.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, folder / name)
    settings = {**settings_from(), **ONE_THREAD, "CBIR_TUTORIAL_DATA": str(sample_dir),
                "CBIR_TUTORIAL_CACHE": str(base / "cache")}
    if dataset == "farfetch":
        kaggle_input = base / "kaggle-input"
        build_farfetch_layout(kaggle_input / "farfetch-listings", sample_dir, n_listings=FARFETCH_LISTINGS)
        settings.update(FARFETCH_SETTINGS, CBIR_TUTORIAL_KAGGLE_INPUT=str(kaggle_input))
    (base / "runner.py").write_text(RUNNER)
    results = base / "results.json"
    command = [sys.executable, str(base / "runner.py"), str(results), "--nbval-lax", "--nbval-current-env",
               "-p", "no:cacheprovider", "-q", *NOTEBOOKS]
    log = open(base / "log.txt", "w+", encoding="utf-8")  # a file, not a pipe: nothing blocks on a full buffer
    process = subprocess.Popen(command, cwd=folder, env=clean_environment(**settings, **wheel_settings),
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    in_background(process)
    return dataset, folder, results, process, log


def finished(dataset: str, folder: Path, results: Path, process: subprocess.Popen, log) -> dict:
    """``{"dataset", "results": {notebook: {cells, failures, output, seconds: {cell: s}}}, "log"}`` once
    ``process`` has ended, or ``{"dataset", "error"}`` when nbval did not run (each dataset's tests then fail
    with it)."""
    with log:
        code = process.wait()
        log.seek(0)
        output = log.read()
    if code not in (0, 1) or not results.is_file():  # 1: some cell failed; anything else: no run
        return {"dataset": dataset, "error": f"nbval did not run (exit {code}):\n{output[-6000:]}"}
    assert sorted(p.name for p in folder.iterdir() if p.suffix == ".ipynb") == NOTEBOOKS
    return {"dataset": dataset, "results": json.loads(results.read_text()), "log": output[-2000:]}


def stopped(run) -> None:
    """Kills a started run that is still going (an interrupted session leaves no run behind)."""
    process = run[3]
    if process.poll() is None:
        process.kill()
        process.wait()
