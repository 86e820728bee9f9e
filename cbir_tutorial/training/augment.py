"""Image augmentation for training: random resized crop, horizontal flip, colour jitter - seeded, batched, in TF.

Every random draw is a stateless TensorFlow op of an explicit ``seed``, so a batch's augmentation depends
only on that seed (the trainer derives it from the run's seed, the epoch and the step: a resumed run
augments exactly as an uninterrupted one).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.runtime import tensorflow_module


@dataclass(frozen=True)
class Augmentation:
    """How strongly to alter training images.

    ``scale``: the crop's share of the image area, drawn uniformly in this range; ``ratio``: its aspect
    ratio (width / height), drawn log-uniformly; ``flip``: mirror half of the images left-right;
    ``brightness``: added shift, a share of the full range (0.2 = ±51 of 255); ``contrast`` and
    ``saturation``: factors drawn in ``1 ± value``.
    """

    scale: tuple[float, float] = (0.35, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


def augmented(images, seed, augmentation: Augmentation = Augmentation()):
    """``(B, S, S, 3)`` uint8 or float RGB in 0..255 → ``(B, S, S, 3)`` float32 in 0..255, each image
    cropped (area share ``scale``, aspect ``ratio``) and resized back to ``S``, maybe flipped, and
    colour-jittered; ``seed``: an int or a pair of ints (TensorFlow's stateless seed)."""
    tf = tensorflow_module()
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    n, size = tf.shape(images)[0], images.shape[1]
    if isinstance(seed, int):
        seed = (seed, 0)
    draws = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)

    def uniform(i, low, high, shape=None):
        return tf.random.stateless_uniform(shape if shape is not None else [n], draws[i], low, high)

    a = augmentation
    area = uniform(0, *a.scale)
    log_ratio = uniform(1, tf.math.log(float(a.ratio[0])), tf.math.log(float(a.ratio[1])))
    height = tf.minimum(tf.sqrt(area / tf.exp(log_ratio)), 1.0)
    width = tf.minimum(tf.sqrt(area * tf.exp(log_ratio)), 1.0)
    top = uniform(2, 0.0, 1.0) * (1.0 - height)
    left = uniform(3, 0.0, 1.0) * (1.0 - width)
    flipped = uniform(4, 0.0, 1.0) < 0.5 if a.flip else tf.zeros([n], tf.bool)
    # crop_and_resize mirrors a box given right-to-left: the flip costs nothing
    x0 = tf.where(flipped, left + width, left)
    x1 = tf.where(flipped, left, left + width)
    boxes = tf.stack([top, x0, top + height, x1], axis=1)
    out = tf.image.crop_and_resize(images, boxes, tf.range(n), [size, size])

    out = out + 255.0 * uniform(5, -a.brightness, a.brightness)[:, None, None, None]
    mean = tf.reduce_mean(out, axis=[1, 2, 3], keepdims=True)
    out = mean + uniform(6, 1 - a.contrast, 1 + a.contrast)[:, None, None, None] * (out - mean)
    grey = tf.reduce_sum(out * tf.constant([0.299, 0.587, 0.114]), axis=-1, keepdims=True)
    out = grey + uniform(7, 1 - a.saturation, 1 + a.saturation)[:, None, None, None] * (out - grey)
    return tf.clip_by_value(out, 0.0, 255.0)
