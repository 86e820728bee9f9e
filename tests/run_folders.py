"""Folders shared by every pytest-xdist worker of one run, and things built in them once per run.

Under xdist each worker has its own ``tmp_path_factory`` base (``.../pytest-N/popen-gw0``); their parent
is the run's own folder, so what is built there is built once per run, whichever worker asks first,
the others waiting on a file lock (pytest-xdist's documented pattern for session fixtures).
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock


def run_folder(tmp_path_factory) -> Path:
    """The folder of this test run, the same for all its xdist workers (the session's base without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(folder: Path, build: Callable[[Path], None]) -> Path:
    """``folder``, made by ``build(folder)`` unless an earlier worker of the run made it; a build that
    raised leaves no folder, so the next one to ask builds it again."""
    with FileLock(str(folder) + ".lock"):
        done = folder / ".built"
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                build(folder)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            done.touch()
    return folder


def made_once(tmp_path_factory, name: str, make: Callable[[Path], object]):
    """What ``make(folder)`` returned, ``folder`` (empty, for what it makes) made once per run as the run's folder
    ``name/`` (:func:`built_once`), whichever worker asks first; the others read the value back, pickled beside
    the folder. A model shared this way is trained once per run, not once per worker."""
    folder = run_folder(tmp_path_factory) / name
    value = folder.with_name(f"{name}.pickle")

    def build(folder: Path) -> None:
        value.write_bytes(pickle.dumps(make(folder)))

    built_once(folder, build)
    return pickle.loads(value.read_bytes())
