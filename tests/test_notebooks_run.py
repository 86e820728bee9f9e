"""Every notebook runs as Colab or Kaggle sees it: copied alone into an empty folder, the package from a wheel
built for the run, with ``catalogue="auto"`` on a Farfetch-layout dataset under a Kaggle input root, or on the
sample (``--notebook-data sample``: the ``colab`` nox session; both ``--notebook-data`` options run both). One test per notebook and dataset, run by nbclient in a kernel of this interpreter, so that
pytest-xdist spreads them and a failure names the notebook and its cell.

Nothing but ``CBIR_TUTORIAL_DATA`` and ``CBIR_TUTORIAL_KAGGLE_INPUT`` tells the notebooks where data is: no
``../shared``, no checkout on ``sys.path``. Settings: ``notebooks/test_run.env`` (as for a run in place,
``python -m pytest --nbval-lax notebooks/05_image_retrieval.ipynb``, through notebooks/conftest.py).

``--first-cell-installs`` (the ``colab`` nox session): the wheel lies beside each notebook instead, and its
first cell installs it with the dependencies the environment lacks, as on Colab; every ``--pinned
NAME==VERSION`` must still be installed as pinned after the notebook ran.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cbir_tutorial.lessons.parameters import settings_file
from farfetch_layout import build_farfetch_layout
from run_folders import built_once, run_folder
from threads import ONE_THREAD_EACH

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
#: The Farfetch run: every notebook with catalogue="auto", on 300 listings; of the random-weight Keras backbones that
#: 03, 04 and 06 build (the sample run builds all three, on the same photos), ResNet50 alone.
DATASETS = {"sample": {}, "farfetch": {"CBIR_NB_CATALOGUE": "auto", "CBIR_NB_BACKBONES": "resnet50"}}
FARFETCH_LISTINGS = 300
CELL_SECONDS = 900


def run_checked(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """``command``'s standard output; a failure ends the test with the command's own output and exit code."""
    run = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed (exit {run.returncode}):\n{run.stdout[-3000:]}\n"
                    f"{run.stderr[-3000:]}", pytrace=False)
    return run.stdout


def built_wheel(folder: Path) -> None:
    """A wheel of the checkout in ``folder/dist``, also installed alone into ``folder/site``."""
    source = folder / "source"  # a clean copy: no stale build/ of the checkout ends up in the wheel
    shutil.copytree(ROOT / "cbir_tutorial", source / "cbir_tutorial", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    run_checked([*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(folder / "dist"),
                 str(source)], cwd=folder)
    wheel, = (folder / "dist").glob("cbir_tutorial-*.whl")
    run_checked([*pip, "install", "--no-deps", "--target", str(folder / "site"), str(wheel)], cwd=folder)


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The folder holding ``dist/cbir_tutorial-*.whl`` and ``site/`` (the wheel installed alone), built
    once per run."""
    return built_once(run_folder(tmp_path_factory) / "wheel", built_wheel)


@pytest.fixture(scope="session")
def first_cell_installs(pytestconfig) -> bool:
    return pytestconfig.getoption("first_cell_installs")


@pytest.fixture(scope="session")
def package_settings(wheel, first_cell_installs) -> dict[str, str]:
    """The variables under which the kernels import ``cbir_tutorial`` from the wheel: ``PYTHONPATH`` = the
    wheel's ``site/``, before the interpreter's own packages; none when the first cell installs it."""
    if first_cell_installs:
        return {}
    settings = {"PYTHONPATH": str(wheel / "site")}
    code = "import cbir_tutorial, nbclient, ipykernel; print(cbir_tutorial.__file__)"
    where = Path(run_checked([sys.executable, "-c", code], cwd=wheel, env=kernel_environment(settings)).strip())
    assert where.is_relative_to(wheel / "site"), f"cbir_tutorial imported from {where}, not from the wheel"
    return settings


