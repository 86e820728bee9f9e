"""The original tutorial's search loop and evaluation score, kept as lessons: a dictionary searched one
distance at a time (what one matrix product replaces), and a "MAP" that a metric must not be."""

from __future__ import annotations

from typing import Hashable, Mapping

import numpy as np


def original_top_k(features_by_id: Mapping[Hashable, np.ndarray], query: np.ndarray, k: int,
                   exclude: Hashable | None = None) -> tuple[list, list[float]]:
    """The original tutorial's search: a Python loop over ``{product id: feature vector}`` computing one
    Euclidean distance at a time, then every id sorted by its distance. Returns the first ``k`` ids and their
    distances, nearest first (ties keep the dictionary's order); ``exclude``: an id left out (the query's own).

    Kept as the reference the package's index is timed and checked against (notebook 5), not for use."""
    query = np.asarray(query)
    distances = {}
    for product_id, feature in features_by_id.items():
        if product_id != exclude:
            distances[product_id] = float(np.linalg.norm(query - feature))
    top = sorted(distances, key=distances.get)[:k]
    return top, [distances[product_id] for product_id in top]


def share_within_threshold(distances, threshold: float) -> float:
    """The original tutorial's "MAP": the share of one query's top-K distances below ``threshold``.

    It is not mean average precision: it ignores whether the results are relevant, depends on an
    arbitrary threshold and on the scale of the features, and was computed on one random query.
    """
    distances = np.asarray(distances, dtype=np.float64).ravel()
    return float(np.mean(distances < threshold)) if len(distances) else 0.0
