"""Test-run parameters for the notebooks run in place: small and offline (a learner's Jupyter session ignores this file).

nbval starts each notebook's kernel from this process, so the variables of ``test_run.env`` reach the
notebooks' parameters cells (``cbir_tutorial.lessons.parameters.notebook_parameters`` reads ``CBIR_NB_<NAME>``).
The test suite runs the notebooks alone from a wheel with the same file (tests/test_notebooks_run.py).
"""

import os
from pathlib import Path

from cbir_tutorial.data.loaders import CHECKOUT_SAMPLE as SAMPLE  # ../shared/data/fashion-sample
from cbir_tutorial.lessons.parameters import settings_file

os.environ.setdefault("CBIR_TUTORIAL_DATA", str(SAMPLE))  # absolute: kernels run from notebooks/
for name, value in settings_file(Path(__file__).with_name("test_run.env")).items():
    os.environ.setdefault(name, value)
