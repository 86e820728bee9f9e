"""The original tutorial's evaluation score, kept as a lesson in what a metric must not do."""

from __future__ import annotations

import numpy as np


def share_within_threshold(distances, threshold: float) -> float:
    """The original tutorial's "MAP": the share of one query's top-K distances below ``threshold``.

    It is not mean average precision: it ignores whether the results are relevant, depends on an
    arbitrary threshold and on the scale of the features, and was computed on one random query.
    """
    distances = np.asarray(distances, dtype=np.float64).ravel()
    return float(np.mean(distances < threshold)) if len(distances) else 0.0
