"""Weights words: ``"imagenet"``, random (``"random"``, ``"none"``, ``"untrained"``, empty) or a weights file."""

from __future__ import annotations

from pathlib import Path
from typing import Union

Weights = Union[str, None]

IMAGENET = "imagenet"
#: Words meaning "random, untrained weights".
RANDOM_WORDS = ("random", "none", "untrained", "")


def weights_from_word(word, argument: str = "weights") -> Weights:
    """``"imagenet"``, ``None`` (random, untrained) or the path of an existing weights file.

    ``word``: ``"imagenet"``, ``"random"`` / ``"none"`` / ``"untrained"`` / ``""`` / ``None`` (any
    case), or a file path. Raises FileNotFoundError naming ``argument`` for a path that is no file.
    """
    if word is None:
        return None
    text = str(word).strip()
    if text.lower() in RANDOM_WORDS:
        return None
    if text.lower() == IMAGENET:
        return IMAGENET
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{argument}={text!r}: no such weights file. Use 'imagenet', 'random' (also 'none', "
            "'untrained') or the path of a Keras weights file (.h5 / .weights.h5).")
    return str(path)


def weights_word(weights: Weights) -> str:
    """The word for ``weights``: ``"imagenet"``, ``"random"`` or the file path."""
    return "random" if weights is None else str(weights)


def weights_label(weights: Weights) -> str:
    """A short, loud description for summaries: ``"ImageNet weights"``, ``"RANDOM weights (untrained)"``."""
    if weights is None:
        return "RANDOM weights (untrained)"
    if str(weights) == IMAGENET:
        return "ImageNet weights"
    return f"weights from {weights}"
