"""Convolution and pooling by hand: filters on a photo, output-size arithmetic, feature maps.

The operations follow Keras' conventions, so a hand computation here equals ``keras.layers.Conv2D``
and ``MaxPooling2D`` with the same weights: "convolution" is cross-correlation (the kernel is not
flipped), ``padding="same"`` pads ``ceil``-style with the extra row/column at the bottom/right.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

#: Hand-made 3x3 filters. Edge filters respond to a change of brightness across the named direction.
KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float32),
    "blur": np.full((3, 3), 1 / 9, dtype=np.float32),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32),
    "vertical edges": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32),  # Sobel x
    "horizontal edges": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=np.float32),  # Sobel y
    "outline": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], dtype=np.float32),  # minus the 8-neighbour Laplacian
}

PADDINGS = ("valid", "same")


def grey(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(H, W)`` float32 luminance in 0..1 (ITU-R 601 weights)."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float32) / 255.0
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (image.astype(np.float32) @ weights) / 255.0


def output_size(n: int, kernel: int, stride: int = 1, padding: str | int = "valid") -> int:
    """Output length along one axis of a convolution or pooling over ``n`` input pixels.

    ``padding``: ``"valid"`` (no padding): ``floor((n - kernel) / stride) + 1``;
    ``"same"`` (Keras): ``ceil(n / stride)``; an int ``p`` (zeros on both sides):
    ``floor((n + 2p - kernel) / stride) + 1``. The words in any case, as Keras takes them (``"SAME"``).
    """
    padding = _padding_word(padding)
    if n < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"n={n}, kernel={kernel}, stride={stride}: all must be at least 1")
    if padding == "same":
        return math.ceil(n / stride)
    if isinstance(padding, str) and padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}: use 'valid', 'same' or a number of pixels")
    pad = 0 if padding == "valid" else int(padding)
    if n + 2 * pad < kernel:
        raise ValueError(f"a {kernel}-pixel kernel does not fit in {n} pixels with padding {pad}")
    return (n + 2 * pad - kernel) // stride + 1


def same_padding(n: int, kernel: int, stride: int = 1) -> tuple[int, int]:
    """Zeros added ``(before, after)`` along one axis by Keras' ``padding="same"`` (the odd one after)."""
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def output_size_table(n: int, kernels: Iterable[int] = (3, 5), strides: Iterable[int] = (1, 2),
                      paddings: Iterable[str | int] = ("valid", "same")) -> pd.DataFrame:
    """Output sizes of every (kernel, stride, padding) combination on an ``n``-pixel input, one row each."""
    rows = [{"input": n, "kernel": k, "stride": s, "padding": p, "output": output_size(n, k, s, p)}
            for k in kernels for s in strides for p in paddings]
    return pd.DataFrame(rows)


def _padding_word(padding: str | int) -> str | int:
    """``"SAME"`` -> ``"same"``: Keras lower-cases the padding word, and so do the functions here."""
    return padding.strip().lower() if isinstance(padding, str) else padding


def _padded(image: np.ndarray, kernel_shape: tuple[int, int], stride: int, padding: str | int,
            fill: float) -> np.ndarray:
    padding = _padding_word(padding)
    if padding == "valid":
        return image
    if padding == "same":
        pads = [same_padding(image.shape[0], kernel_shape[0], stride),
                same_padding(image.shape[1], kernel_shape[1], stride)]
    elif isinstance(padding, (int, np.integer)):
        pads = [(int(padding), int(padding))] * 2
    else:
        raise ValueError(f"padding={padding!r}: use 'valid', 'same' or a number of pixels")
    pads += [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pads, constant_values=fill)


def _windows(image: np.ndarray, shape: tuple[int, int], stride: int) -> np.ndarray:
    """``(H', W', kh, kw, ...)`` view of every ``shape`` window, ``stride`` pixels apart."""
    if image.shape[0] < shape[0] or image.shape[1] < shape[1]:
        raise ValueError(f"a {shape} window does not fit in an image of {image.shape[:2]}")
    view = np.lib.stride_tricks.sliding_window_view(image, shape, axis=(0, 1))
    view = view[::stride, ::stride]
    return np.moveaxis(view, (-2, -1), (2, 3))


