"""The tiny fine-tuning runs of the tests: 8 real photos of each of 3 categories, 32 px images, a 20-step linear probe, 2 epochs."""

from __future__ import annotations

import numpy as np

from cbir_tutorial.training.trainer import TrainingSettings

CATEGORIES = ("Tshirts", "Watches", "Handbags")


def tiny_catalogue_of(catalogue):
    """The first 8 products of each of :data:`CATEGORIES`, in catalogue order."""
    table = catalogue.table
    rows = np.concatenate([np.flatnonzero(table["category"] == c)[:8] for c in CATEGORIES])
    return catalogue.subset(np.sort(rows))


#: The catalogue of the mixing tests: 6 photos of each of these, 2 of them held out of training as whole categories.
MIXING_CATEGORIES = ("Tshirts", "Watches", "Handbags", "Shirts", "Casual Shoes", "Tops")


def mixing_catalogue_of(catalogue):
    """The first 6 products of each of :data:`MIXING_CATEGORIES`, in catalogue order."""
    table = catalogue.table
    rows = np.concatenate([np.flatnonzero(table["category"] == c)[:6] for c in MIXING_CATEGORIES])
    return catalogue.subset(np.sort(rows))


def tiny(**changes) -> TrainingSettings:
    """The CPU preset shrunk to seconds: 32 px, a 16-d embedding, batches of 3×3, 20 probe steps, 2 epochs."""
    return TrainingSettings.cpu(**{"image_size": 32, "embedding_dim": 16, "classes_per_batch": 3,
                                   "images_per_class": 3, "validation_fraction": 0.3, "epochs": 2, "probe_steps": 20,
                                   **changes})
