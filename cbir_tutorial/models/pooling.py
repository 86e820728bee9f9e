"""Pooling the last convolutional feature map: average, max or GeM, with flip / multi-scale test-time augmentation.

A backbone's last convolutional layer gives an ``(h, w, C)`` map (7×7×1280 for EfficientNet-Lite0 at
224 px); the package's default features are its spatial average. :func:`conv_map_model` cuts a backbone
just before that pooling; :class:`PooledExtractor` pools the map another way:

- ``"avg"``: mean over the ``h·w`` positions (today's features);
- ``"max"``: max over positions (MAC, Tolias et al. 2016): the strongest response of each channel;
- ``"gem"``: generalised mean ``(mean x^p)^(1/p)`` (Radenović et al. 2018); ``p=1`` is the average,
  ``p → ∞`` the max; ``p=3`` is the value those authors found for off-the-shelf features.

Test-time augmentation sums the L2-normalised descriptors of the image and its mirror (``flip``) and of
the image resized by each factor in ``scales``, then L2-normalises the sum.
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence


from .weights import Weights, weights_from_word
from .backbones import backbone_spec, keras_application
from .features import FeatureExtractor, unit_length
from .runtime import keras_module, tensorflow_module

POOLINGS = ("avg", "max", "gem")


def conv_map_model(backbone: str, weights: Weights = "imagenet", *, any_size: bool = False, seed: int = 0,
                   features=None):
    """A Keras model from preprocessed ``(B, S, S, 3)`` images to the last ``(B, h, w, C)`` conv map.

    ``features``: an already built :func:`~cbir_tutorial.models.backbones.feature_model` of ``backbone``
    to cut (shares its weights: nothing is built or loaded again). ``any_size=True`` builds a model
    accepting any input size (for multi-scale features): EfficientNet-Lite through its own port, the
    Keras applications without their top. Channels: 1280 (Lite0/Lite2), 2048 (ResNet50, Xception), 512 (VGG16).
    """
    from .backbones import feature_model

    spec = backbone_spec(backbone)
    keras = keras_module()
    if not any_size:
        model = features if features is not None else feature_model(spec.name, weights, seed=seed)
        return keras.Model(model.input, _conv_map(spec, model), name=f"{spec.name}_conv_map")
    weights = weights_from_word(weights)
    if weights is None:
        keras.utils.set_random_seed(seed)
    body = keras_application(spec, weights, include_top=False, input_shape=(None, None, 3))
    return keras.Model(body.input, _conv_map(spec, body), name=f"{spec.name}_conv_map")


def _conv_map(spec, model):
    """The last convolutional map of ``model``: ``spec.conv_map_layer``'s output, else the input of its
    ``avg_pool`` layer, else its output (a body without top)."""
    if spec.conv_map_layer:
        return model.get_layer(spec.conv_map_layer).output
    names = {layer.name for layer in model.layers}
    return model.get_layer("avg_pool").input if "avg_pool" in names else model.output


def pool(maps, pooling: str = "avg", p: float = 3.0):
    """``(B, h, w, C)`` non-negative conv maps (numpy or tensor) → ``(B, C)`` pooled, not normalised.

    ``pooling``: ``"avg"``, ``"max"`` or ``"gem"`` (generalised mean with exponent ``p``; values are
    clipped at 1e-6 first so the power is defined).
    """
    pooling = pooling_from_word(pooling)
    tf = tensorflow_module()
    maps = tf.cast(maps, tf.float32)
    if pooling == "avg":
        return tf.reduce_mean(maps, axis=[1, 2])
    if pooling == "max":
        return tf.reduce_max(maps, axis=[1, 2])
    p = float(p)
    if p <= 0:
        raise ValueError(f"p={p}: the GeM exponent must be positive")
    return tf.pow(tf.reduce_mean(tf.pow(tf.maximum(maps, 1e-6), p), axis=[1, 2]), 1.0 / p)


def pooling_from_word(pooling: str) -> str:
    """``"avg"`` (also ``"average"``, ``"mean"``), ``"max"`` (``"mac"``) or ``"gem"``; raises ValueError otherwise."""
    word = str(pooling).strip().lower()
    word = {"average": "avg", "mean": "avg", "mac": "max"}.get(word, word)
    if word not in POOLINGS:
        raise ValueError(f"pooling={pooling!r}: use one of {', '.join(POOLINGS)}")
    return word


class PooledExtractor(FeatureExtractor):
    """A :class:`FeatureExtractor` whose features pool the last conv map with ``pooling`` (and TTA).

    ``pooling``: ``"avg"``, ``"max"`` or ``"gem"`` (``p``: GeM exponent); ``flip``: also describe the
    mirrored image; ``scales``: input size factors (``(1.0,)`` = the backbone's size only; others make
    the model accept any size). Features: ``(N, C)`` float32, L2-normalised; cached on disk like the
    parent's, under a key that includes the pooling and augmentation.
    Cost: ``len(scales) × (2 if flip else 1)`` forward passes per image.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", weights: Weights = "imagenet", *,
                 pooling: str = "avg", p: float = 3.0, flip: bool = False, scales: Sequence[float] = (1.0,),
                 **options):
        super().__init__(backbone, weights, **options)
        self.pooling = pooling_from_word(pooling)
        self.p = float(p)
        if self.pooling == "gem" and self.p <= 0:
            raise ValueError(f"p={p}: the GeM exponent must be positive")
        self.flip = bool(flip)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales={scales!r}: give one or more positive factors, e.g. (1.0,)")
        self.map_channels = self.spec.map_channels
        self._conv_model = None

    @property
    def conv_model(self):
        """The model from preprocessed images to the last conv map (:func:`conv_map_model`), built on first use:
        of :attr:`model` at the backbone's size, else a body that takes any size."""
        if self._conv_model is None:
            any_size = self.scales != (1.0,)
            self._conv_model = conv_map_model(self.spec.name, self.weights, any_size=any_size, seed=self.seed,
                                              features=None if any_size else self.model)
        return self._conv_model

    def inference(self):
        return _pooled_inference(self.conv_model, self.spec, self.pooling, self.p, self.flip, self.scales)

    @property
    def feature_dim(self) -> int:
        return self.map_channels

    def __repr__(self) -> str:
        tta = (" + flip" if self.flip else "") + (f" x scales {self.scales}" if self.scales != (1.0,) else "")
        pooling = f"gem(p={self.p:g})" if self.pooling == "gem" else self.pooling
        return (f"PooledExtractor({self.choice.label}, {self.input_size} px {self.resize}, "
                f"{pooling}{tta} -> {self.feature_dim}-d)")

    @property
    def cache_key(self) -> str:
        """The parent's key (backbone, weights, size, resize, precision) plus the pooling and augmentation."""
        pooled = {"base": super().cache_key, "pooling": self.pooling, "p": self.p if self.pooling == "gem" else None,
                  "flip": self.flip, "scales": list(self.scales), "dim": self.feature_dim}
        return hashlib.sha256(json.dumps(pooled, sort_keys=True).encode()).hexdigest()[:24]


def _pooled_inference(conv_model, spec, pooling: str, p: float, flip: bool, scales: tuple):
    tf = tensorflow_module()
    size = spec.input_size
    preprocess = spec.preprocess_function()

    def describe(images):
        return unit_length(pool(conv_model(preprocess(images), training=False), pooling, p))

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
    def infer(images):
        total = 0.0
        for scale in scales:
            scaled = images if scale == 1.0 else tf.image.resize(images, [round(size * scale)] * 2, antialias=True)
            total += describe(scaled)
            if flip:
                total += describe(tf.reverse(scaled, axis=[2]))
        return unit_length(total)

    return infer
