"""TensorFlow and Keras, imported on first use of a model, without their C++ start-up chatter.

``import cbir_tutorial`` never loads TensorFlow (3 s, 600 MB): the modules that build models call
:func:`tensorflow_module` or :func:`keras_module` inside their functions. The first call imports
TensorFlow with file descriptor 2 (stderr) captured, drops the known start-up lines (absl's
"All log messages before absl::InitializeLog()", oneDNN's notice, a CPU machine's failed ``cuInit``,
cuDNN/cuBLAS factory registrations) and writes every other captured line back to stderr, so real
errors still show. TensorFlow only calls ``cuInit`` (and logs its failure on a machine without a GPU)
when it first looks for devices, so that look-up happens inside the capture too.

A notebook's first TensorFlow import must go through here (``keras = keras_module()``, or any package
call that builds a model): a plain ``import keras`` before that prints the start-up lines.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

#: Start-up lines TensorFlow's C++ runtime prints on every import; nothing a learner can act on.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\)|oneDNN custom operations are on|"
    r"TF_ENABLE_ONEDNN_OPTS|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
    r"computation placer already registered|This TensorFlow binary is optimized to use available CPU|"
    r"To enable the following instructions|rebuild TensorFlow with the appropriate compiler flags|"
    r"Could not find cuda drivers|cuda_executor\.cc|cuda_diagnostics|kernel driver does not appear to be running|"
    r"retrieving CUDA diagnostic information|Attempting to register factory|"
    r"WARNING: All log messages before absl"
)


def quiet_lines(text: str) -> str:
    """``text`` without the lines :data:`NOISE` matches."""
    return "".join(line for line in text.splitlines(keepends=True) if not NOISE.search(line))


def _import_quietly(name: str):
    if name in sys.modules:
        return sys.modules[name]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import importlib

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real file descriptor 2 (some embedded shells)
        return importlib.import_module(name)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            module = importlib.import_module(name)
            if name == "tensorflow":
                module.config.list_physical_devices()  # CUDA's first (failed) initialisation logs here
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = quiet_lines(captured.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
    return module


def tensorflow_module():
    """``tensorflow``, imported now if needed (quietly, see the module docstring)."""
    return _import_quietly("tensorflow")


def keras_module():
    """``keras`` (Keras 3), with TensorFlow imported quietly first."""
    tensorflow_module()
    return _import_quietly("keras")
