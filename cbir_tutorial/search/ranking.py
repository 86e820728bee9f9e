"""Picking the k best of many scores: the one top-k selection every index and expansion step uses."""

from __future__ import annotations

import numpy as np


def smallest_k(d: np.ndarray, k: int) -> np.ndarray:
    """``(Q, min(k, N))`` column indices of the ``k`` smallest entries of each row of ``(Q, N)`` ``d``, in no
    particular order; ties at the cut go to the lower indices."""
    if k <= 0:
        return np.zeros((len(d), 0), dtype=np.int64)
    if k >= d.shape[1]:
        return np.broadcast_to(np.arange(d.shape[1]), d.shape).copy()
    part = np.argpartition(d, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(d, part[:, -1:], axis=1).max(axis=1)
    n_at_cut = (d == kth[:, None]).sum(axis=1)
    n_below = (d < kth[:, None]).sum(axis=1)
    for r in np.flatnonzero(n_below + n_at_cut > k):  # rare: ties straddle the cut
        below = np.flatnonzero(d[r] < kth[r])
        at_cut = np.flatnonzero(d[r] == kth[r])[: k - len(below)]
        part[r] = np.concatenate([below, at_cut])
    return part


def nearest_first(d: np.ndarray, k: int) -> np.ndarray:
    """``(Q, min(k, N))`` column indices of the ``k`` smallest entries of each row of ``(Q, N)`` ``d``,
    smallest first; ties go to the lower index (deterministic)."""
    part = smallest_k(d, k)
    part.sort(axis=1)
    order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
