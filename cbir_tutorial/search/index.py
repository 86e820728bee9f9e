"""Exact nearest-neighbour search by Euclidean distance, vectorised and chunked."""

from __future__ import annotations

import numpy as np

#: Most gallery rows scored per step: bounds the float16 upcast buffer and the distance block.
DEFAULT_CHUNK_ROWS = 16_384
#: Distances held per step, ``Q x rows``: a cache-sized block keeps selecting the top k cheap for batches.
BLOCK_DISTANCES = 131_072


class EuclideanIndex:
    """Exact k-nearest-neighbour search over a gallery of feature vectors.

    ``features``: ``(N, D)`` gallery (L2-normalised features give distances in ``[0, 2]``).
    ``dtype``: storage, ``float32`` or ``float16`` (half the memory; distances computed in float32).
    Distances use ``‖q‖² + ‖x‖² − 2 q·x`` in one matrix product per chunk, clamped at 0.
    Ties are broken by the lower gallery index, so results are deterministic.
    """

    def __init__(self, features: np.ndarray, dtype=np.float32, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"features must be (N, D), got shape {features.shape}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float16):
            raise ValueError(f"dtype={dtype}: use float32 or float16")
        self.gallery = np.ascontiguousarray(features, dtype=dtype)
        self.chunk_rows = int(chunk_rows)
        self.sq_norms = np.empty(len(self.gallery), dtype=np.float32)
        for start in range(0, len(self.gallery), self.chunk_rows):
            block = self.gallery[start:start + self.chunk_rows].astype(np.float32, copy=False)
            self.sq_norms[start:start + len(block)] = np.einsum("ij,ij->i", block, block)

    def __len__(self) -> int:
        return len(self.gallery)

    @property
    def dim(self) -> int:
        return self.gallery.shape[1]

    def __repr__(self) -> str:
        return f"EuclideanIndex({len(self)} x {self.dim}, {self.gallery.dtype}, {self.gallery.nbytes / 2**20:.1f} MiB)"

    def search(self, queries: np.ndarray, k: int = 10, *, exclude: np.ndarray | None = None,
               allowed: np.ndarray | None = None):
        """The ``k`` nearest gallery rows of each query.

        ``queries``: ``(Q, D)`` or ``(D,)``. ``exclude``: optional ``(Q,)`` gallery row per query to
        leave out (-1 for none), e.g. the query itself in leave-one-out evaluation. ``allowed``: optional
        ``(N,)`` bool, only these gallery rows may be returned (a metadata filter).
        Returns ``(distances, indices)``, each ``(Q, k')`` (``(k',)`` for one query) sorted by ascending
        distance, ``k' = min(k, N - excluded)``; distances are Euclidean (not squared), float32.
        """
        single = np.ndim(queries) == 1
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the index has {self.dim}")
        if k < 1:
            raise ValueError(f"k={k}: must be at least 1")
        if exclude is not None:
            exclude = np.asarray(exclude, dtype=np.int64).reshape(len(queries))
        n_candidates = len(self)
        if allowed is not None:
            allowed = np.asarray(allowed, dtype=bool).reshape(len(self))
            n_candidates = int(allowed.sum())
            if exclude is not None:
                n_candidates -= int(allowed[exclude[exclude >= 0]].any())
        elif exclude is not None:
            n_candidates -= 1
        k = min(k, n_candidates)
        if k < 1:
            empty = np.zeros((len(queries), 0))
            return (empty[0].astype(np.float32), empty[0].astype(np.int64)) if single else (
                empty.astype(np.float32), empty.astype(np.int64))
        q_norms = np.einsum("ij,ij->i", queries, queries)
        best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
        best_i = np.zeros((len(queries), 0), dtype=np.int64)
        step = min(self.chunk_rows, max(256, BLOCK_DISTANCES // len(queries)))
        upcast = (np.empty((min(step, len(self)), self.dim), dtype=np.float32)
                  if self.gallery.dtype != np.float32 else None)
        for start in range(0, len(self), step):
            block = self.gallery[start:start + step]
            if upcast is not None:  # one reused buffer: no per-chunk allocation
                np.copyto(upcast[:len(block)], block)
                block = upcast[:len(block)]
            d2 = block @ queries.T  # (C, Q): gallery-major keeps BLAS fast
            d2 = d2.T
            d2 *= -2.0
            d2 += q_norms[:, None]
            d2 += self.sq_norms[start:start + len(block)][None, :]
            np.maximum(d2, 0.0, out=d2)
            if allowed is not None:
                d2[:, ~allowed[start:start + len(block)]] = np.inf
            if exclude is not None:
                local = exclude - start
                rows = np.flatnonzero((local >= 0) & (local < len(block)))
                d2[rows, local[rows]] = np.inf
            cand_d, cand_i = _candidates(d2, best_d, k)
            if cand_d.shape[1]:
                best_d, best_i = _merge(best_d, best_i, cand_d, cand_i + start, k)
        return (np.sqrt(best_d[0]), best_i[0]) if single else (np.sqrt(best_d), best_i)

    def search_rows(self, rows: np.ndarray | None = None, k: int = 10, *, exclude_self: bool = True):
        """Use gallery rows (all when ``rows`` is None) as queries; leave each one out of its own results."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64)
        queries = self.gallery[rows].astype(np.float32)
        return self.search(queries, k, exclude=rows if exclude_self else None)


def _smallest_k(d: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` smallest entries per row, ties at the cut going to lower indices."""
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


def _candidates(d: np.ndarray, best_d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(Q, m)`` distances and column indices of ``d`` that may enter the current top ``k``.

    Once every query holds ``k`` results, only entries strictly below its k-th best can enter (strictly:
    a later chunk loses ties), and they are few; otherwise the chunk's own top ``k`` is taken.
    """
    if best_d.shape[1] == k:
        rows, cols = np.nonzero(d < best_d[:, -1:])
        counts = np.bincount(rows, minlength=len(d))
        width = int(counts.max(initial=0))
        if width <= k:
            cand_d = np.full((len(d), width), np.inf, dtype=np.float32)
            cand_i = np.zeros((len(d), width), dtype=np.int64)
            slot = np.arange(len(rows)) - (np.cumsum(counts) - counts)[rows]
            cand_d[rows, slot] = d[rows, cols]
            cand_i[rows, slot] = cols
            return cand_d, cand_i
    cand_i = _smallest_k(d, k)
    return np.take_along_axis(d, cand_i, axis=1), cand_i


def _merge(d1, i1, d2, i2, k):
    d = np.concatenate([d1, d2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    order = np.lexsort((i, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
