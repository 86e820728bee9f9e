"""Test-run parameters for the notebooks run in place: small and offline (a learner's Jupyter session ignores this file).

nbval starts each notebook's kernel from this process, so the variables of ``test_run.env`` reach the
notebooks' parameters cells (``cbir_tutorial.lessons.parameters.notebook_parameters`` reads ``CBIR_NB_<NAME>``).
CI runs the notebooks outside the repository with the same file (tests/notebook_runs.py).
"""

import os
from pathlib import Path

from cbir_tutorial.data.loaders import CHECKOUT_SAMPLE as SAMPLE  # ../shared/data/fashion-sample


def settings_from(path: Path = Path(__file__).with_name("test_run.env")) -> dict[str, str]:
    """``NAME=value`` lines of ``path`` (``#`` comments and blank lines skipped)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


os.environ.setdefault("CBIR_TUTORIAL_DATA", str(SAMPLE))  # absolute: kernels run from notebooks/
for name, value in settings_from().items():
    os.environ.setdefault(name, value)
