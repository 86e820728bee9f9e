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
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

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
    """Width in input pixels (first to last, gaps included) of what one output pixel sees after ``layers``, each
    ``(kernel, stride)``.

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


def _shape(tensor) -> str:
    """``56x56x256`` from a Keras tensor's shape (without the batch axis; ``?`` for an unknown size)."""
    return "x".join("?" if n is None else str(n) for n in tuple(tensor.shape)[1:])


def bottleneck_layers(model, block: str) -> dict:
    """What :func:`bottleneck_figure` draws of the bottleneck block ``block`` of ``model`` (layers named as in
    Keras' ResNet50, ``<block>_1_conv`` ...): ``input`` and ``output`` shapes (``"56x56x256"``), ``params`` (all
    the block's layers), and per convolution ``"1"``, ``"2"``, ``"3"`` and, for a projection shortcut, ``"0"``:
    ``{"kernel": (kh, kw), "filters", "stride", "output"}``."""
    names = {layer.name for layer in model.layers}
    found = {"input": _shape(model.get_layer(f"{block}_1_conv").input),
             "output": _shape(model.get_layer(f"{block}_out").output),
             "params": sum(layer.count_params() for layer in model.layers if layer.name.startswith(block + "_"))}
    for step in ("0", "1", "2", "3"):
        if f"{block}_{step}_conv" in names:
            conv = model.get_layer(f"{block}_{step}_conv")
            found[step] = {"kernel": tuple(conv.kernel_size), "filters": conv.filters, "stride": conv.strides[0],
                           "output": _shape(conv.output)}
    return found


def _conv_words(conv: dict) -> list[str]:
    """``["1x1 conv", "128 filters", "stride 2"]``: a convolution of :func:`bottleneck_layers` in words (no stride
    when it is 1)."""
    words = [f"{conv['kernel'][0]}x{conv['kernel'][1]} conv", f"{conv['filters']} filters"]
    return words + ([f"stride {conv['stride']}"] if conv["stride"] != 1 else [])


