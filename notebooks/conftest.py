"""Test-run parameters for the notebooks: small and offline (a learner's Jupyter session ignores this file)."""

import os
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fashion-sample"

os.environ.setdefault("CBIR_TUTORIAL_DATA", str(SAMPLE))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")
