"""The photos a run trains on: decoded once, in memory, with the positions of each side of the split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.catalogue import Catalogue
from ..data.images import ImageError, decoded_images
from .protocols import sides_problem, training_split


@dataclass
class TrainingPhotos:
    """Every readable photo of a run's catalogue, decoded: ``pixels`` ``(N, S, S, 3)`` uint8 and ``labels``
    ``(N,)`` str; ``train_rows``, ``validation_rows`` and ``held_out_rows`` are positions in them (the held-out
    rows' categories are never trained on); ``classes`` the training side's categories, ``train_codes`` each
    training photo's index in them (int32); ``skipped`` the reasons of the photos that could not be read;
    ``split`` the catalogue's ``(train, validation, held_out)`` masks, unreadable photos included."""

    pixels: np.ndarray
    labels: np.ndarray
    train_rows: np.ndarray
    validation_rows: np.ndarray
    held_out_rows: np.ndarray
    skipped: list[str]
    split: tuple[np.ndarray, np.ndarray, np.ndarray]

    def __post_init__(self):
        self.classes, codes = np.unique(self.labels[self.train_rows], return_inverse=True)
        self.train_codes = codes.astype(np.int32)

    @property
    def validation_labels(self) -> np.ndarray:
        return self.labels[self.validation_rows]

    @property
    def held_out_labels(self) -> np.ndarray:
        return self.labels[self.held_out_rows]

    @classmethod
    def decoded(cls, catalogue: Catalogue, settings, size: int) -> "TrainingPhotos":
        """The photos of ``catalogue``'s sides (:func:`~.protocols.training_split` with ``settings``) decoded
        at ``size`` px (``settings.resize``). :class:`~cbir_tutorial.data.images.ImageError` naming the first
        unreadable photos when none can be read, or when those left cannot make a training and a validation
        side (:func:`~.protocols.sides_problem`)."""
        labels = catalogue.labels.astype(str)
        train, validation, held_out = training_split(labels, settings)
        rows = np.flatnonzero(train | validation | held_out)
        pixels, kept, skipped = decoded_images([catalogue.paths[r] for r in rows], size, settings.resize)
        if not kept.any():
            more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
            raise ImageError(f"none of the {len(rows)} photos to train on could be read: "
                             f"{'; '.join(skipped[:3])}{more}")
        rows = rows[kept]
        problem = sides_problem(labels[rows][train[rows]], labels[rows][validation[rows]])
        if problem:
            raise ImageError(f"{len(skipped)} of the {len(kept)} photos to train on could not be read (the "
                             f"first: {skipped[0]}), and without them {problem}")
        return cls(pixels, labels[rows], np.flatnonzero(train[rows]), np.flatnonzero(validation[rows]),
                   np.flatnonzero(held_out[rows]), skipped, (train, validation, held_out))
