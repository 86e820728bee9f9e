"""How long each notebook takes a learner: run top to bottom at its own defaults on the 770-photo sample, first
with an empty cache (the features extracted, the model trained), then again with the cache that run left.

Each run is ``jupyter nbconvert --execute`` in a fresh folder, as a learner's "Run all": its wall seconds, and the
CPU seconds of the kernel and everything it started (steadier than wall time on a shared machine). The settings
are the notebooks' defaults with the sample as the catalogue, every exercise answered by its solution (so every
check runs), and, offline, the Keras backbones with random weights: the same arithmetic as ImageNet's, without
the one-time download (``--settings FILE`` adds or replaces settings, as ``notebooks/test_run.env``).

    python benchmarks/bench_notebooks.py                # the ten notebooks, twice each
    python benchmarks/bench_notebooks.py 02 05          # some of them
    python benchmarks/bench_notebooks.py --smoke        # notebook 1 at the test-run settings, for the tests
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, add_json_option, note, print_header, print_table, write_json

from cbir_tutorial.lessons import environment
from cbir_tutorial.lessons.parameters import settings_file

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
#: A learner's run, with the sample and every check: what the notebooks' defaults leave open.
DEFAULTS = {"CBIR_NB_CATALOGUE": "sample", "CBIR_TUTORIAL_SOLUTIONS": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            "MPLBACKEND": "Agg", "TQDM_DISABLE": "1"}


def children_cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process of this one (and theirs)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed_run(notebook: Path, folder: Path, env: dict[str, str]) -> tuple[float, float]:
    """``(wall s, CPU s)`` of executing ``notebook`` top to bottom in ``folder`` (a copy of it, alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(notebook, folder / notebook.name)
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               "--ExecutePreprocessor.timeout=3600", "--output", "executed.ipynb", notebook.name]
    cpu, began = children_cpu_seconds(), time.perf_counter()
    run = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - began, children_cpu_seconds() - cpu
    if run.returncode != 0:
        raise SystemExit(f"{notebook.name} failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    return wall, cpu


def chosen(names: list[str]) -> list[Path]:
    """The notebooks whose file names start with ``names`` (all of them for none); SystemExit for an unknown one."""
    if not names:
        return NOTEBOOKS
    picked = [path for path in NOTEBOOKS if any(path.name.startswith(name) for name in names)]
    unknown = [name for name in names if not any(path.name.startswith(name) for path in NOTEBOOKS)]
    if unknown:
        raise SystemExit(f"no notebook starts with {', '.join(unknown)}: give some of "
                         f"{', '.join(path.name[:2] for path in NOTEBOOKS)}")
    return picked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="the notebooks' numbers (default: all ten)")
    parser.add_argument("--settings", type=Path, help="a settings file (NAME=value lines) applied over the defaults")
    parser.add_argument("--smoke", action="store_true", help="notebook 1 at the test-run settings")
    add_json_option(parser)
    args = parser.parse_args(argv)
    notebooks = chosen(["01"] if args.smoke and not args.notebooks else args.notebooks)
    settings = dict(DEFAULTS, CBIR_NB_WEIGHTS="random" if args.smoke else environment.keras_weights())
    if args.smoke or args.settings:
        settings.update(settings_file(args.settings or ROOT / "notebooks" / "test_run.env"))
    print_header("Notebook run times (bench_notebooks.py)", ("tensorflow", "keras", "numpy"))
    work = Path(tempfile.mkdtemp(prefix="bench_notebooks_"))
    rows = []
    try:
        for notebook in notebooks:
            cache = work / "cache" / notebook.stem  # each notebook starts from an empty cache, as on a fresh machine
            env = dict(os.environ, **settings, CBIR_TUTORIAL_CACHE=str(cache))
            first = timed_run(notebook, work / notebook.stem / "first", env)
            again = timed_run(notebook, work / notebook.stem / "again", env)
            rows.append({"notebook": notebook.name, "first run: wall s": first[0], "first run: CPU s": first[1],
                         "cached: wall s": again[0], "cached: CPU s": again[1]})
            print(f"{notebook.name}: {first[0]:.0f} s, then {again[0]:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print_table("Each notebook run top to bottom, with an empty cache, then with the cache it left", rows)
    weights = settings["CBIR_NB_WEIGHTS"]
    note(f"Settings: the notebooks' defaults with {', '.join(f'{k}={v}' for k, v in settings.items())}"
         + ("; random Keras weights time the same arithmetic as ImageNet's, without the one-time download"
            if weights == "random" else ""))
    write_json(args.json)


if __name__ == "__main__":
    main()
