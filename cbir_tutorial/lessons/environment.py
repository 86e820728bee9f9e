"""Where the notebooks run (laptop, Kaggle, Colab), what that machine offers, and what it falls back to.

``environment_summary()`` answers the first questions of a session: which platform, GPU or not,
which TensorFlow and Keras, how to install this package there, whether the Farfetch listings are
attached and which ImageNet weight files are already on disk.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Mapping

PLATFORMS = ("local", "kaggle", "colab")


def running_on(environ: Mapping[str, str] | None = None, modules: Mapping | None = None) -> str:
    """``"kaggle"``, ``"colab"`` or ``"local"`` (anything else: a laptop, a server, CI).

    Kaggle kernels set ``KAGGLE_KERNEL_RUN_TYPE``; Colab sets ``COLAB_RELEASE_TAG`` and imports
    ``google.colab``. ``environ`` and ``modules`` replace ``os.environ`` and ``sys.modules`` (for tests).
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "KAGGLE_KERNEL_RUN_TYPE" in environ or "KAGGLE_URL_BASE" in environ:
        return "kaggle"
    if "COLAB_RELEASE_TAG" in environ or "COLAB_GPU" in environ or "google.colab" in modules:
        return "colab"
    return "local"


def github_repository() -> str | None:
    """This tutorial's GitHub location (``"owner/name"``) from the installed package's metadata
    (``Repository`` under ``[project.urls]`` in pyproject.toml); ``None`` while it is not set."""
    from importlib import metadata

    from .setup_cells import repository_from_url

    try:
        urls = metadata.metadata("cbir-tutorial").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        return None
    for entry in urls:
        label, _, url = entry.partition(",")
        if label.strip().lower() == "repository":
            return repository_from_url(url)
    return None


def install_command(where: str | None = None, repository: str | None | bool = False) -> str:
    """The shell command that installs this package on platform ``where`` (default: this one).

    Locally, from a clone: an editable install. On Kaggle and Colab: from GitHub when the
    ``repository`` location is known (default: :func:`github_repository`), else from a wheel built with
    ``python -m build`` and uploaded there. pip keeps the platform's packages that already satisfy the
    requirements (in a notebook cell, prefix the command with ``%``).
    """
    from .._version import __version__

    where = running_on() if where is None else where
    if where not in PLATFORMS:
        raise ValueError(f"where={where!r}: use one of {PLATFORMS}")
    if where == "local":
        return 'pip install -e ".[dev]"   # from the repository root'
    repository = github_repository() if repository is False else repository
    if repository:
        return f'pip install --quiet "git+https://github.com/{repository}"'
    wheel = f"cbir_tutorial-{__version__}-py3-none-any.whl"
    return f"pip install --quiet {wheel}   # upload the wheel first: python -m build makes it in dist/"


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow can use (empty on a CPU-only machine)."""
    from ..models.runtime import tensorflow_module

    tf = tensorflow_module()

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return names


def imagenet_weights_on_disk() -> dict[str, bool]:
    """For each Keras backbone, whether its ImageNet weights file is already in the Keras cache."""
    from ..models.backbones import BACKBONES, cached_imagenet_weights

    return {name: cached_imagenet_weights(spec, include_top=False) is not None for name, spec in BACKBONES.items()
            if spec.weights_file is not None}


def internet_reachable(host: str = "pypi.org", port: int = 443, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``host:port`` opens within ``timeout`` seconds (pip's index by default)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:  # no route, DNS failure, refused, timed out
        return False


def setup_advice(summary: Mapping) -> list[str]:
    """What to switch on, from an :func:`environment_summary`: one line per missing piece, empty when all is well.

    On Kaggle: Internet (off by default; pip and the Keras ImageNet weights need it, and the sample's download
    when the Farfetch listings are not attached), the GPU, the Farfetch listings. On Colab: the GPU. Locally:
    nothing to switch on. The GPU line names the notebooks that need one (5 to 8 and 10): the others run fine
    without one, so it never asks to run them again.
    """
    where, advice = summary["running on"], []
    if where == "kaggle" and not summary["internet"]:
        sample = ("" if not str(summary["farfetch listings"]).startswith("not found")
                  else ", and so does the 770-photo sample's first download (the Farfetch listings are not attached)")
        advice.append("Kaggle: Internet is off. Switch it on (notebook Settings → Internet, phone-verified "
                      f"account): pip and the Keras ImageNet weights need it{sample}. Then run the notebook again.")
    if where in ("kaggle", "colab") and not summary["gpu"]:
        menu = "Settings → Accelerator → GPU" if where == "kaggle" else "Runtime → Change runtime type → T4 GPU"
        advice.append(f"{where.capitalize()}: no GPU. Notebooks 1 to 4 and 9 need none; notebooks 5 to 8 and 10 "
                      f"benefit from one: switch one on there ({menu}).")
    if where == "kaggle" and str(summary["farfetch listings"]).startswith("not found"):
        advice.append("Kaggle: the Farfetch listings are not attached (Add Input → search \"farfetch listings\"); "
                      "the notebooks use the 770-photo sample meanwhile.")
    return advice


def keras_weights() -> str:
    """``imagenet`` when the Keras backbones' ImageNet weights can be had (on disk, or a download), else ``random``:
    what the site build and the notebook-time benchmark run the notebooks with."""
    return "imagenet" if all(imagenet_weights_on_disk().values()) or internet_reachable("storage.googleapis.com") \
        else "random"


def environment_summary() -> dict:
    """Platform, Python/TensorFlow/Keras versions, GPUs, CPU count, install command, data and weights found."""
    from .._version import __version__
    from ..data.loaders import find_farfetch_root, kaggle_input_dir, sample_source
    from ..models.runtime import keras_module, tensorflow_module
    from ..paths import cache_dir

    keras, tf = keras_module(), tensorflow_module()

    gpus = gpu_names()
    farfetch = find_farfetch_root()
    on_disk = imagenet_weights_on_disk()
    return {
        "running on": running_on(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "cbir_tutorial": __version__,
        "gpu": bool(gpus),
        "gpus": ", ".join(gpus) if gpus else "none (CPU only: keep the image counts small)",
        "cpu cores": os.cpu_count(),
        "install": install_command(),
        "internet": internet_reachable(),
        "farfetch listings": str(farfetch) if farfetch else f"not found under {kaggle_input_dir()}",
        "sample catalogue": sample_source(),
        "imagenet weights on disk": ", ".join(f"{n}: {'yes' if ok else 'no'}" for n, ok in on_disk.items()),
        "cache": str(cache_dir()),
    }
