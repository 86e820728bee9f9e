"""Comparing top-K answers of two indexes (shared by the backend tests)."""

from __future__ import annotations

import numpy as np

QUERIES = np.arange(0, 770, 7)  # 110 catalogue rows used as queries


def recall(found: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, reference)]))


def assert_same_top_k(found, reference, atol=1e-5):
    """Same rows at the same ranks, except that rows whose squared distances tie (within ``atol``) may swap.

    Squared distances are compared: float32 rounding of ``‖q‖² + ‖x‖² − 2q·x`` is about 1e-7, which the
    square root turns into 3e-4 for duplicate images (distance 0)."""
    (d1, i1), (d2, i2) = found, reference
    assert i1.shape == i2.shape
    d1, d2 = d1.astype(np.float64) ** 2, d2.astype(np.float64) ** 2
    np.testing.assert_allclose(d1, d2, atol=atol)
    for q in range(len(i1)):
        outside = ~np.isin(i1[q], i2[q])  # rows the reference cut off: only in a tie at the k-th distance
        assert np.allclose(d1[q, outside], d2[q, -1], atol=atol), (q, i1[q], i2[q])
        swapped = np.flatnonzero((i1[q] != i2[q]) & ~outside)
        for rank in swapped:  # a swap only between near-equal distances
            assert np.isclose(d2[q, rank], d2[q], atol=atol).sum() > 1, (q, rank)
