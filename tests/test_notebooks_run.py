"""Every notebook, copied alone into an empty folder, runs under nbval with the package installed from a
wheel: on the sample, and with ``catalogue="auto"`` on a Farfetch-layout dataset under a Kaggle input root
(:mod:`notebook_runs`). The runs start with the session (``notebook_runs_started`` in tests/conftest.py)
and work while the unit tests do; these tests wait for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from background import NICENESS, in_background
from farfetch_layout import build_farfetch_layout
from notebook_runs import DATASETS, NOTEBOOKS, ROOT, finished, run_checked


@pytest.fixture(scope="session")
def notebook_runs(notebook_runs_started, record_testsuite_property) -> dict[str, dict]:
    """Every notebook run once per dataset: ``{dataset: run}`` (see :func:`notebook_runs.finished`). nbval's
    closing line of each run and where its time went go into the JUnit report (the runs overlap the unit
    tests, so no test's time is theirs; .ci/run prints them)."""
    if "error" in notebook_runs_started:  # the wheel could not be built: no run started
        return {dataset: {"dataset": dataset, "error": notebook_runs_started["error"]} for dataset in DATASETS}
    runs = {dataset: finished(*notebook_runs_started[dataset]) for dataset in DATASETS}
    for dataset, run in runs.items():
        if "log" in run:
            record_testsuite_property(f"notebook run on the {dataset}", run["log"].strip().splitlines()[-1].strip("= "))
            record_testsuite_property(f"notebook run on the {dataset}, where the time went", time_report(run["results"]))
    return runs


def time_report(results: dict[str, dict], slowest: int = 5) -> str:
    """Seconds per notebook and the ``slowest`` cells of a run, e.g. ``01 4 s, 02 6 s, ...; slowest cells:
    06 Cell 16 56 s, ...`` (cell numbers as nbval counts code cells, from 0)."""
    numbered = {name.split("_")[0]: result["seconds"] for name, result in sorted(results.items())}
    cells = [(seconds, f"{number} {cell}") for number, times in numbered.items() for cell, seconds in times.items()]
    per_notebook = ", ".join(f"{number} {sum(times.values()):.0f} s" for number, times in numbered.items())
    slow = ", ".join(f"{where} {seconds:.0f} s" for seconds, where in sorted(cells, reverse=True)[:slowest])
    return f"{per_notebook}; slowest cells: {slow}"


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


def test_the_time_report_sums_each_notebook_and_names_the_slowest_cells():
    results = {"02_cnns.ipynb": {"seconds": {"Cell 0": 1.0, "Cell 1": 2.4}},
               "01_setup_and_data.ipynb": {"seconds": {"Cell 0": 0.5, "Cell 3": 9.0}}}
    assert time_report(results, slowest=2) == "01 10 s, 02 3 s; slowest cells: 01 Cell 3 9 s, 02 Cell 1 2 s"


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="process priorities are POSIX")
def test_a_background_run_yields_the_cpu_to_the_tests():
    process = in_background(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]))
    try:
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)
    finally:
        process.kill()
        process.wait()
