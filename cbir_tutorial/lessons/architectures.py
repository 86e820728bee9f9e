"""What the three classic backbones are made of, in numbers and small Keras pieces.

A small CNN and its parameter arithmetic, VGG's receptive field of stacked 3x3 convolutions,
ResNet's residual (bottleneck) block, Xception's depthwise separable convolution cost, and a
one-row summary of each backbone (input size, preprocessing, feature layer and width).
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .convolution import output_size

# --------------------------------------------------------------------------------------------------
# A small CNN: conv -> pool -> ... -> dense, and its parameter count by hand


def small_cnn(input_shape: tuple[int, int, int] = (64, 64, 3), filters: Sequence[int] = (16, 32),
              dense: int = 64, n_classes: int = 10, kernel: int = 3, seed: int = 0):
    """A Keras classifier: for each of ``filters``, a ``kernel``-sized ``valid`` ReLU convolution then
    2x2 max pooling; then flatten, a ``dense``-unit ReLU layer and a ``n_classes`` softmax."""
    from ..models.runtime import keras_module

    keras = keras_module()

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(f, kernel, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense, activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def small_cnn_parameters(input_shape: tuple[int, int, int] = (64, 64, 3), filters: Sequence[int] = (16, 32),
                         dense: int = 64, n_classes: int = 10, kernel: int = 3) -> pd.DataFrame:
    """Layer by layer output shape and parameter count of :func:`small_cnn`, by arithmetic alone.

    Columns ``layer, output_shape, parameters, formula``. A convolution has ``k*k*C_in`` weights per
    filter plus one bias; a dense layer ``n_in`` weights per unit plus one bias; pooling and
    flattening have none.
    """
    h, w, c = input_shape
    rows = []
    for i, f in enumerate(filters, start=1):
        h, w = output_size(h, kernel), output_size(w, kernel)
        rows.append((f"conv{i}", (h, w, f), kernel * kernel * c * f + f,
                     f"{kernel}*{kernel}*{c}*{f} + {f}"))
        c = f
        h, w = output_size(h, 2, 2), output_size(w, 2, 2)
        rows.append((f"pool{i}", (h, w, c), 0, "no weights"))
    flat = h * w * c
    rows.append(("flatten", (flat,), 0, f"{h}*{w}*{c} values in a row"))
    rows.append(("dense", (dense,), flat * dense + dense, f"{flat}*{dense} + {dense}"))
    rows.append(("classes", (n_classes,), dense * n_classes + n_classes, f"{dense}*{n_classes} + {n_classes}"))
    return pd.DataFrame(rows, columns=["layer", "output_shape", "parameters", "formula"])


def layer_table(model, trainable_only: bool = False) -> pd.DataFrame:
    """One row per layer of a Keras model: ``layer, type, output_shape, parameters``."""
    rows = []
    for layer in model.layers:
        if trainable_only and not layer.trainable_weights:
            continue
        shape = getattr(layer, "output", None)
        shape = tuple(shape.shape[1:]) if shape is not None and hasattr(shape, "shape") else None
        rows.append((layer.name, type(layer).__name__, shape, layer.count_params()))
    return pd.DataFrame(rows, columns=["layer", "type", "output_shape", "parameters"])


# --------------------------------------------------------------------------------------------------
# VGG: stacks of 3x3 convolutions


def receptive_field(layers: Iterable[tuple[int, int]]) -> int:
    """Width in input pixels that one output pixel sees after ``layers``, each ``(kernel, stride)``.

    Two stacked 3x3 convolutions see 5x5, three see 7x7: VGG's argument for small kernels.
    """
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def vgg_stack_vs_large_kernel(channels: int = 256, depth: int = 3) -> pd.DataFrame:
    """``depth`` stacked 3x3 convolutions vs one convolution with the same receptive field, ``channels``
    in and out (weights only, no biases): rows ``design, receptive_field, weights, nonlinearities``."""
    field = receptive_field([(3, 1)] * depth)
    return pd.DataFrame([
        (f"{depth} x conv 3x3", field, depth * 3 * 3 * channels * channels, depth),
        (f"1 x conv {field}x{field}", field, field * field * channels * channels, 1),
    ], columns=["design", "receptive_field", "weights", "nonlinearities"])


# --------------------------------------------------------------------------------------------------
# ResNet: the residual (bottleneck) block


def residual_block(x, filters: int, stride: int = 1, name: str = "block", shortcut_conv: bool | None = None):
    """ResNet50's bottleneck block on tensor ``x``: returns ``relu(F(x) + shortcut(x))``.

    ``F``: 1x1 conv (``filters``, stride ``stride``) → 3x3 conv (``filters``) → 1x1 conv
    (``4 * filters``), each with batch normalisation, ReLU between them. ``shortcut``: ``x`` itself
    (the skip connection) when its shape already matches, else a strided 1x1 conv + BN
    (``shortcut_conv`` forces either). Layer names follow Keras' ResNet50 (``<name>_1_conv`` ...).
    """
    from ..models.runtime import keras_module

    layers = keras_module().layers

    out_channels = 4 * filters
    if shortcut_conv is None:
        shortcut_conv = stride != 1 or x.shape[-1] != out_channels
    if shortcut_conv:
        shortcut = layers.Conv2D(out_channels, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    y = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    y = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_1_bn")(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(filters, 3, padding="same", name=f"{name}_2_conv")(y)
    y = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_2_bn")(y)
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = layers.Conv2D(out_channels, 1, name=f"{name}_3_conv")(y)
    y = layers.BatchNormalization(epsilon=1.001e-5, name=f"{name}_3_bn")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def residual_block_model(input_shape: tuple[int, int, int] = (56, 56, 256), filters: int = 64,
                         stride: int = 1, name: str = "block", seed: int = 0):
    """:func:`residual_block` wrapped as a Keras model (random weights, reproducible with ``seed``)."""
    from ..models.runtime import keras_module

    keras = keras_module()

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(input_shape, name="x")
    return keras.Model(inputs, residual_block(inputs, filters, stride, name), name=f"{name}_model")


# --------------------------------------------------------------------------------------------------
# Xception: depthwise separable convolution


def conv_cost(height: int, width: int, c_in: int, c_out: int, kernel: int = 3, bias: bool = True) -> dict:
    """Parameters and multiplications of a regular ``kernel x kernel`` convolution, ``same`` padding,
    stride 1, on a ``height x width x c_in`` input giving ``c_out`` channels."""
    params = kernel * kernel * c_in * c_out + (c_out if bias else 0)
    return {"parameters": params, "multiplies": height * width * kernel * kernel * c_in * c_out}


def separable_conv_cost(height: int, width: int, c_in: int, c_out: int, kernel: int = 3,
                        bias: bool = True) -> dict:
    """Same as :func:`conv_cost` for a depthwise separable convolution: one ``kernel x kernel`` filter
    per input channel (depthwise), then a 1x1 convolution mixing channels (pointwise)."""
    depthwise = kernel * kernel * c_in
    pointwise = c_in * c_out
    return {"parameters": depthwise + pointwise + (c_out if bias else 0),
            "multiplies": height * width * (depthwise + pointwise)}


def conv_vs_separable(height: int = 147, width: int = 147, c_in: int = 64, c_out: int = 128,
                      kernel: int = 3, bias: bool = False) -> pd.DataFrame:
    """Regular vs depthwise separable convolution side by side, with the ratio.

    The defaults are Xception's ``block2_sepconv1`` (147x147x64 → 128 channels, no bias). The ratio is not
    rounded: format it where it is shown.
    """
    regular = conv_cost(height, width, c_in, c_out, kernel, bias)
    separable = separable_conv_cost(height, width, c_in, c_out, kernel, bias)
    table = pd.DataFrame({"regular conv": regular, "separable conv": separable})
    table["regular / separable"] = table["regular conv"] / table["separable conv"]
    return table


# --------------------------------------------------------------------------------------------------
# One row per backbone


def preprocessing_of(backbone: str) -> str:
    """What a backbone's ``preprocess_input`` does to RGB pixels, measured on black and white pixels."""
    from ..models.backbones import backbone_spec

    spec = backbone_spec(backbone)
    probe = np.array([[[[0, 0, 0], [255, 255, 255], [255, 0, 0]]]], dtype=np.float32)
    out = np.asarray(spec.preprocess(probe.copy()), dtype=np.float64)[0, 0]
    black, white, red = out
    if np.allclose(black, black[0]) and np.allclose(white, white[0]):
        return f"scale 0..255 to {black[0]:g}..{white[0]:g}"
    order = "BGR" if red[2] > red[0] else "RGB"
    return f"{order}, minus the ImageNet mean per channel (black -> {np.round(black, 1).tolist()})"


