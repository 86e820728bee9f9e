"""TensorFlow's C++ start-up lines never reach a learner; real errors still do."""

import json
import os
import subprocess
import sys
from pathlib import Path

from cbir_tutorial.models.runtime import quiet_lines

ROOT = Path(__file__).resolve().parents[2]
NOISE_MARKERS = ("All log messages before absl::InitializeLog", "oneDNN", "cuInit", "cuda drivers")


def test_quiet_lines_drops_start_up_lines_and_keeps_the_rest():
    text = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.\n"
            "E0000 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
            "Traceback (most recent call last):\n"
            "ValueError: real problem\n")
    assert quiet_lines(text) == "Traceback (most recent call last):\nValueError: real problem\n"


def _code_up_to_first_keras_cell(notebook: str) -> str:
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    code = []
    for cell in cells:
        if cell["cell_type"] == "code":
            code.append("".join(cell["source"]))
            if "keras" in code[-1]:
                break
    # IPython magics (%matplotlib, %pip) are not Python: each becomes a `pass` at its indentation
    lines = [line for cell in code for line in cell.splitlines()]
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith("%") else line
                     for line in lines)


def test_a_notebooks_first_tensorflow_use_prints_no_start_up_lines(sample_dir, tmp_path):
    # Notebook 2's cells up to its first Keras layer (its first op is where TF looks for a GPU),
    # then a real error that must still reach stderr.
    script = _code_up_to_first_keras_cell("02_cnns.ipynb") + "\nimport sys\nprint('cells done', file=sys.stderr)\n"
    script += "raise ValueError('a real error')\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CBIR_TUTORIAL_DATA": str(sample_dir), "MPLBACKEND": "Agg"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)
    assert "cells done" in done.stderr, done.stderr[-2000:]
    assert "Keras:" in done.stdout  # the cell that builds a Conv2D ran
    for marker in NOISE_MARKERS:
        assert marker not in done.stderr + done.stdout, f"{marker!r} printed:\n{done.stderr[-2000:]}"
    assert "ValueError: a real error" in done.stderr