def convolve(image: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: str | int = "valid") -> np.ndarray:
    """One filter slid over an image (cross-correlation, as in Keras' ``Conv2D``), no bias.

    ``image``: ``(H, W)``, or ``(H, W, C)`` with ``kernel`` ``(kh, kw, C)`` summed over channels
    (one output map) or ``(kh, kw)`` applied to each channel separately (``C`` output maps).
    Returns ``(H', W')`` or ``(H', W', C)`` float32 with ``H' = output_size(H, kh, stride, padding)``.
    """
    image = np.asarray(image, dtype=np.float32)
    kernel = np.asarray(kernel, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if kernel.ndim == 3 and (image.ndim != 3 or kernel.shape[2] != image.shape[2]):
        raise ValueError(f"kernel {kernel.shape} needs an image with {kernel.shape[2]} channels, got {image.shape}")
    if kernel.ndim not in (2, 3):
        raise ValueError(f"kernel must be (kh, kw) or (kh, kw, C), got shape {kernel.shape}")
    padded = _padded(image, kernel.shape[:2], stride, padding, 0.0)
    windows = _windows(padded, kernel.shape[:2], stride)  # (H', W', kh, kw[, C])
    if kernel.ndim == 3:
        return np.einsum("ijklc,klc->ij", windows, kernel)
    if image.ndim == 3:
        return np.einsum("ijklc,kl->ijc", windows, kernel)
    return np.einsum("ijkl,kl->ij", windows, kernel)


def pool(image: np.ndarray, size: int = 2, stride: int | None = None, mode: str = "max",
         padding: str = "valid") -> np.ndarray:
    """Max or average pooling of ``(H, W)`` or ``(H, W, C)`` over ``size x size`` windows.

    ``stride`` defaults to ``size`` (non-overlapping windows, as in Keras). With ``padding="same"``
    the padded pixels never win a max and are left out of an average, as in Keras.
    """
    stride = size if stride is None else stride
    if mode not in ("max", "average"):
        raise ValueError(f"mode={mode!r}: use 'max' or 'average'")
    image = np.asarray(image, dtype=np.float32)
    if padding == "valid":
        windows = _windows(image, (size, size), stride)
        return windows.max(axis=(2, 3)) if mode == "max" else windows.mean(axis=(2, 3))
    if padding != "same":
        raise ValueError(f"padding={padding!r}: use 'valid' or 'same'")
    padded = _padded(image, (size, size), stride, "same", np.nan)
    windows = _windows(padded, (size, size), stride)
    return np.nanmax(windows, axis=(2, 3)) if mode == "max" else np.nanmean(windows, axis=(2, 3))


def shift_change(image: np.ndarray, kernel: np.ndarray, windows: Iterable[int] = (1, 2, 4), *, shift: int = 1,
                 padding: str | int = "valid") -> dict[int, float]:
    """How much a response map changes when ``image`` moves ``shift`` pixels to the right, after max pooling.

    ``image``: ``(H, W)``. For each ``window`` (1: no pooling), with ``a`` the map ``|convolve(image, kernel)|``
    max-pooled over ``window x window`` windows and ``b`` the same for the moved image:
    ``mean |a - b| / mean a``, a float (0: no change). The image moves with ``np.roll``, which wraps its last
    columns round to the first (a light background meets a light background). ``padding`` defaults to
    ``"valid"``: with ``"same"``, the zeros around a light background make bright lines down the map's left and
    right borders that do not move with the image and inflate ``mean a``.
    """
    image = np.asarray(image, dtype=np.float32)
    edges = np.abs(convolve(image, kernel, padding=padding))
    moved = np.abs(convolve(np.roll(image, shift, axis=1), kernel, padding=padding))
    change = {}
    for window in windows:
        a, b = (edges, moved) if window == 1 else (pool(edges, window), pool(moved, window))
        change[window] = float(np.abs(a - b).mean() / a.mean())
    return change


def feature_maps(model, layer: str, images: np.ndarray) -> np.ndarray:
    """Output of ``model``'s layer named ``layer`` for ``images``: ``(B, H', W', C)`` float32.

    ``images`` is what ``model`` takes as input (already preprocessed), ``(B, H, W, 3)``.
    """
    from ..models.runtime import keras_module

    keras = keras_module()

    probe = keras.Model(model.input, model.get_layer(layer).output)
    return np.asarray(probe(np.asarray(images, dtype=np.float32), training=False), dtype=np.float32)


def filtered_figure(image: np.ndarray, kernels: Mapping[str, np.ndarray] | None = None, *,
                    columns: int = 4) -> Figure:
    """The photo, its grey version, then the grey version convolved with each kernel (``valid`` padding).

    Zero-sum kernels (edge detectors) are shown as absolute responses scaled to their range (bright =
    strong edge whichever its sign); the others on the photo's 0..1 grey scale.
    """
    kernels = KERNELS if kernels is None else kernels
    g = grey(image)
    panels = [("photo", np.asarray(image), {}), ("grey", g, {"cmap": "gray", "vmin": 0, "vmax": 1})]
    for name, kernel in kernels.items():
        response = convolve(g, kernel)
        if np.isclose(np.asarray(kernel).sum(), 0):  # a zero-sum kernel measures change: show its magnitude
            panels.append((name, np.abs(response), {"cmap": "gray"}))
        else:
            panels.append((name, response, {"cmap": "gray", "vmin": 0, "vmax": 1}))
    rows = math.ceil(len(panels) / columns)
    fig = Figure(figsize=(2.6 * columns, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (title, picture, style) in zip(axes, panels):
        ax.imshow(picture, **style)
        ax.set_title(title, fontsize=10)
    return fig


def stride_padding_figure(n: int = 7, kernel: int = 3, stride: int = 2, padding: int = 1, *,
                          windows: int = 3) -> Figure:
    """Where a kernel goes: an ``n`` x ``n`` input inside ``padding`` rings of zeros (grey, "0"), the windows of
    the first ``windows`` outputs of the first row (coloured frames, ``stride`` pixels apart), and the output grid,
    :func:`output_size` cells a side, with those outputs in the same colours."""
    out = output_size(n, kernel, stride, padding)
    size = n + 2 * padding
    colours = ["C0", "C1", "C2", "C3", "C4"][:max(0, min(windows, out))]
    fig = Figure(figsize=(1.0 + 0.42 * (size + out), 0.42 * size + 1.1), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[size, max(out, 1)])
    for i in range(size):
        for j in range(size):
            zero = not (padding <= i < padding + n and padding <= j < padding + n)
            left.add_patch(Rectangle((j, size - 1 - i), 1, 1, facecolor="0.85" if zero else "white", edgecolor="0.6",
                                     lw=0.6, label="zero" if zero else "pixel"))
            if zero:
                left.text(j + 0.5, size - 0.5 - i, "0", ha="center", va="center", fontsize=7, color="0.45")
    for c, colour in enumerate(colours):  # output (0, c) reads rows 0..k-1, columns c*s..c*s+k-1 of the padded input
        inset = 0.06 * c
        left.add_patch(Rectangle((c * stride + inset, size - kernel + inset), kernel - 2 * inset, kernel - 2 * inset,
                                 fill=False, edgecolor=colour, lw=2.2, label=f"window {c}"))
    for i in range(out):
        for j in range(out):
            colour = colours[j] if i == 0 and j < len(colours) else "white"
            right.add_patch(Rectangle((j, out - 1 - i), 1, 1, facecolor=colour, alpha=0.6 if colour != "white" else 1,
                                      edgecolor="0.6", lw=0.6, label="output"))
    for ax, width, title in ((left, size, f"input {n}x{n} + padding {padding}"), (right, out, f"output {out}x{out}")):
        ax.set_xlim(-0.1, width + 0.1)
        ax.set_ylim(-0.1, size + 0.1 if ax is left else width + 0.1)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{kernel}x{kernel} kernel, stride {stride}: ({n} + 2*{padding} - {kernel}) // {stride} + 1 = {out}",
                 fontsize=10)
    return fig


def feature_maps_figure(maps: np.ndarray, n: int = 16, *, columns: int = 8, title: str | None = None) -> Figure:
    """The first ``n`` channels of one ``(H, W, C)`` feature map stack, each scaled to its own range."""
    maps = np.asarray(maps)
    if maps.ndim == 4:
        maps = maps[0]
    if maps.ndim != 3:
        raise ValueError(f"expected (H, W, C) feature maps, got shape {maps.shape}")
    n = min(n, maps.shape[2])
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(1.6 * columns, 1.9 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes:
        ax.axis("off")
    for c in range(n):
        axes[c].imshow(maps[:, :, c], cmap="viridis")
        axes[c].set_title(f"channel {c}", fontsize=8)
    fig.suptitle(title or f"{n} of {maps.shape[2]} feature maps, {maps.shape[0]}x{maps.shape[1]} each")
    return fig
