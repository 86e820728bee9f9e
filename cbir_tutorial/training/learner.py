"""The Keras side of fine-tuning: the model ``fit`` trains, its optimiser and its batches.

* :class:`MetricLearner` - a ``keras.Model`` around the embedding model: ``call`` augments the photos
  while training, ``compute_loss`` is the metric-learning loss (Proxy-Anchor's proxies are the learner's own
  weights), so Keras's ``train_step`` does each step, loss scaling under mixed precision included;
* :class:`GroupAdamW` - AdamW where each group of variables learns at its own rate: the head at the base rate,
  the proxies faster, the backbone's last blocks slower, and not at all while :attr:`~GroupAdamW.fine_tune`
  is 0 (the warm-up);
* :class:`PKBatches` - a ``keras.utils.PyDataset`` of one epoch's P×K batches (:mod:`.sampler`), each with
  the seed of its augmentation: both depend only on the run's seed, the epoch and the step.

What a learner writes after the course::

    learner = MetricLearner(embedding_model, preprocess, "multi-similarity")
    learner.compile(optimizer=keras.optimizers.AdamW(1e-4))
    learner.fit(PKBatches(photos, labels, 8, 4), epochs=10, callbacks=[keras.callbacks.EarlyStopping(...)])

Importing this module imports TensorFlow.
"""

from __future__ import annotations

import numpy as np

from ..models.runtime import keras_module, tensorflow_module
from .augment import augmented
from .losses import multi_similarity_loss, proxy_anchor_loss
from .sampler import pk_batches

keras = keras_module()


class MetricLearner(keras.Model):
    """``((B, S, S, 3) photos 0..255, (2,) int64 augmentation seed)`` → ``(B, D)`` L2-normalised embeddings
    of ``embedding_model`` (preprocessed by ``preprocess``; augmented first when training and ``augment``).

    ``loss``: ``"proxy-anchor"`` (then ``n_classes`` proxies of the embedding's size are weights of this
    model, He-normal with ``seed``) or ``"multi-similarity"``; labels are int class codes. The backbone
    always runs in inference mode (its BatchNorm statistics never move)."""

    def __init__(self, embedding_model, preprocess, loss: str, *, n_classes: int = 0, augment: bool = True,
                 seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.net, self.preprocess, self.loss_name, self.augment = embedding_model, preprocess, loss, augment
        self.proxies = None
        if loss == "proxy-anchor":
            self.proxies = self.add_weight(shape=(n_classes, embedding_model.output_shape[-1]), name="proxies",
                                           initializer=keras.initializers.HeNormal(seed=seed))

    def call(self, inputs, training=False):
        images, seed = inputs
        x = keras.ops.cast(images, "float32")
        if training and self.augment:
            x = augmented(x, seed)
        return self.net(self.preprocess(x), training=False)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The metric-learning loss of the batch's embeddings ``y_pred`` and class codes ``y``."""
        if self.proxies is not None:
            return proxy_anchor_loss(y_pred, y, self.proxies)
        return multi_similarity_loss(y_pred, y)


class GroupAdamW(keras.optimizers.Adam):
    """Adam with decoupled weight decay, each variable's learning rate the base ``learning_rate`` times its
    group's factor: ``factors`` pairs variables with a number or a ``keras.Variable`` (the others: 1).
    ``backbone`` variables are multiplied by :attr:`fine_tune` too (0.0 or 1.0, set by the caller: 0 during
    the warm-up, when their moments still follow the gradients but they do not move). Weight decay
    ``weight_decay`` × the variable's own rate, for every variable but those in ``no_decay``."""

    def __init__(self, learning_rate: float, *, factors=(), backbone=(), no_decay=(), weight_decay: float = 0.0,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.fine_tune = keras.Variable(0.0, trainable=False, name="fine_tune")
        self._factors = {self._var_key(v): factor for v, factor in factors}
        self._backbone = {self._var_key(v) for v in backbone}
        self._no_decay = {self._var_key(v) for v in no_decay}
        self.decay = float(weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        key = self._var_key(variable)
        rate = learning_rate * self._factors.get(key, 1.0)
        if key in self._backbone:
            rate = rate * keras.ops.cast(self.fine_tune, rate.dtype)
        if self.decay and key not in self._no_decay:
            variable.assign(variable - variable * keras.ops.cast(self.decay * rate, variable.dtype))
        super().update_step(gradient, variable, rate)


def compiled_learner(net, preprocess, settings, n_classes: int, precision: str | None):
    """``(learner, optimiser)``: the :class:`MetricLearner` of ``net`` (a :func:`~.model.trainable_model`)
    compiled with a :class:`GroupAdamW` at ``settings``' rates (the backbone's times ``backbone_lr_scale``, the
    proxies' times ``proxy_lr_scale`` and never decayed), wrapped in Keras's ``LossScaleOptimizer`` when
    ``precision`` is ``"mixed_float16"``. The optimiser returned is the GroupAdamW itself (its ``fine_tune``)."""
    s = settings
    model = MetricLearner(net.model, preprocess, s.loss, n_classes=n_classes, augment=s.augment, seed=s.seed)
    proxies = [model.proxies] if model.proxies is not None else []
    optimizer = GroupAdamW(s.learning_rate, weight_decay=s.weight_decay, backbone=net.backbone, no_decay=proxies,
                           factors=[(v, s.backbone_lr_scale) for v in net.backbone]
                           + [(p, s.proxy_lr_scale) for p in proxies])
    scaled = keras.mixed_precision.LossScaleOptimizer(optimizer) if precision == "mixed_float16" else optimizer
    model.compile(optimizer=scaled, jit_compile=False)
    return model, optimizer


class PKBatches(keras.utils.PyDataset):
    """One epoch of P×K batches of ``photos`` ``(N, S, S, 3)`` uint8 and their ``codes`` ``(N,)`` int: item
    ``b`` is ``((photos, seed), codes)`` with ``seed = [seed, epoch * 100_000 + b]`` for the augmentation.
    Set :attr:`epoch` before each epoch (the batches are :func:`~.sampler.pk_batches` of ``(seed, epoch)``)."""

    def __init__(self, photos: np.ndarray, codes: np.ndarray, classes_per_batch: int, images_per_class: int, *,
                 seed: int = 0):
        super().__init__()
        self.photos, self.codes, self.seed = photos, np.asarray(codes, np.int32), seed
        self.p, self.k = classes_per_batch, images_per_class
        self.epoch, self._batches = 0, {}
        self._n = len(self.rows(0))

    def rows(self, epoch: int) -> list[np.ndarray]:
        """The row indices of ``epoch``'s batches."""
        if epoch not in self._batches:
            self._batches = {epoch: pk_batches(self.codes, self.p, self.k, seed=self.seed, epoch=epoch)}
        return self._batches[epoch]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, b: int):
        rows = self.rows(self.epoch)[b]
        seed = np.array([self.seed, self.epoch * 100_000 + b], dtype=np.int64)
        return (self.photos[rows], seed), self.codes[rows]


def embedding_function(model, preprocess):
    """A compiled ``(B, S, S, 3)`` photos 0..255 → ``model``'s outputs function (no augmentation)."""
    tf = tensorflow_module()
    return tf.function(lambda images: model(preprocess(tf.cast(images, tf.float32)), training=False),
                       reduce_retracing=True)