def kernel_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without anything pointing into the repository, plus ``settings``."""
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "CBIR_TUTORIAL_KAGGLE_INPUT") and not name.startswith("CBIR_NB_")}
    env.update(settings)
    return env


def pytest_generate_tests(metafunc):
    """The notebook runs of the datasets ``--notebook-data`` names: ``farfetch`` alone by default, since CI's
    ``colab`` session runs every notebook on the sample (with Colab's versions) beside the README's test command."""
    if "dataset_settings" in metafunc.fixturenames:
        datasets = metafunc.config.getoption("notebook_data") or ["farfetch"]
        metafunc.parametrize("dataset_settings", list(dict.fromkeys(datasets)), indirect=True, scope="session")


@pytest.fixture(scope="session")
def dataset_settings(request, tmp_path_factory, sample_dir) -> dict[str, str]:
    """The test-run settings of one dataset, with a feature cache of its own shared by the run's workers
    (Milvus Lite opens a database file in one process at a time, and notebook 09 of each dataset uses one)."""
    dataset = request.param
    folder = run_folder(tmp_path_factory) / f"notebooks-{dataset}"
    settings = {**settings_file(ROOT / "notebooks" / "test_run.env"), **ONE_THREAD_EACH, **DATASETS[dataset],
                "CBIR_TUTORIAL_DATA": str(sample_dir), "CBIR_TUTORIAL_CACHE": str(folder / "cache")}
    if dataset == "farfetch":
        built_once(folder / "kaggle-input", lambda root: build_farfetch_layout(
            root / "farfetch-listings", sample_dir, n_listings=FARFETCH_LISTINGS))
        settings["CBIR_TUTORIAL_KAGGLE_INPUT"] = str(folder / "kaggle-input")
    return settings


def installed_versions(names: list[str]) -> dict[str, str | None]:
    """``{name: version}`` of the distributions installed for this interpreter now (None: not installed)."""
    code = ("import importlib.metadata as m, json, sys\n"
            "def version(name):\n"
            "    try:\n        return m.version(name)\n"
            "    except m.PackageNotFoundError:\n        return None\n"
            "print(json.dumps({name: version(name) for name in sys.argv[1:]}))")
    return json.loads(run_checked([sys.executable, "-c", code, *names], cwd=ROOT))


def executed(path: Path, env: dict[str, str]):
    """The notebook at ``path`` run top to bottom in a kernel of this interpreter started in its folder; a
    cell that raises fails the test with the notebook's name, the cell's number and the error."""
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    kernels = path.parent.parent / "kernels"
    if not (kernels / "this-python").is_dir():
        write_kernel_spec(kernels / "this-python", overrides={"display_name": "this interpreter"})
    manager = KernelManager(kernel_name="this-python", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, km=manager, timeout=CELL_SECONDS, resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel(env=env, cwd=str(path.parent), cleanup_kc=True):  # shut down at the end: km is ours
        for index, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # without the traceback's colours
                pytest.fail(f"{path.name}, cell {index + 1} (counting markdown cells, from 1) raised:\n"
                            f"{plain[-6000:]}", pytrace=False)
    return notebook


def printed(notebook) -> str:
    """Everything the notebook's cells printed (stream outputs), in order."""
    return "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("output_type") == "stream")


@pytest.mark.notebooks
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_the_notebook_runs_alone_from_the_wheel(notebook, dataset_settings, package_settings, first_cell_installs,
                                                wheel, pytestconfig, tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    shutil.copy(ROOT / "notebooks" / notebook, folder / notebook)
    if first_cell_installs:
        for built in (wheel / "dist").glob("cbir_tutorial-*.whl"):
            shutil.copy(built, folder / built.name)
    pins = dict(pin.split("==") for pin in pytestconfig.getoption("pinned"))
    if pins:
        assert installed_versions(list(pins)) == pins, "the environment does not have the pinned versions to begin with"

    ran = executed(folder / notebook, kernel_environment({**dataset_settings, **package_settings}))
    output = printed(ran)
    keep = pytestconfig.getoption("executed_notebooks")
    if keep:
        import nbformat

        target = Path(keep) / ("farfetch" if "CBIR_TUTORIAL_KAGGLE_INPUT" in dataset_settings else "sample")
        target.mkdir(parents=True, exist_ok=True)
        nbformat.write(ran, target / notebook)

    if "CBIR_TUTORIAL_KAGGLE_INPUT" in dataset_settings:
        assert "load_farfetch('cutout'): kept" in output, f"{notebook} did not use the Farfetch listings"
    else:
        assert "load_farfetch" not in output
    if pins:
        assert installed_versions(list(pins)) == pins, f"running {notebook} changed a pinned package"


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


def test_a_command_that_fails_ends_the_test_with_its_own_output_and_exit_code(tmp_path):
    command = [sys.executable, "-c", "import sys; print('no module named nbclient'); sys.exit(4)"]
    with pytest.raises(pytest.fail.Exception, match=r"(?s)failed \(exit 4\):\nno module named nbclient"):
        run_checked(command, cwd=tmp_path)


def test_a_cell_that_raises_fails_naming_the_notebook_and_the_cell(tmp_path):
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A lesson"),
                                               nbformat.v4.new_code_cell("x = 1\nprint('x is', x)"),
                                               nbformat.v4.new_code_cell("categories = []\ncategories[2]")])
    nbformat.write(notebook, folder / "99_broken.ipynb")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)99_broken\.ipynb, cell 3 .*\ncategories\[2\]\n.*IndexError: list index out of range"):
        executed(folder / "99_broken.ipynb", kernel_environment({}))
    nbformat.write(nbformat.v4.new_notebook(cells=notebook.cells[:2]), folder / "98_fine.ipynb")
    assert printed(executed(folder / "98_fine.ipynb", kernel_environment({}))) == "x is 1\n"


def test_a_notebook_run_leaves_no_kernel_running(tmp_path):
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    code = "import os\nprint(os.getpid())"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), folder / "97_pid.ipynb")
    pid = int(printed(executed(folder / "97_pid.ipynb", kernel_environment({}))))
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):  # the kernel was shut down and reaped
        os.kill(pid, 0)
