"""Exact nearest-neighbour search by Euclidean distance, vectorised and chunked, over compressed storage."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..models.finite import check_finite
import pandas as pd

from .backends import (CHECK_FEATURES, FIELDS_FILE, Index, allowed_mask, check_known, checked_ids, checked_query,
                       checked_rows, empty_results, result_width, save_fields, saved_arrays, saved_fields)
from .filters import Filters, filter_table
from .ranking import smallest_k

#: Most gallery rows scored per step (a search of one query steps through this many rows at a time).
DEFAULT_CHUNK_ROWS = 65_536
#: Rows converted at a time when encoding or measuring norms: bounds the float32 temporaries (64 MiB at 2048-d).
ENCODE_ROWS = 8_192
#: Distances held per step, ``Q x rows``: a cache-sized block keeps selecting the top k cheap for batches.
BLOCK_DISTANCES = 131_072
#: float32 values decoded per sub-step from compressed storage (1 MiB): the decoded rows stay in cache
#: while the matrix product reads them, so compressed storage reads fewer bytes from memory.
DECODE_VALUES = 262_144
#: Up to this many queries a search is memory-bound: compressed rows are decoded on every core.
FEW_QUERIES = 8
#: Storage names: bytes per value and what is kept.
STORAGES = {
    "float32": "4 bytes a value, exact",
    "bfloat16": "2 bytes: float32's 8-bit exponent and top 7 mantissa bits (ml_dtypes), about 3 significant digits",
    "int8": "1 byte: per-dimension scale and offset over the gallery's range (scalar quantisation)",
    "float16": "2 bytes: IEEE half precision; decoding is numpy's slow scalar cast: prefer bfloat16",
}


#: The squared distance a NaN (or overflowed) distance ranks as: after every number, before the rows a
#: query may not return (excluded, filtered out), which rank as infinity.
NOT_A_DISTANCE = np.finfo(np.float32).max

#: Bytes per stored value.
BYTES_PER_VALUE = {"float32": 4, "bfloat16": 2, "int8": 1, "float16": 2}


def index_bytes(n: int, dim: int, storage: str = "float32") -> int:
    """Bytes an exact index holds for ``n`` vectors of ``dim`` values: the stored gallery plus one float32
    squared norm per row (and int8's per-dimension scale and offset)."""
    if storage not in BYTES_PER_VALUE:
        raise ValueError(f"storage={storage!r}: use one of {', '.join(BYTES_PER_VALUE)}")
    extra = 8 * dim if storage == "int8" else 0
    return n * dim * BYTES_PER_VALUE[storage] + 4 * n + extra


def storage_name(dtype) -> str:
    """``"float32" | "bfloat16" | "int8" | "float16"`` for a storage word or dtype."""
    name = dtype if isinstance(dtype, str) else getattr(np.dtype(dtype), "name", str(dtype))
    if name not in STORAGES:
        raise ValueError(f"dtype={dtype!r}: use one of {', '.join(STORAGES)}")
    return name


def bfloat16():
    """The ``bfloat16`` numpy dtype (from ``ml_dtypes``, installed with TensorFlow)."""
    try:
        import ml_dtypes
    except ImportError as error:  # pragma: no cover - TensorFlow depends on it
        raise ImportError("bfloat16 storage needs the ml_dtypes package: pip install ml_dtypes") from error
    return np.dtype(ml_dtypes.bfloat16)


class EuclideanIndex(Index):
    """Exact k-nearest-neighbour search over a gallery of feature vectors, stored under int64 ids.

    ``dim``: the vectors' size (L2-normalised features give distances in ``[0, 2]``).
    ``dtype``: storage (see :data:`STORAGES`): ``float32`` (default; the first ``add`` of ids in increasing
    order uses a float32 C-contiguous array in place, not copied), ``bfloat16`` (half the memory), ``int8``
    (a quarter; per-dimension ``offset + scale * code``, the range taken from the first ``add`` unless
    given) or ``float16``. Compressed rows are decoded to float32 a few at a time in one reused buffer and the
    distances are exact for the decoded vectors.
    Distances use ``‖q‖² + ‖x‖² − 2 q·x`` in one matrix product per chunk, clamped at 0.
    Rows are kept in increasing id order, so ties are broken by the lower id and an index changed by
    ``add`` / ``remove`` answers exactly as one built from scratch on the same vectors (int8 keeps the range
    of its first ``add``, so there only as one built from scratch with that range). An ``add`` or a
    ``remove`` copies the gallery once (``O(N D)``, vectorised; searches stay one matrix product per chunk).
    """

    name = "exact"

    def __init__(self, dim: int, dtype=np.float32, chunk_rows: int = DEFAULT_CHUNK_ROWS, *,
                 offset: np.ndarray | None = None, scale: np.ndarray | None = None):
        self.storage = storage_name(dtype)
        self.chunk_rows = int(chunk_rows)
        self.offset = None if offset is None else np.asarray(offset, dtype=np.float32)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self.gallery = self._encode(np.zeros((0, int(dim)), dtype=np.float32))
        self.sq_norms = np.zeros(0, dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)
        self.table = filter_table(None, 0)

    def _encode(self, features: np.ndarray) -> np.ndarray:
        """``features`` in the storage dtype, converted chunk by chunk (no full float32 temporary)."""
        if self.storage == "float32":
            return np.ascontiguousarray(features, dtype=np.float32)
        dtype = {"bfloat16": bfloat16(), "int8": np.int8, "float16": np.float16}[self.storage]
        out = np.empty(features.shape, dtype=dtype)
        for start in range(0, len(features), ENCODE_ROWS):
            block = np.asarray(features[start:start + ENCODE_ROWS], dtype=np.float32)
            if self.storage == "int8":
                block = np.rint((block - self.offset) / self.scale)
                np.clip(block, -127, 127, out=block)
            out[start:start + len(block)] = block
        return out

    def _decoded(self, block: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``(n, D)`` float32 of ``block``, stored rows in this index's storage (itself for float32 storage)."""
        if self.storage == "float32":
            return block
        out = np.empty(block.shape, np.float32) if out is None else out[:len(block)]
        np.copyto(out, block)
        if self.storage == "int8":
            out *= self.scale
            out += self.offset
        return out

    def _norms_of(self, encoded: np.ndarray) -> np.ndarray:
        """Squared norms of encoded rows, as decoded (what the distances use), :data:`ENCODE_ROWS` at a time."""
        norms = np.empty(len(encoded), dtype=np.float32)
        for s in range(0, len(encoded), ENCODE_ROWS):
            block = self._decoded(encoded[s:s + ENCODE_ROWS])
            norms[s:s + len(block)] = np.einsum("ij,ij->i", block, block)
        return norms

    def __len__(self) -> int:
        return len(self.gallery)

    @property
    def dim(self) -> int:
        return self.gallery.shape[1]

    @property
    def nbytes(self) -> int:
        """Bytes held (see :func:`index_bytes`)."""
        return index_bytes(len(self), self.dim, self.storage)

    def __repr__(self) -> str:
        return f"EuclideanIndex({len(self)} x {self.dim}, {self.storage}, {self.nbytes / 2**20:.1f} MiB)"

    @property
    def ids(self) -> np.ndarray:
        """``(N,)`` int64 ids of the stored rows, increasing."""
        return self._ids

    def rows_of(self, ids) -> np.ndarray:
        """Row numbers of stored ``ids``; KeyError naming those not stored."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        check_known(ids, self._ids, "the exact index")
        return np.searchsorted(self._ids, ids)

    def rows_where_stored(self, ids) -> np.ndarray:
        """``(n,)`` int64 rows of ``ids``, -1 where an id is not stored (an excluded query may be anything)."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if not len(self._ids):
            return np.full(len(ids), -1, dtype=np.int64)
        at = np.minimum(np.searchsorted(self._ids, ids), len(self._ids) - 1)
        return np.where(self._ids[at] == ids, at, -1).astype(np.int64)

    def add(self, vectors: np.ndarray, ids, metadata=None) -> None:
        """Store ``(n, D)`` rows under ``ids`` (an id already stored is replaced). int8: encoded with the range
        of the first vectors added, values outside it clipped."""
        vectors, ids = checked_rows(self, vectors, ids, metadata)
        table = filter_table(metadata, len(ids))
        replaced = np.isin(ids, self._ids)
        if replaced.any():
            self._delete_rows(self.rows_of(ids[replaced]))
        if self.storage == "int8" and self.scale is None:
            self.offset, self.scale = int8_range(vectors)
        order = np.argsort(ids, kind="stable")
        if (order != np.arange(len(ids))).any():
            vectors, ids, table = vectors[order], ids[order], table.iloc[order].reset_index(drop=True)
        encoded = self._encode(vectors)
        norms = self._norms_of(encoded)
        if not len(self._ids):
            self.gallery, self.sq_norms, self._ids, self.table = encoded, norms, ids, table
            return
        at = np.searchsorted(self._ids, ids)
        self.gallery = np.insert(self.gallery, at, encoded, axis=0)
        self.sq_norms = np.insert(self.sq_norms, at, norms)
        self._ids = np.insert(self._ids, at, ids)
        positions = at + np.arange(len(ids))  # where the new rows landed
        keep = np.ones(len(self._ids), dtype=bool)
        keep[positions] = False
        merged = pd.concat([self.table, table], ignore_index=True)
        source = np.empty(len(self._ids), dtype=np.int64)
        source[keep], source[positions] = np.arange(len(self.table)), len(self.table) + np.arange(len(table))
        self.table = merged.iloc[source].reset_index(drop=True)

    def remove(self, ids) -> None:
        """Delete the rows of ``ids``; KeyError naming those not stored (then nothing is removed)."""
        self._delete_rows(self.rows_of(checked_ids(ids)))

    def _delete_rows(self, rows: np.ndarray) -> None:
        rows = np.unique(rows)
        self.gallery = np.delete(self.gallery, rows, axis=0)
        self.sq_norms = np.delete(self.sq_norms, rows)
        self._ids = np.delete(self._ids, rows)
        self.table = self.table.drop(index=rows).reset_index(drop=True)

    def vectors(self, ids=None) -> np.ndarray:
        """float32 stored rows of ``ids`` (all, in id order, when None: the gallery itself, no copy, for
        float32 storage)."""
        if ids is None:
            if self.storage == "float32":
                return self.gallery
            return self._decoded(self.gallery)
        return self._decoded(self.gallery[self.rows_of(ids)])

    def get_config(self) -> dict:
        return {"dtype": self.storage, "chunk_rows": self.chunk_rows}

    def _save_data(self, folder: Path) -> None:
        stored = self.gallery.view(np.uint16) if self.storage == "bfloat16" else self.gallery
        extra = {} if self.scale is None else {"offset": self.offset, "scale": self.scale}
        with open(folder / "gallery.npz", "wb") as file:
            np.savez(file, gallery=stored, sq_norms=self.sq_norms, ids=self._ids, **extra)
        save_fields(folder, self._ids, self.table)

    @classmethod
    def _load_data(cls, folder: Path, config: dict) -> "EuclideanIndex":
        data = saved_arrays(folder / "gallery.npz")
        index = cls(int(config["dim"]), config["dtype"], int(config["chunk_rows"]),
                    offset=data.get("offset"), scale=data.get("scale"))
        gallery = data["gallery"]
        index.gallery = gallery.view(bfloat16()) if index.storage == "bfloat16" else gallery
        index.sq_norms, index._ids = data["sq_norms"], data["ids"]
        ids, index.table = saved_fields(folder, len(index._ids))
        if not (len(index.gallery) == len(index.sq_norms) == len(ids)) or not np.array_equal(ids, index._ids):
            raise ValueError(f"{folder}: gallery.npz and {FIELDS_FILE} disagree on the stored ids; save it again")
        check_finite(index.sq_norms[:, None], what="saved gallery rows", fix=f"{folder} was saved from such features; "
                     f"build the index again from finite ones ({CHECK_FEATURES})")
        return index

    def block_rows(self, n_queries: int = 1) -> int:
        """Gallery rows that one step of a search of ``n_queries`` queries scores, in one matrix product:
        ``chunk_rows`` for one query, fewer for many, so that the step's ``n_queries x rows`` distances stay about
        :data:`BLOCK_DISTANCES` (cache-sized); never fewer than 256."""
        return min(self.chunk_rows, max(256, BLOCK_DISTANCES // max(1, int(n_queries))))

    def _decoded_products(self, start: int, stop: int, weights: np.ndarray, dots: np.ndarray) -> None:
        """``dots[:stop-start] = decoded rows start..stop @ weights.T`` for compressed storage.

        Rows are decoded a few at a time into a cache-sized float32 buffer and multiplied at once, so
        compressed rows are read from memory once. For a few queries the product is memory-bound and
        runs on every core (numpy's casts release the GIL), as BLAS runs the float32 product; for a batch
        BLAS already keeps the cores busy and one thread decodes larger blocks.
        """
        few = len(weights) <= FEW_QUERIES
        sub = max(1, DECODE_VALUES // self.dim) * (1 if few else 4)
        workers = min(_decode_workers() if few else 1, -(-(stop - start) // sub))
        bounds = np.linspace(start, stop, workers + 1).astype(int)

        def run(worker: int) -> None:  # one contiguous share of the rows per thread
            first, last = bounds[worker], bounds[worker + 1]
            buffer = np.empty((min(sub, last - first), self.dim), dtype=np.float32)
            for s in range(first, last, sub):
                e = min(s + sub, last)
                np.copyto(buffer[:e - s], self.gallery[s:e])
                np.matmul(buffer[:e - s], weights.T, out=dots[s - start:e - start])

        if workers == 1:
            run(0)
        else:
            list(_decode_pool().map(run, range(workers)))

    def search(self, queries: np.ndarray, k: int = 10, *, exclude_ids=None, filters: Filters | None = None):
        """The ``k`` nearest stored vectors of each query.

        ``queries``: ``(Q, D)`` or ``(D,)``. ``exclude_ids``: optional ``(Q,)`` id per query to leave out (-1
        for none), e.g. the query itself in leave-one-out evaluation. ``filters``: only the products that pass
        (:class:`~.filters.Filters`: their fields, or a set of ids).
        Returns ``(distances, ids)``, each ``(Q, k')`` (``(k',)`` for one query) sorted by ascending distance
        (ties: lower id first), ``k' = min(k, rows a query may return)``, padded with ``inf`` / -1 where a
        query has fewer; distances are Euclidean (not squared), float32. An excluded or filtered-out row is
        never returned; a distance that is not a number (overflow in float32) ranks after every number and
        is returned as NaN.
        """
        single, queries, exclude_ids, k = checked_query(self, queries, k, exclude_ids)
        allowed = allowed_mask(filters, self.table, self._ids)
        k = result_width(len(self), k, exclude_ids, allowed, self._ids)
        if k < 1:
            return empty_results(len(queries), single)
        exclude = None if exclude_ids is None else self.rows_where_stored(exclude_ids)
        # d² = ‖q‖² + ‖x‖² − 2 q·x, with −2 folded into the queries (exact: a power of two).
        # int8: q·(offset + scale*code) = q·offset + (q*scale)·code, so codes are only cast, not rescaled.
        weights = -2.0 * (queries if self.scale is None else queries * self.scale)
        shift = np.einsum("ij,ij->i", queries, queries)
        if self.offset is not None:
            shift = shift - 2.0 * (queries @ self.offset)
        best_d = np.full((len(queries), 0), np.inf, dtype=np.float32)
        best_i = np.zeros((len(queries), 0), dtype=np.int64)
        step = self.block_rows(len(queries))
        dots = np.empty((min(step, len(self)), len(queries)), dtype=np.float32)
        for start in range(0, len(self), step):
            stop = min(start + step, len(self))
            if self.storage == "float32":
                np.matmul(self.gallery[start:stop], weights.T, out=dots[:stop - start])
            else:
                self._decoded_products(start, stop, weights, dots)
            d2 = dots[:stop - start].T  # (Q, C); the product ran gallery-major, which keeps BLAS fast
            d2 += shift[:, None]
            d2 += self.sq_norms[start:stop][None, :]
            np.maximum(d2, 0.0, out=d2)
            np.fmin(d2, NOT_A_DISTANCE, out=d2)  # NaN and inf rank last, still ahead of the excluded rows
            if allowed is not None:
                d2[:, ~allowed[start:stop]] = np.inf
            if exclude is not None:
                local = exclude - start
                rows = np.flatnonzero((local >= 0) & (local < stop - start))
                d2[rows, local[rows]] = np.inf
            cand_d, cand_i = _candidates(d2, best_d, k)
            if cand_d.shape[1]:
                best_d, best_i = _merge(best_d, best_i, cand_d, cand_i + start, k)
        distances = np.sqrt(best_d)
        distances[best_d == NOT_A_DISTANCE] = np.nan
        found = np.where(np.isfinite(best_d) | (best_d == NOT_A_DISTANCE), self._ids[best_i], -1)
        distances[found < 0] = np.inf
        return (distances[0], found[0]) if single else (distances, found)


def _decode_workers() -> int:
    """Threads that decode compressed rows: the cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_POOL: dict[int, ThreadPoolExecutor] = {}


def _decode_pool() -> ThreadPoolExecutor:
    """The decode threads of this process (a forked child starts its own: it inherits no threads)."""
    pid = os.getpid()
    if pid not in _POOL:
        _POOL.clear()
        _POOL[pid] = ThreadPoolExecutor(_decode_workers(), thread_name_prefix="cbir-decode")
    return _POOL[pid]


def int8_range(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(offset, scale)``, each ``(D,)`` float32: codes ``-127..127`` span each dimension's min..max."""
    low = np.full(features.shape[1], np.inf, dtype=np.float32)
    high = np.full(features.shape[1], -np.inf, dtype=np.float32)
    for start in range(0, len(features), ENCODE_ROWS):
        block = np.asarray(features[start:start + ENCODE_ROWS], dtype=np.float32)
        np.minimum(low, block.min(axis=0), out=low)
        np.maximum(high, block.max(axis=0), out=high)
    if not len(features):
        low[:], high[:] = -1.0, 1.0
    scale = (high - low) / 254.0
    scale[scale <= 0] = 1.0
    return ((high + low) / 2).astype(np.float32), scale.astype(np.float32)


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
    cand_i = smallest_k(d, k)
    return np.take_along_axis(d, cand_i, axis=1), cand_i


def _merge(d1, i1, d2, i2, k):
    d = np.concatenate([d1, d2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    order = np.lexsort((i, d), axis=1)[:, :k]
    return np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1)
