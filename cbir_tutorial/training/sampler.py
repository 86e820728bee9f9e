"""Class-balanced batches for metric learning: P classes × K images each.

A pair-based loss needs positives in every batch, which uniform sampling rarely gives when a catalogue
has dozens of categories. Each batch draws ``P`` distinct classes, then ``K`` images of each.
Classes with a single image are never drawn (they can have no positive); classes with fewer than ``K``
images are drawn with replacement (an image may appear twice in a batch, augmented differently).
"""

from __future__ import annotations

import numpy as np


def pk_batches(labels, classes_per_batch: int, images_per_class: int, *, n_batches: int | None = None,
               seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
    """The row indices of one epoch's batches: a list of ``(P*K,)`` int64 arrays, class by class.

    ``labels``: ``(N,)`` class of each row (any hashable; rows whose class has one member are never drawn).
    ``classes_per_batch`` is P (capped at the number of eligible classes), ``images_per_class`` K.
    ``n_batches``: default ``ceil(N_eligible / (P*K))``, about one pass over the images.
    The batches depend only on ``(seed, epoch)``, so a resumed run draws what an uninterrupted one would.
    """
    if classes_per_batch < 1 or images_per_class < 1:
        raise ValueError(f"P={classes_per_batch}, K={images_per_class}: both must be at least 1")
    labels = np.asarray(labels)
    names, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) == 0:
        raise ValueError("no class has 2 or more images: metric learning needs positives")
    members = {c: np.flatnonzero(codes == c) for c in eligible}
    p = min(classes_per_batch, len(eligible))
    if n_batches is None:
        n_batches = -(-int(counts[eligible].sum()) // (p * images_per_class))
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for _ in range(n_batches):
        chosen = rng.choice(eligible, size=p, replace=False)
        batches.append(np.concatenate([
            rng.choice(members[c], size=images_per_class, replace=len(members[c]) < images_per_class)
            for c in chosen
        ]).astype(np.int64))
    return batches


def share_with_a_positive(batches, labels) -> float:
    """The share of the photos of ``batches`` (each an array of row indices into ``labels``) that have another
    photo of their category in their batch: what a pair-based loss needs to pull an anchor towards its category
    (multi-similarity adds nothing for an anchor without one)."""
    labels = np.asarray(labels, dtype=object).astype(str)
    return float(np.mean([np.mean([(labels[b] == labels[i]).sum() >= 2 for i in b]) for b in batches]))