def bottleneck_figure(model=None, blocks: Sequence[str] = ("conv2_block2", "conv3_block1")) -> Figure:
    """ResNet50's bottleneck blocks as flow charts, one panel per name in ``blocks``: 1x1 conv (reduce) → 3x3
    conv → 1x1 conv (expand), BN and ReLU between them, the shortcut (identity, or a 1x1 conv + BN where the
    shape changes), the addition, then ReLU; beside each arrow the shape (height x width x channels) it carries.
    Every kernel, channel count, stride, shape and parameter count is read from the layers of ``model``
    (:func:`bottleneck_layers`); default: Keras' ResNet50 with random weights and a 224x224x3 input (nothing
    downloaded)."""
    if model is None:
        from ..models.runtime import keras_module

        model = keras_module().applications.ResNet50(weights=None, include_top=False, input_shape=(224, 224, 3))
    fig = Figure(figsize=(3.3 * len(blocks), 5.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(blocks)))
    for ax, block in zip(axes, blocks):
        found = bottleneck_layers(model, block)
        main, side = 3.1, 8.4  # x of the branch F and of the shortcut, in a 0..10 x 1..12 drawing

        def box(x, y, text, gid, width=5.6, height=1.2, colour="white", size=9.5):
            ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.1",
                                        facecolor=colour, edgecolor="0.3", lw=1))
            ax.text(x, y, text, ha="center", va="center", fontsize=size, gid=gid)

        def arrow(start, end, shape="", gid=""):
            ax.annotate("", end, start, arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.1, shrinkA=0, shrinkB=0))
            if shape:
                ax.text(start[0] + 0.25, (start[1] + end[1]) / 2, shape, ha="left", va="center", fontsize=8.5,
                        color="0.35", gid=gid)

        box(main + 1.6, 11.2, f"input x: {found['input']}", f"{block} input", width=8.6, colour="0.92")
        ys = [9.2, 7.2, 5.2]
        steps = [("1", "BN, ReLU", "#dbe9f6"), ("2", "BN, ReLU", "#fde3c8"), ("3", "BN", "#dbe9f6")]
        for (step, after, colour), y in zip(steps, ys):
            kind, filters, *stride = _conv_words(found[step])
            box(main, y, f"{kind}, {filters}\n" + ", ".join(stride + [after]), f"{block}_{step}_conv", colour=colour)
        arrow((main, 10.5), (main, ys[0] + 0.7))
        for step, y0, y1 in zip("12", ys, ys[1:]):
            arrow((main, y0 - 0.7), (main, y1 + 0.7), found[step]["output"], f"{block}_{step}_conv shape")
        add = 3.3
        arrow((main, ys[-1] - 0.7), (main, add + 0.38), found["3"]["output"], f"{block}_3_conv shape")
        ax.text(main, add, "+", ha="center", va="center", fontsize=12, gid=f"{block}_add",
                bbox=dict(boxstyle="circle,pad=0.15", facecolor="white", edgecolor="0.2", lw=1.2))
        arrow((main, add - 0.38), (main, 2.1 + 0.7))
        box(main + 1.6, 2.1, f"ReLU → output {found['output']}", f"{block}_out", width=8.6, colour="0.92")
        # the shortcut: from the input, down the right side, into the addition
        if "0" in found:
            ax.plot([side, side], [10.5, 8.0], color="0.2", lw=1.1)
            box(side, 6.5, "shortcut:\n" + ",\n".join(_conv_words(found["0"]) + ["BN"]), f"{block}_0_conv",
                width=3.0, height=2.8, colour="#e4f2df", size=9)
            ax.plot([side, side], [5.1, add], color="0.2", lw=1.1)
            ax.text(side - 0.2, 4.3, found["0"]["output"], ha="right", va="center", fontsize=8.5, color="0.35",
                    gid=f"{block}_0_conv shape")
        else:
            ax.plot([side, side], [10.5, add], color="0.2", lw=1.1)
            ax.text(side + 0.25, 7.2, "shortcut:\nidentity,\nx itself", ha="left", va="center", fontsize=9,
                    gid=f"{block} identity")
        ax.annotate("", (main + 0.42, add), (side, add), arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.1,
                                                                         shrinkA=0, shrinkB=0))
        kind = "projection" if "0" in found else "identity"
        ax.set_title(f"{block}: {kind} shortcut\n{found['params']:,} parameters", fontsize=10)
        ax.set_xlim(-0.1, 10.1)
        ax.set_ylim(1.2, 12.0)
        ax.axis("off")
    return fig


# --------------------------------------------------------------------------------------------------
# Xception: depthwise separable convolution


def conv_cost(height: int, width: int, c_in: int, c_out: int, kernel: int = 3, bias: bool = True) -> dict:
    """Parameters and multiply-adds of a regular ``kernel x kernel`` convolution, ``same`` padding,
    stride 1, on a ``height x width x c_in`` input giving ``c_out`` channels."""
    params = kernel * kernel * c_in * c_out + (c_out if bias else 0)
    return {"parameters": params, "multiply-adds": height * width * kernel * kernel * c_in * c_out}


def separable_conv_cost(height: int, width: int, c_in: int, c_out: int, kernel: int = 3,
                        bias: bool = True) -> dict:
    """Same as :func:`conv_cost` for a depthwise separable convolution: one ``kernel x kernel`` filter
    per input channel (depthwise), then a 1x1 convolution mixing channels (pointwise)."""
    depthwise = kernel * kernel * c_in
    pointwise = c_in * c_out
    return {"parameters": depthwise + pointwise + (c_out if bias else 0),
            "multiply-adds": height * width * (depthwise + pointwise)}


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


