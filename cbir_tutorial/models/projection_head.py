"""A learned embedding: a small Keras projection head trained on frozen backbone features.

The head (``Dense → ReLU → Dense``, L2-normalised output) is trained with the supervised contrastive
loss (Khosla et al. 2020): for each product, the other products of its category should be closer
than every product of another category, softly, at temperature ``τ``. Only the head trains; the
backbone's features are computed once, so training takes seconds on a CPU.

It needs labels, which a learner's own catalogue may not have, and it can only learn the categories
it is shown: :func:`category_split` keeps whole categories unseen so
:func:`~cbir_tutorial.evaluation.reports.head_report` can measure
both what it learned (held-out products of seen categories) and how far that carries (unseen ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runtime import keras_module, tensorflow_module


@dataclass
class CategorySplit:
    """Three disjoint ``(N,)`` bool masks over a gallery: ``train`` and ``seen_test`` (products of
    the seen categories, split in two) and ``unseen`` (every product of the other categories)."""

    train: np.ndarray
    seen_test: np.ndarray
    unseen: np.ndarray
    seen_categories: list
    unseen_categories: list


def category_split(labels, *, unseen_fraction: float = 0.5, test_fraction: float = 0.5, min_size: int = 4,
                   seed: int = 0) -> CategorySplit:
    """Split categories with at least ``min_size`` products into seen and unseen (``unseen_fraction``
    of them, seeded), then each seen category's products into train / ``test_fraction`` held out.
    Products of smaller or unlabelled ("") categories are in no mask."""
    labels = np.asarray(labels, dtype=object)
    names, counts = np.unique(labels[labels != ""].astype(str), return_counts=True)
    usable = names[counts >= min_size]
    if len(usable) < 2:
        raise ValueError(f"need 2 or more categories with {min_size}+ products, found {len(usable)}")
    rng = np.random.default_rng(seed)
    shuffled = list(rng.permutation(usable))
    n_unseen = min(len(usable) - 1, max(1, round(unseen_fraction * len(usable))))
    unseen_names, seen_names = sorted(shuffled[:n_unseen]), sorted(shuffled[n_unseen:])
    train = np.zeros(len(labels), dtype=bool)
    seen_test = np.zeros(len(labels), dtype=bool)
    for name in seen_names:
        rows = rng.permutation(np.flatnonzero(labels == name))
        n_test = max(2, round(test_fraction * len(rows)))
        seen_test[rows[:n_test]] = True
        train[rows[n_test:]] = True
    unseen = np.isin(labels.astype(str), unseen_names) & (labels != "")
    return CategorySplit(train, seen_test, unseen, seen_names, unseen_names)


def supervised_contrastive_loss(embeddings, labels, temperature: float = 0.1):
    """Mean over anchors with a positive of ``-mean_p log softmax_{a≠i}(z_i·z_a / τ)[p]``; ``embeddings``
    ``(B, d)`` L2-normalised, ``labels`` ``(B,)`` int."""
    tf = tensorflow_module()
    similarity = tf.matmul(embeddings, embeddings, transpose_b=True) / temperature
    n = tf.shape(embeddings)[0]
    not_self = 1.0 - tf.eye(n)
    similarity = similarity - 1e9 * tf.eye(n)
    log_prob = similarity - tf.reduce_logsumexp(similarity, axis=1, keepdims=True)
    positives = tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.float32) * not_self
    n_pos = tf.reduce_sum(positives, axis=1)
    per_anchor = -tf.reduce_sum(positives * log_prob, axis=1) / tf.maximum(n_pos, 1.0)
    has = tf.cast(n_pos > 0, tf.float32)
    return tf.reduce_sum(per_anchor * has) / tf.maximum(tf.reduce_sum(has), 1.0)


class ProjectionHead:
    """``(N, D)`` frozen features → ``(N, dim)`` L2-normalised learned embeddings.

    Train with :meth:`fit` (full-batch Adam on the supervised contrastive loss, ``steps`` updates),
    then :meth:`transform` any features of the same backbone.
    """

    def __init__(self, input_dim: int, dim: int = 128, hidden: int = 512, temperature: float = 0.1, seed: int = 0):
        keras = keras_module()
        keras.utils.set_random_seed(seed)
        self.temperature = float(temperature)
        inputs = keras.Input((input_dim,))
        x = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(inputs)
        x = keras.layers.Dense(dim, name="head_out")(x)
        outputs = keras.layers.UnitNormalization(name="head_l2")(x)
        self.model = keras.Model(inputs, outputs, name="projection_head")
        self.history: list[float] = []

    def fit(self, features: np.ndarray, labels, *, steps: int = 200, learning_rate: float = 1e-3) -> "ProjectionHead":
        """Train on ``(N, D)`` features and their ``(N,)`` category labels; ``history`` holds the loss per step."""
        tf = tensorflow_module()
        keras = keras_module()
        _, codes = np.unique(np.asarray(labels).astype(str), return_inverse=True)
        x = tf.constant(np.asarray(features, dtype=np.float32))
        y = tf.constant(codes.astype(np.int32))
        optimizer = keras.optimizers.Adam(learning_rate)
        variables = self.model.trainable_variables

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = supervised_contrastive_loss(self.model(x, training=True), y, self.temperature)
            optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return loss

        self.history = [float(step()) for _ in range(int(steps))]
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """``(N, D)`` features → ``(N, dim)`` float32 L2-normalised embeddings."""
        return self.model(np.asarray(features, dtype=np.float32), training=False).numpy().astype(np.float32)