def backbone_summary(backbone: str, model=None, weights: str = "") -> dict:
    """Input size, preprocessing, feature layer and width (and, given the feature ``model``, its
    parameter and layer counts and measured output width) of ``backbone``."""
    from ..models.backbones import backbone_spec

    spec = backbone_spec(backbone)
    row = {"backbone": spec.title, "input": f"{spec.input_size}x{spec.input_size}x3",
           "preprocessing": preprocessing_of(backbone), "feature layer": spec.feature_layer,
           "feature width": spec.feature_dim}
    if model is not None:
        row["measured width"] = int(model.output.shape[-1])
        row["parameters"] = int(model.count_params())
        row["layers"] = len(model.layers)
    if weights:
        row["weights"] = weights
    return row


# --------------------------------------------------------------------------------------------------
# What a backbone costs


def multiply_adds(model) -> int:
    """Multiply-adds of one forward pass of one image through ``model``, counted from its layers' shapes.

    Convolutions (regular, depthwise, separable) and dense layers only: ``k*k*C_in/groups*C_out`` per
    output position for a convolution, ``n_in*n_out`` per position for a dense layer. Additions of
    biases, batch normalisation, activations and pooling are left out (a few percent at most).
    One multiply-add is two floating-point operations (FLOP).
    """
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if hasattr(layer, "layers") and kind not in {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"}:
            total += multiply_adds(layer)  # a nested model
            continue
        if kind not in {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"}:
            continue
        out = tuple(layer.output.shape[1:])
        positions = int(np.prod(out[:-1])) if len(out) > 1 else 1
        c_in = int(layer.input.shape[-1])
        if kind == "Dense":
            total += positions * c_in * out[-1]
            continue
        kh, kw = layer.kernel_size
        if kind == "Conv2D":
            total += positions * kh * kw * (c_in // layer.groups) * out[-1]
        elif kind == "DepthwiseConv2D":
            total += positions * kh * kw * c_in * layer.depth_multiplier
        else:  # separable: depthwise then pointwise
            depth = c_in * layer.depth_multiplier
            total += positions * (kh * kw * depth + depth * out[-1])
    return int(total)


def photos_per_second(extractor, n: int = 8, *, repeats: int = 3, seed: int = 0) -> float:
    """Photos per second that ``extractor`` (a :class:`~cbir_tutorial.models.features.FeatureExtractor`) pushes
    through its network on this machine: a batch of ``n`` random photos of its input size, timed ``repeats``
    times after an untimed warm-up call (the first call builds the graph); the fastest of the runs counts (as
    ``timeit`` advises: the slower ones measure what else the machine was doing). Decoding and resizing are
    left out: the model's rate."""
    size = extractor.input_size
    batch = np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")
    extractor.features_of_pixels(batch[:2])
    seconds = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        extractor.features_of_pixels(batch)
        seconds.append(time.perf_counter() - start)
    return n / min(seconds)


def weights_file_parameters(backbone: str) -> int:
    """Parameters stored in the ImageNet weights file the package downloads for ``backbone``.

    The file holds the whole network, classifier head included: one download serves notebook 3's
    ImageNet classifier and the feature extractor (see :func:`cbir_tutorial.models.backbones.imagenet_weights_path`).
    Built with random weights, nothing is downloaded. At 4 bytes per float32 parameter,
    ``4 * parameters`` is the file's size to within its little metadata.
    """
    from ..models.backbones import backbone_spec, keras_application

    spec = backbone_spec(backbone)
    model = keras_application(spec, None, include_top=True)
    return model.count_params()
