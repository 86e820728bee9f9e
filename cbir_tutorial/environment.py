"""Where the notebooks run (laptop, Kaggle, Colab), what that machine offers, and what it falls back to.

``environment_summary()`` answers the first questions of a session: which platform, GPU or not,
which TensorFlow and Keras, how to install this package there, whether the Farfetch listings are
attached and which ImageNet weight files are already on disk. ``catalogue_named`` and
``available_extractor`` turn a notebook's parameters into a catalogue and a feature extractor,
falling back visibly when ImageNet weights cannot be downloaded.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Mapping

#: GitHub path of this repository (``owner/name``): replace the placeholder in your fork.
REPOSITORY = "REPO_URL"
PLATFORMS = ("local", "kaggle", "colab")
#: Parameter words for the weights of a backbone, as written in a notebook or ``CBIR_NB_WEIGHTS``.
RANDOM_WORDS = ("random", "none", "untrained", "")


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


def install_command(where: str | None = None, repository: str = REPOSITORY) -> str:
    """The shell command that installs this package on platform ``where`` (default: this one).

    Locally, from a clone: an editable install. On Kaggle and Colab: straight from GitHub
    (in a notebook cell, prefix it with ``%``).
    """
    where = running_on() if where is None else where
    if where not in PLATFORMS:
        raise ValueError(f"where={where!r}: use one of {PLATFORMS}")
    if where == "local":
        return 'pip install -e ".[dev]"   # from the repository root'
    return f'pip install --quiet "git+https://github.com/{repository}"'


def gpu_names() -> list[str]:
    """Names of the GPUs TensorFlow can use (empty on a CPU-only machine)."""
    import tensorflow as tf

    names = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        names.append(details.get("device_name", device.name))
    return names


def imagenet_weights_on_disk() -> dict[str, bool]:
    """For each Keras backbone, whether its ImageNet weights file is already in the Keras cache."""
    from .backbones import BACKBONES, keras_weights_path

    return {name: keras_weights_path(spec).is_file() for name, spec in BACKBONES.items()
            if spec.weights_file is not None}


def environment_summary() -> dict:
    """Platform, Python/TensorFlow/Keras versions, GPUs, CPU count, install command, data and weights found."""
    import keras
    import tensorflow as tf

    from . import __version__
    from .data import SAMPLE_ENV, find_farfetch_root
    from .paths import cache_dir

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
        "farfetch listings": str(farfetch) if farfetch else "not found under /kaggle/input",
        "sample catalogue": os.environ.get(SAMPLE_ENV) or "downloaded on first use",
        "imagenet weights on disk": ", ".join(f"{n}: {'yes' if ok else 'no'}" for n, ok in on_disk.items()),
        "cache": str(cache_dir()),
    }


def catalogue_named(name: str = "auto", images: str = "cutout"):
    """The catalogue a notebook parameter names.

    ``"auto"``: the Farfetch listings when attached under ``/kaggle/input``, else the sample;
    ``"sample"``; ``"farfetch"`` (``images``: ``"cutout"`` or ``"model"`` photos); or a folder path
    (Farfetch layout, ``styles.csv`` + ``images/`` layout, or any folder of images).
    """
    from .data import FARFETCH_CSV, find_farfetch_root, load_farfetch, load_fashion_products, load_folder, load_sample

    key = str(name).strip()
    if key.lower() == "auto":
        key = "farfetch" if find_farfetch_root() is not None else "sample"
    if key.lower() == "sample":
        return load_sample()
    if key.lower() == "farfetch":
        return load_farfetch(images=images)
    path = Path(key).expanduser()
    if (path / FARFETCH_CSV).is_file():
        return load_farfetch(path, images=images)
    if (path / "styles.csv").is_file():
        return load_fashion_products(path)
    return load_folder(path)


def weights_named(word) -> str | None:
    """A weights parameter as ``FeatureExtractor`` takes it: ``"imagenet"``, ``None`` (random) or a path."""
    if word is None:
        return None
    text = str(word).strip()
    if text.lower() in RANDOM_WORDS:
        return None
    return "imagenet" if text.lower() == "imagenet" else text


def available_extractor(name: str, weights="imagenet", fallback: str | None = "random", **options):
    """A :class:`FeatureExtractor` for backbone ``name``, falling back when ImageNet weights are unavailable.

    ``weights``: ``"imagenet"``, ``"random"``/``None`` or a file. When the ImageNet weights cannot be
    downloaded, one line says so and ``fallback`` is used: ``"random"`` (the same architecture,
    untrained: labelled RANDOM everywhere), a backbone name such as ``"efficientnet_lite0"`` (its
    ImageNet weights ship with the package), or ``None`` to raise :class:`WeightsUnavailableError`.
    """
    from .backbones import WeightsUnavailableError, backbone
    from .features import FeatureExtractor

    weights = weights_named(weights)
    try:
        return FeatureExtractor(name, weights, **options)
    except WeightsUnavailableError:
        if fallback is None:
            raise
        title = backbone(name).title
        if fallback == "random":
            print(f"{title}: ImageNet weights unavailable (offline?) -> using RANDOM, untrained weights instead.")
            return FeatureExtractor(name, None, **options)
        print(f"{title}: ImageNet weights unavailable (offline?) -> using {backbone(fallback).title} "
              "with its ImageNet weights instead.")
        return FeatureExtractor(fallback, "imagenet", **options)


def extractor_label(extractor) -> str:
    """Short name of an extractor and its weights for tables and charts, e.g. ``"resnet50 (random)"``."""
    weights = extractor.weights
    kind = "random" if weights is None else ("imagenet" if str(weights) == "imagenet" else Path(weights).name)
    return f"{extractor.name} ({kind})"
