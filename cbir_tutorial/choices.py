"""Every word a user writes, turned into an object in one place.

The CLI's flags, the notebooks' parameters, the explorer's options and the benchmarks all go through
these functions; no other module parses these words:

- a catalogue: ``"auto"`` (Farfetch when attached on Kaggle, else the sample), ``"sample"``,
  ``"farfetch"`` or a folder, with a ``format`` (``"auto"`` detects the layout);
- a backbone: ``vgg16``, ``resnet50``, ``xception``, ``efficientnet_lite0`` or the original
  tutorial's ``VGG``, ``ResNet``, ``Xception``;
- weights: ``imagenet``, ``random`` (also ``none``, ``untrained`` or empty) or a weights file;
- a resize policy: ``squash`` or ``pad``;
- the offline fallback, when ImageNet weights cannot be downloaded.

Nothing here imports TensorFlow until a model is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Union

Weights = Union[str, None]

IMAGENET = "imagenet"
#: Words meaning "random, untrained weights".
RANDOM_WORDS = ("random", "none", "untrained", "")
#: Catalogue words besides a folder path.
CATALOGUE_WORDS = ("auto", "sample", "farfetch")
#: Catalogue layouts (``format``); ``"auto"`` detects the layout of a folder.
FORMATS = ("auto", "farfetch", "fashion-products", "folder", "sample")
RESIZE_POLICIES = ("squash", "pad")
#: Mixed-precision words: ``auto`` (on with a GPU), ``on``, ``off``, or the 16-bit type to compute in.
PRECISION_WORDS = ("auto", "on", "off", "float16", "bfloat16")
#: Backbone whose ImageNet weights install offline (pip), the fallback when Keras cannot download.
OFFLINE_BACKBONE = "efficientnet_lite0"


# --------------------------------------------------------------------------------------------------
# Weights


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


# --------------------------------------------------------------------------------------------------
# Backbone and weights together


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
        from .models.backbones import backbone_spec

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
        from .models.backbones import backbone_spec

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


def resize_from_word(word: str, argument: str = "resize") -> str:
    """``"squash"`` or ``"pad"``; ValueError naming ``argument`` otherwise."""
    text = str(word).strip().lower()
    if text not in RESIZE_POLICIES:
        raise ValueError(f"{argument}={word!r}: use one of {', '.join(RESIZE_POLICIES)}")
    return text


def mixed_precision_from_word(word) -> str:
    """One of :data:`PRECISION_WORDS` from ``None``/``"auto"``/``""``, ``True``/``"on"``/``"yes"``/``"1"``,
    ``False``/``"off"``/``"no"``/``"none"``/``"0"``, ``"float16"`` or ``"bfloat16"``; ValueError otherwise."""
    text = "auto" if word is None else str(word).strip().lower()
    aliases = {"": "auto", "true": "on", "yes": "on", "1": "on", "false": "off", "no": "off", "none": "off", "0": "off"}
    text = aliases.get(text, text)
    if text not in PRECISION_WORDS:
        raise ValueError(f"mixed_precision={word!r}: use one of {', '.join(PRECISION_WORDS)} (or True / False)")
    return text


# --------------------------------------------------------------------------------------------------
# The offline fallback


def fallback_message(choice: BackboneChoice, fallback: BackboneChoice) -> str:
    """The one line said when ``choice``'s ImageNet weights cannot be had and ``fallback`` is used."""
    instead = ("RANDOM, untrained weights" if fallback.backbone == choice.backbone
               else f"{fallback.label} (shipped with pip)")
    return f"{choice.label}: unavailable (offline?) -> using {instead} instead."


def available_extractor(backbone: str = OFFLINE_BACKBONE, weights=IMAGENET, fallback: str | None = "random",
                        **options):
    """A :class:`~cbir_tutorial.models.features.FeatureExtractor`, falling back when ImageNet weights are
    unavailable.

    ``fallback``: ``"random"`` (the same architecture, untrained: labelled RANDOM everywhere), a backbone
    name such as ``"efficientnet_lite0"`` (its ImageNet weights install with pip), or ``None`` to raise
    :class:`~cbir_tutorial.models.backbones.WeightsUnavailableError`. One line says what was used instead.
    """
    from .models.backbones import WeightsUnavailableError
    from .models.features import FeatureExtractor

    choice = BackboneChoice.of(backbone, weights)
    try:
        return FeatureExtractor(choice.backbone, choice.weights, **options)
    except WeightsUnavailableError:
        if fallback is None:
            raise
        other = (BackboneChoice(choice.backbone, None) if str(fallback).lower() in RANDOM_WORDS
                 else BackboneChoice.of(fallback, IMAGENET))
        print(fallback_message(choice, other))
        return FeatureExtractor(other.backbone, other.weights, **options)


# --------------------------------------------------------------------------------------------------
# Catalogues


def load_catalogue(source: str | os.PathLike | None = "auto", format: str = "auto", *, photos: str = "cutout",
                   kaggle_input: str | os.PathLike | None = None):
    """The :class:`~cbir_tutorial.data.catalogue.Catalogue` that ``source`` names.

    ``source``: ``"auto"`` (the Farfetch listings when attached under the Kaggle input folder, else
    the sample), ``"sample"``, ``"farfetch"`` (found under the Kaggle input folder) or a folder path.
    ``format``: the folder's layout, ``"auto"`` to detect it (Farfetch CSV, ``styles.csv`` +
    ``images/``, else any folder of images). ``photos``: Farfetch's ``"cutout"`` or ``"model"`` photos.
    ``kaggle_input``: where Kaggle datasets are (default ``$CBIR_TUTORIAL_KAGGLE_INPUT`` or ``/kaggle/input``).
    """
    from .data import loaders

    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported; use one of: {', '.join(FORMATS)}")
    word = "auto" if source is None else str(source).strip()
    key = word.lower()
    if key in CATALOGUE_WORDS and format not in ("auto", "sample", "farfetch"):
        raise ValueError(f"format={format!r} needs a catalogue folder, not {word!r}")
    if format == "sample" or key == "sample":
        return loaders.load_sample()
    if key == "auto":
        found = loaders.find_farfetch_root(kaggle_input)
        if format == "farfetch" and found is None:
            return loaders.load_farfetch(None, photos, kaggle_input=kaggle_input)  # raises, saying where it looked
        return loaders.load_farfetch(found, photos) if found is not None else loaders.load_sample()
    if key == "farfetch":
        return loaders.load_farfetch(None, photos, kaggle_input=kaggle_input)
    path = Path(word).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"catalogue {word!r}: no such folder. Use one of {', '.join(CATALOGUE_WORDS)} "
                                "or the folder of a catalogue (see data/README.md).")
    if format == "auto":
        format = loaders.layout_of(path)
    if format == "farfetch":
        return loaders.load_farfetch(path, photos)
    if format == "fashion-products":
        return loaders.load_fashion_products(path)
    return loaders.load_folder(path)