def separable_steps_cost(height: int = 147, width: int = 147, c_in: int = 64, c_out: int = 128,
                         kernel: int = 3) -> dict:
    """Multiply-adds of each step :func:`separable_figure` draws, from :func:`conv_cost` and
    :func:`separable_conv_cost`: ``regular`` (one ``kernel x kernel x c_in`` filter per output channel),
    ``depthwise`` (``c_in`` convolutions of one channel each), ``pointwise`` (a 1x1 convolution, ``c_in`` to
    ``c_out``) and ``separable`` (the two together; equal to their sum)."""
    return {"regular": conv_cost(height, width, c_in, c_out, kernel)["multiply-adds"],
            "depthwise": c_in * conv_cost(height, width, 1, 1, kernel)["multiply-adds"],
            "pointwise": conv_cost(height, width, c_in, c_out, 1)["multiply-adds"],
            "separable": separable_conv_cost(height, width, c_in, c_out, kernel)["multiply-adds"]}


def separable_figure(height: int = 147, width: int = 147, c_in: int = 64, c_out: int = 128,
                     kernel: int = 3) -> Figure:
    """A regular ``kernel x kernel`` convolution above a depthwise separable one, ``height x width x c_in`` →
    ``c_out`` channels (default: Xception's ``block2_sepconv1``), each step with its multiply-adds
    (:func:`separable_steps_cost`). Four input channels are drawn, in four colours: a regular filter spans all of
    them; a depthwise filter has one colour, one per channel, and keeps the channels apart; the pointwise 1x1
    filter mixes them. Grey: maps that mix every input channel."""
    cost = separable_steps_cost(height, width, c_in, c_out, kernel)
    ratio = cost["regular"] / cost["separable"]
    colours = ["C0", "C1", "C2", "C3"]
    fig = Figure(figsize=(6.4, 6.6), layout="constrained")
    ax = fig.subplots()

    def stack(x, y, fills, size, step=0.28, label="", gid=""):
        """Sheets back to front, the front one's lower-left corner at (x, y)."""
        for i, fill in enumerate(fills):
            back = len(fills) - 1 - i
            ax.add_patch(Rectangle((x + step * back, y + step * back), size, size, facecolor=fill, edgecolor="0.25",
                                   lw=0.8, alpha=0.9))
        if label:
            ax.text(x + (size + step * (len(fills) - 1)) / 2, y - 0.25, label, ha="center", va="top", fontsize=9.5,
                    gid=gid)

    def arrow(x0, x1, y):
        ax.annotate("", (x1, y), (x0, y), arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.2))

    def cost_text(x, y, formula, value, gid):
        ax.text(x, y, f"{formula}\n= {value:,}", ha="center", va="top", fontsize=9, gid=gid)

    greys = ["0.55", "0.65", "0.75", "0.85"]
    shape_in, shape_out = f"{height}x{width}x{c_in}", f"{height}x{width}x{c_out}"
    # regular: input → c_out filters of kernel x kernel x c_in → output
    top = 7.4
    ax.text(0, 11.3, f"regular {kernel}x{kernel} convolution", fontsize=10, weight="bold", va="top")
    stack(0.2, top, colours, 2.2, label=shape_in)
    arrow(3.4, 4.6, top + 1.3)
    stack(5.0, top + 0.7, colours, 0.8, step=0.22, label=f"{c_out} filters,\neach {kernel}x{kernel}x{c_in}")
    cost_text(5.9, top - 0.45, f"{height}·{width}·{kernel}·{kernel}·{c_in}·{c_out}", cost["regular"],
              "regular multiply-adds")
    arrow(7.0, 8.2, top + 1.3)
    stack(8.6, top, greys, 2.2, label=shape_out)
    # separable: input → depthwise (one filter per channel) → c_in maps → pointwise 1x1 → output
    low = 1.9
    ax.text(0, 5.5, "depthwise separable convolution", fontsize=10, weight="bold", va="top")
    stack(0.2, low, colours, 2.2, label=shape_in)
    arrow(3.4, 4.0, low + 1.3)
    for i, colour in enumerate(colours):  # one kernel x kernel x 1 filter per channel, side by side
        ax.add_patch(Rectangle((4.1 + 0.55 * (i % 2), low + 1.45 - 0.55 * (i // 2)), 0.45, 0.45, facecolor=colour,
                               edgecolor="0.25", lw=0.8))
    ax.text(4.65, low - 0.25, f"depthwise:\n{c_in} filters,\n{kernel}x{kernel}x1 each", ha="center", va="top",
            fontsize=9.5, gid="depthwise filters")
    arrow(5.3, 5.9, low + 1.3)
    stack(6.0, low, colours, 1.6, step=0.22, label=shape_in)
    arrow(8.4, 9.0, low + 1.3)
    stack(9.1, low + 1.0, colours, 0.3, step=0.13)  # a 1x1 x c_in column
    ax.text(9.5, low - 0.25, f"pointwise:\n{c_out} filters,\n1x1x{c_in}", ha="center", va="top", fontsize=9.5,
            gid="pointwise filters")
    arrow(9.75, 10.35, low + 1.3)
    stack(10.45, low + 0.2, greys, 1.4, step=0.2, label=shape_out)
    y_cost = low - 1.6
    cost_text(4.65, y_cost, f"{height}·{width}·{kernel}·{kernel}·{c_in}", cost["depthwise"],
              "depthwise multiply-adds")
    cost_text(9.5, y_cost, f"{height}·{width}·{c_in}·{c_out}", cost["pointwise"], "pointwise multiply-adds")
    ax.set_title(f"Multiply-adds: {cost['regular']:,} regular, {cost['separable']:,} separable\n"
                 f"({cost['depthwise']:,} + {cost['pointwise']:,}): {ratio:.1f} times fewer\n"
                 f"4 of the {c_in} input channels drawn, one colour each", fontsize=10, gid="total multiply-adds")
    ax.set_xlim(-0.1, 12.6)
    ax.set_ylim(y_cost - 0.9, 11.4)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig


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


def multiply_adds_by_layer(model) -> pd.Series:
    """Multiply-adds of one forward pass of one image through each layer of ``model`` that does them, counted
    from the layers' shapes: a Series of ints indexed by layer name, in the model's order (layers of a nested
    model under their own names).

    Convolutions (regular, depthwise, separable) and dense layers only: ``k*k*C_in/groups*C_out`` per
    output position for a convolution, ``n_in*n_out`` per position for a dense layer. Additions of
    biases, batch normalisation, activations and pooling are left out (a few percent at most).
    One multiply-add is two floating-point operations (FLOP).
    """
    counts: dict[str, int] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if hasattr(layer, "layers") and kind not in {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"}:
            counts.update(multiply_adds_by_layer(layer).to_dict())  # a nested model
            continue
        if kind not in {"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense"}:
            continue
        out = tuple(layer.output.shape[1:])
        positions = int(np.prod(out[:-1])) if len(out) > 1 else 1
        c_in = int(layer.input.shape[-1])
        if kind == "Dense":
            counts[layer.name] = positions * c_in * out[-1]
            continue
        kh, kw = layer.kernel_size
        if kind == "Conv2D":
            counts[layer.name] = positions * kh * kw * (c_in // layer.groups) * out[-1]
        elif kind == "DepthwiseConv2D":
            counts[layer.name] = positions * kh * kw * c_in * layer.depth_multiplier
        else:  # separable: depthwise then pointwise
            depth = c_in * layer.depth_multiplier
            counts[layer.name] = positions * (kh * kw * depth + depth * out[-1])
    return pd.Series(counts, dtype="int64", name="multiply-adds")


def multiply_adds(model) -> int:
    """Multiply-adds of one forward pass of one image through ``model``: the sum of
    :func:`multiply_adds_by_layer` (convolutions and dense layers; biases, batch normalisation, activations
    and pooling left out). One multiply-add is two floating-point operations (FLOP)."""
    return int(multiply_adds_by_layer(model).sum())


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
