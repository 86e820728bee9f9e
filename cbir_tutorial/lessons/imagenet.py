"""The 1000 ImageNet classes, offline: decode a classifier's probabilities into class names.

``keras.applications.*.decode_predictions`` downloads ``imagenet_class_index.json`` on first use,
which fails without internet. This package ships that same file (byte for byte, MD5
``c2c37ea517e94d9795004a39431a14cb`` as Keras checks it), so decoding works anywhere.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

import numpy as np
import pandas as pd

from ..data.images import resize_from_word
from ..models.backbones import BackboneChoice
from ..models.weights import Weights, weights_from_word
from ..models.backbones import backbone_spec, keras_application
from ..data.images import ImageSource, load_rgb

CLASS_INDEX_FILE = "imagenet_class_index.json"
N_CLASSES = 1000

#: ImageNet classes that name clothing, footwear, bags and accessories (and what ImageNet calls watches).
FASHION_CLASSES = frozenset({
    "abaya", "academic_gown", "apron", "backpack", "bib", "bikini", "bolo_tie", "bonnet", "bow_tie", "brassiere",
    "buckle", "cardigan", "cloak", "clog", "cowboy_boot", "cowboy_hat", "diaper", "feather_boa", "fur_coat", "gown",
    "hair_slide", "handkerchief", "hoopskirt", "jean", "jersey", "kimono", "knee_pad", "lab_coat", "Loafer",
    "mailbag", "maillot", "military_uniform", "miniskirt", "mitten", "necklace", "overskirt", "pajama", "poncho",
    "purse", "running_shoe", "sandal", "sarong", "ski_mask", "sock", "sombrero", "stole", "suit", "sunglass",
    "sunglasses", "sweatshirt", "swimming_trunks", "trench_coat", "vestment", "wallet", "Windsor_tie", "wig",
    "digital_watch", "analog_clock", "stopwatch",
})


@functools.lru_cache(maxsize=1)
def class_index() -> dict[int, tuple[str, str]]:
    """``{class number: (WordNet id, class name)}`` for the 1000 ImageNet classes, e.g.
    ``0: ("n01440764", "tench")``."""
    text = resources.files(__package__).joinpath(CLASS_INDEX_FILE).read_text(encoding="utf-8")
    return {int(i): (wnid, name) for i, (wnid, name) in json.loads(text).items()}


def class_names() -> list[str]:
    """The 1000 class names in class-number order."""
    index = class_index()
    return [index[i][1] for i in range(N_CLASSES)]


def decode_predictions(probs, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """The ``top`` classes of each prediction, most probable first, as Keras returns them.

    ``probs``: ``(B, 1000)`` class probabilities (a ``(1000,)`` vector counts as a batch of one).
    Returns ``B`` lists of ``(wnid, class_name, probability)``; equal probabilities keep class order.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 1:
        probs = probs[None]
    if probs.ndim != 2 or probs.shape[1] != N_CLASSES:
        raise ValueError(f"decode_predictions expects a batch of ImageNet predictions of shape (B, 1000), "
                         f"got {probs.shape}")
    top = max(0, min(int(top), N_CLASSES))
    index = class_index()
    decoded = []
    for row in probs:
        best = np.argsort(-row, kind="stable")[:top]
        decoded.append([(index[int(i)][0], index[int(i)][1], float(row[i])) for i in best])
    return decoded


def predictions_table(probs, top: int = 5) -> pd.DataFrame:
    """The ``top`` classes of one ``(1000,)`` prediction: columns ``rank, class, wnid, probability``."""
    probs = np.asarray(probs)
    if probs.ndim == 2 and len(probs) == 1:
        probs = probs[0]
    if probs.ndim != 1:
        raise ValueError(f"predictions_table takes one prediction of shape (1000,), got {probs.shape}")
    rows = decode_predictions(probs, top)[0]
    return pd.DataFrame({"rank": range(1, len(rows) + 1), "class": [r[1] for r in rows],
                         "wnid": [r[0] for r in rows], "probability": [r[2] for r in rows]})


def classifier_model(backbone: str, weights: Weights = "imagenet"):
    """``backbone`` with its 1000-class softmax head: preprocessed ``(B, S, S, 3)`` → ``(B, 1000)``.

    Raises :class:`~cbir_tutorial.models.backbones.WeightsUnavailableError` when ImageNet weights can be neither
    found nor downloaded (``efficientnet_lite0``'s come with a pip dependency of the package, no download).
    """
    return keras_application(backbone_spec(backbone), weights_from_word(weights), include_top=True)


class ImageNetClassifier:
    """A backbone with its ImageNet head: product photos in, probabilities of the 1000 classes out.

    ``resize``: how photos become ``S x S`` (``"pad"`` keeps the product's proportions on white).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", weights: Weights = "imagenet", resize: str = "pad"):
        self.choice = BackboneChoice.of(backbone, weights)
        self.spec = backbone_spec(self.choice.backbone)
        self.weights = self.choice.weights
        self.resize = resize_from_word(resize)
        self.model = classifier_model(self.spec.name, self.weights)

    def __repr__(self) -> str:
        return f"ImageNetClassifier({self.choice.label}, {self.spec.input_size} px {self.resize})"

    def probabilities(self, sources: list[ImageSource]) -> np.ndarray:
        """``(B, 1000)`` float32 class probabilities of ``B`` images (paths, bytes, PIL images...)."""
        size = self.spec.input_size
        pixels = np.stack([load_rgb(s, size, self.resize) for s in sources]).astype(np.float32)
        return np.asarray(self.model(self.spec.preprocess(pixels), training=False), dtype=np.float32)

    def top(self, source: ImageSource, k: int = 5) -> pd.DataFrame:
        """The ``k`` most probable classes of one image (see :func:`predictions_table`)."""
        return predictions_table(self.probabilities([source])[0], k)
